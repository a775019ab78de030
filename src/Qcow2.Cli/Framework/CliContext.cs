namespace Qcow2.Cli.Framework;

/// <summary>Where a command writes, and whether its streams are terminals.</summary>
internal sealed class CliContext
{
    public CliContext(TextWriter output, TextWriter error, bool outputIsTerminal, bool errorIsTerminal, TextReader? input = null)
    {
        Input = input ?? TextReader.Null;
        Out = output;
        Error = error;
        OutputIsTerminal = outputIsTerminal;
        ErrorIsTerminal = errorIsTerminal;
    }

    public TextWriter Out { get; }

    /// <summary>Standard input (commands of <c>io</c> without -c).</summary>
    public TextReader Input { get; }

    public TextWriter Error { get; }

    public bool OutputIsTerminal { get; }

    public bool ErrorIsTerminal { get; }

    /// <summary>The process's console streams.</summary>
    public static CliContext FromConsole()
    {
        var stdout = new StreamWriter(Console.OpenStandardOutput(), new System.Text.UTF8Encoding(false)) { AutoFlush = false, NewLine = "\n" };
        var stderr = new StreamWriter(Console.OpenStandardError(), new System.Text.UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
        return new CliContext(stdout, stderr, !Console.IsOutputRedirected, !Console.IsErrorRedirected, Console.In);
    }

    /// <summary>Prints a warning line the way qemu-img does ("qcow2: warning: ...").</summary>
    public void Warn(string message)
    {
        Out.Flush();
        Error.Write("qcow2: warning: " + message + "\n");
    }
}
