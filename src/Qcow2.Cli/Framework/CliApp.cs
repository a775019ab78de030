using System.Text;
using Qcow2.Spans;

namespace Qcow2.Cli.Framework;

/// <summary>
/// The top of the tool: picks the command, parses its options, handles <c>--help</c>, and turns
/// every exception into one line on stderr (<c>qcow2: message</c>) and an exit code. No stack
/// trace ever reaches the user.
/// </summary>
internal static class CliApp
{
    public static int Run(string[] args, CliContext context)
    {
        try
        {
            return RunCore(args, context);
        }
        finally
        {
            try { context.Out.Flush(); } catch (IOException) { }
        }
    }

    private static int RunCore(string[] args, CliContext context)
    {
        if (args.Length == 0)
        {
            context.Error.Write("qcow2: Not enough arguments\nTry 'qcow2 --help' for more information\n");
            return ExitCodes.Failure;
        }
        string first = args[0];
        if (first is "-h" or "--help" or "help")
        {
            context.Out.Write(GlobalHelp());
            return ExitCodes.Success;
        }
        if (first is "-V" or "--version")
        {
            context.Out.Write("qcow2 version " + typeof(CliApp).Assembly.GetName().Version + "\n");
            return ExitCodes.Success;
        }
        var command = CommandTable.Find(first);
        if (command is null)
        {
            ReportError(context, $"Command not found: {first}");
            return ExitCodes.Failure;
        }
        ParsedArgs parsed;
        try
        {
            parsed = ArgParser.Parse(args.AsSpan(1).ToArray(), command.Options);
        }
        catch (UsageException e)
        {
            ReportError(context, e.Message);
            context.Error.Write($"Try 'qcow2 {command.Name} --help' for more information\n");
            return command.ErrorExitCode;
        }
        if (parsed.HelpRequested)
        {
            context.Out.Write(command.HelpText());
            return ExitCodes.Success;
        }
        try
        {
            return command.Execute(parsed, context);
        }
        catch (Exception caught) when (Describe(caught) is { } message)
        {
            var e = Unwrap(caught);
            try { context.Out.Flush(); } catch (IOException) { }
            ReportError(context, message);
            if (e is CommandFailedException { Hint: { } hint }) context.Error.Write(hint.TrimEnd('\n') + "\n");
            return e is CommandFailedException { ExitCode: { } code } ? code : command.ErrorExitCode;
        }
    }

    /// <summary>The user-facing one-line text for an exception, or null for a bug we should not hide.</summary>
    internal static Exception Unwrap(Exception e)
    {
        while (e is AggregateException { InnerExceptions.Count: 1 } a) e = a.InnerExceptions[0];
        return e;
    }

    internal static string? Describe(Exception caught)
    {
        var e = Unwrap(caught);
        return e switch
        {
        UsageException u => u.Message,
        CommandFailedException c => c.Message,
        Qcow2CorruptImageException c => "Image is corrupt: " + c.Message,
        Qcow2UnsupportedImageException u => "Unsupported image: " + u.Message,
        FileNotFoundException f => f.FileName is null ? f.Message : $"Could not open '{f.FileName}': No such file or directory",
        DirectoryNotFoundException d => d.Message,
        UnauthorizedAccessException u => u.Message,
        IOException io => io.Message,
        InvalidDataException d => "Image is corrupt: " + d.Message,
        NotSupportedException n => n.Message,
        ArgumentException a => MessageOf(a),
        InvalidOperationException op => op.Message,
        OperationCanceledException => "Operation cancelled",
        // Anything else is our bug; still one line, never a stack trace.
        _ => $"internal error: {e.GetType().Name}: {e.Message}",
        };
    }

    /// <summary>The exception's message without .NET's " (Parameter 'name')" suffix.</summary>
    internal static string MessageOf(Exception e)
    {
        string m = e.Message;
        if (e is ArgumentException { ParamName: { } p })
        {
            string suffix = $" (Parameter '{p}')";
            int at = m.IndexOf(suffix, StringComparison.Ordinal);
            if (at >= 0) m = m.Remove(at, suffix.Length);
        }
        return m;
    }

    internal static void ReportError(CliContext context, string message)
    {
        // One line: the message must not smuggle in newlines of its own.
        string line = message.ReplaceLineEndings(" ").TrimEnd();
        context.Error.Write("qcow2: " + line + "\n");
    }

    internal static string GlobalHelp()
    {
        var sb = new StringBuilder();
        sb.Append("qcow2: a qemu-img compatible tool for QCOW2 and raw disk images\n\n");
        sb.Append("usage: qcow2 COMMAND [command options]\n");
        sb.Append("       qcow2 COMMAND --help   for the options of one command\n\n");
        sb.Append("Commands:\n");
        int width = 0;
        foreach (var c in CommandTable.All) width = Math.Max(width, c.Name.Length);
        foreach (var c in CommandTable.All)
            sb.Append("  ").Append(c.Name.PadRight(width)).Append("  ").Append(c.Summary).Append('\n');
        sb.Append("\nSizes take the suffixes k, M, G, T, P, E (powers of 1024) and b for bytes.\n");
        sb.Append("Formats are 'qcow2' and 'raw'; without -f the format is probed.\n");
        sb.Append("Encrypted images: --object secret,id=ID,data=PASSWORD with --image-opts\n");
        sb.Append("driver=qcow2,file.filename=FILE,encrypt.key-secret=ID; create -o encrypt.format=luks,encrypt.key-secret=ID.\n");
        return sb.ToString();
    }
}
