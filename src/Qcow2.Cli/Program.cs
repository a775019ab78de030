using Qcow2.Cli.Framework;

namespace Qcow2.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        var context = CliContext.FromConsole();
        try
        {
            return CliApp.Run(args, context);
        }
        catch (Exception e)
        {
            // Last line of defence: still one line and no stack trace.
            try
            {
                context.Error.Write("qcow2: internal error: " + e.GetType().Name + ": " + e.Message.ReplaceLineEndings(" ") + "\n");
            }
            catch (IOException) { }
            return ExitCodes.Failure;
        }
    }
}
