using Qcow2.Cli.Commands;

namespace Qcow2.Cli.Framework;

/// <summary>
/// Every command of the tool, in the order <c>qcow2 --help</c> lists them. A new command is one
/// class deriving from <see cref="Command"/> and one line here.
/// </summary>
internal static class CommandTable
{
    public static IReadOnlyList<Command> All { get; } = new Command[]
    {
        new InfoCommand(),
        new CreateCommand(),
        new ConvertCommand(),
        new MapCommand(),
        new CompareCommand(),
        new MeasureCommand(),
        new CheckCommand(),
        new IoCommand(),
        new BenchCommand(),
        new DemoCommand(),
    };

    public static Command? Find(string name)
    {
        foreach (var c in All) if (c.Name == name) return c;
        return null;
    }
}
