using System.Text;
using Qcow2.Cli.Framework;

namespace Qcow2.Cli.Parsing;

/// <summary>
/// A <c>-o key=value,key=value</c> list as QEMU parses it: a comma inside a value is written
/// <c>,,</c>; a key without <c>=</c> means "on" for a boolean; <c>help</c> or <c>?</c> asks for the
/// list of options. Several <c>-o</c> arguments are joined.
/// </summary>
internal sealed class OptionList
{
    private readonly List<KeyValuePair<string, string?>> _items = new();

    public bool HelpRequested { get; private set; }

    public IReadOnlyList<KeyValuePair<string, string?>> Items => _items;

    public static OptionList Parse(IEnumerable<string> arguments)
    {
        var list = new OptionList();
        foreach (var arg in arguments) list.ParseOne(arg);
        return list;
    }

    public static OptionList Parse(string argument) => Parse(new[] { argument });

    private void ParseOne(string text)
    {
        int i = 0;
        while (i < text.Length)
        {
            // Key: up to '=' or ','.
            int keyStart = i;
            while (i < text.Length && text[i] != '=' && text[i] != ',') i++;
            string key = text[keyStart..i];
            string? value = null;
            if (i < text.Length && text[i] == '=')
            {
                i++;
                var sb = new StringBuilder();
                while (i < text.Length)
                {
                    if (text[i] == ',')
                    {
                        if (i + 1 < text.Length && text[i + 1] == ',') { sb.Append(','); i += 2; continue; }
                        break;
                    }
                    sb.Append(text[i++]);
                }
                value = sb.ToString();
            }
            if (i < text.Length && text[i] == ',') i++;
            if (key.Length == 0)
            {
                if (value is null) continue; // tolerate "a=b,,"-less empty items such as a trailing comma
                throw new UsageException($"Invalid option list: empty option name in '{text}'");
            }
            if (value is null && (key == "help" || key == "?")) { HelpRequested = true; continue; }
            _items.Add(new(key, value));
        }
    }

    /// <summary>The last value given for <paramref name="key"/>, or null when absent.</summary>
    public bool TryGet(string key, out string? value)
    {
        for (int i = _items.Count - 1; i >= 0; i--)
        {
            if (_items[i].Key == key) { value = _items[i].Value; return true; }
        }
        value = null;
        return false;
    }

    /// <summary>Parses a QEMU boolean value; a bare key means on.</summary>
    public static bool ParseBool(string key, string? value) => value switch
    {
        null or "on" or "yes" or "true" or "y" => true,
        "off" or "no" or "false" or "n" => false,
        _ => throw new UsageException($"Parameter '{key}' expects 'on' or 'off'"),
    };

    /// <summary>Throws for any key not in <paramref name="known"/>.</summary>
    public void RejectUnknown(IEnumerable<string> known, string format)
    {
        var set = new HashSet<string>(known, StringComparer.Ordinal);
        foreach (var item in _items)
            if (!set.Contains(item.Key))
                throw new UsageException($"Invalid parameter '{item.Key}'" + (format.Length > 0 ? $" for format '{format}'" : ""));
    }
}
