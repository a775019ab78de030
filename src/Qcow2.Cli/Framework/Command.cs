using System.Text;

namespace Qcow2.Cli.Framework;

/// <summary>
/// One sub-command of <c>qcow2</c>. A command declares its options, its synopsis and its help
/// text, and implements <see cref="Execute"/>; parsing, <c>--help</c> and error reporting are
/// done by <see cref="CliApp"/>. New commands (snapshot, resize, amend, ...) drop in by adding
/// an instance to <see cref="CommandTable.All"/>.
/// </summary>
internal abstract class Command
{
    /// <summary>The word after <c>qcow2</c>.</summary>
    public abstract string Name { get; }

    /// <summary>One line for <c>qcow2 --help</c>.</summary>
    public abstract string Summary { get; }

    /// <summary>Arguments after the command name, e.g. "[-f FMT] FILE".</summary>
    public abstract string Synopsis { get; }

    /// <summary>Extra paragraphs of help shown after the option list (may be empty).</summary>
    public virtual string Details => "";

    /// <summary>The options this command accepts.</summary>
    public abstract IReadOnlyList<OptionSpec> Options { get; }

    /// <summary>
    /// The exit code for errors (usage mistakes, unreadable or corrupt images). qemu-img uses 1
    /// almost everywhere; compare uses 2.
    /// </summary>
    public virtual int ErrorExitCode => ExitCodes.Failure;

    /// <summary>Runs the command; returns the exit code.</summary>
    public abstract int Execute(ParsedArgs args, CliContext context);

    /// <summary>The full help text.</summary>
    public string HelpText()
    {
        var sb = new StringBuilder();
        sb.Append("usage: qcow2 ").Append(Name).Append(' ').Append(Synopsis).Append('\n');
        sb.Append('\n').Append(Summary).Append('\n');
        if (Options.Count > 0)
        {
            sb.Append("\nOptions:\n");
            int width = 0;
            foreach (var o in Options) width = Math.Max(width, o.Display.Length);
            foreach (var o in Options)
                sb.Append("  ").Append(o.Display.PadRight(width)).Append("  ").Append(o.Description).Append('\n');
            sb.Append("  ").Append("-h, --help".PadRight(width)).Append("  ").Append("show this help").Append('\n');
        }
        if (Details.Length > 0) sb.Append('\n').Append(Details.TrimEnd('\n')).Append('\n');
        return sb.ToString();
    }

    /// <summary>Checks the number of positional arguments.</summary>
    protected static void RequirePositionals(ParsedArgs args, int min, int max, string what)
    {
        if (args.Positionals.Count < min) throw new UsageException($"Expecting {what}");
        if (args.Positionals.Count > max)
            throw new UsageException($"Unexpected argument: {args.Positionals[max]}");
    }

    /// <summary>Parses --output=human|json.</summary>
    protected static bool ParseOutputJson(ParsedArgs args)
    {
        string? o = args.Get("output");
        return o switch
        {
            null or "human" => false,
            "json" => true,
            _ => throw new UsageException($"--output must be used with human or json as argument."),
        };
    }
}
