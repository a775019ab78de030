namespace Qcow2.Cli.Framework;

/// <summary>Describes one option a command accepts.</summary>
/// <param name="Short">Single-letter name, or '\0' when the option is long-only.</param>
/// <param name="Long">Long name without dashes, or null.</param>
/// <param name="TakesValue">Whether the option needs an argument.</param>
/// <param name="ValueName">The argument's name in help text.</param>
/// <param name="Description">One line for help text.</param>
internal sealed record OptionSpec(char Short, string? Long, bool TakesValue, string? ValueName, string Description)
{
    /// <summary>The key under which a parsed value is stored: the long name when present, else the letter.</summary>
    public string Key => Long ?? Short.ToString();

    public string Display =>
        (Short != '\0' ? "-" + Short : "") +
        (Short != '\0' && Long is not null ? ", " : "") +
        (Long is not null ? "--" + Long : "") +
        (TakesValue ? " " + (ValueName ?? "VALUE") : "");
}

/// <summary>The result of parsing: options in order and positional arguments.</summary>
internal sealed class ParsedArgs
{
    private readonly List<(string Key, string? Value)> _options = new();

    public List<string> Positionals { get; } = new();

    public IReadOnlyList<(string Key, string? Value)> Options => _options;

    public bool HelpRequested { get; internal set; }

    internal void Add(string key, string? value) => _options.Add((key, value));

    public bool Has(string key) => _options.Exists(o => o.Key == key);

    /// <summary>The last value given for the option (qemu-img lets later flags win), or null.</summary>
    public string? Get(string key)
    {
        for (int i = _options.Count - 1; i >= 0; i--)
            if (_options[i].Key == key) return _options[i].Value;
        return null;
    }

    /// <summary>Every value given for a repeatable option, in order.</summary>
    public List<string> GetAll(string key)
    {
        var list = new List<string>();
        foreach (var (k, v) in _options)
            if (k == key && v is not null) list.Add(v);
        return list;
    }
}

/// <summary>
/// A small getopt_long-like parser: clustered short flags (<c>-pc</c>), short options with
/// attached or separate values (<c>-fqcow2</c>, <c>-f qcow2</c>), long options with <c>=</c> or a
/// separate value, <c>--</c> ending the options, and <c>-h</c>/<c>--help</c> everywhere. Options may
/// appear after positional arguments, as with GNU getopt.
/// </summary>
internal static class ArgParser
{
    public static ParsedArgs Parse(IReadOnlyList<string> args, IReadOnlyList<OptionSpec> specs)
    {
        var result = new ParsedArgs();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (a == "--")
            {
                for (i++; i < args.Count; i++) result.Positionals.Add(args[i]);
                break;
            }
            if (a.StartsWith("--", StringComparison.Ordinal))
            {
                string name = a[2..];
                string? value = null;
                int eq = name.IndexOf('=');
                if (eq >= 0) { value = name[(eq + 1)..]; name = name[..eq]; }
                if (name == "help") { result.HelpRequested = true; continue; }
                var spec = FindLong(specs, name) ?? throw new UsageException($"unrecognized option '--{name}'");
                if (spec.TakesValue)
                {
                    if (value is null)
                    {
                        if (i + 1 >= args.Count) throw new UsageException($"option '--{name}' requires an argument");
                        value = args[++i];
                    }
                }
                else if (value is not null)
                {
                    throw new UsageException($"option '--{name}' doesn't allow an argument");
                }
                result.Add(spec.Key, value);
                continue;
            }
            if (a.Length > 1 && a[0] == '-')
            {
                for (int j = 1; j < a.Length; j++)
                {
                    char c = a[j];
                    if (c == 'h' && FindShort(specs, 'h') is null) { result.HelpRequested = true; continue; }
                    var spec = FindShort(specs, c) ?? throw new UsageException($"invalid option -- '{c}'");
                    if (!spec.TakesValue)
                    {
                        result.Add(spec.Key, null);
                        continue;
                    }
                    string value;
                    if (j + 1 < a.Length) value = a[(j + 1)..];
                    else if (i + 1 < args.Count) value = args[++i];
                    else throw new UsageException($"option requires an argument -- '{c}'");
                    result.Add(spec.Key, value);
                    break;
                }
                continue;
            }
            result.Positionals.Add(a);
        }
        return result;
    }

    private static OptionSpec? FindLong(IReadOnlyList<OptionSpec> specs, string name)
    {
        foreach (var s in specs) if (s.Long == name) return s;
        return null;
    }

    private static OptionSpec? FindShort(IReadOnlyList<OptionSpec> specs, char c)
    {
        if (c == '\0') return null;
        foreach (var s in specs) if (s.Short == c) return s;
        return null;
    }
}
