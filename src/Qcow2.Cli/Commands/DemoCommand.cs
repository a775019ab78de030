using System.Globalization;
using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Volume;

namespace Qcow2.Cli.Commands;

/// <summary>
/// <c>qcow2 demo</c>: the end-to-end job README starts with. In a new temporary directory it
/// creates a qcow2 image, writes patterns through the library, converts it compressed, checks
/// both images, compares them, and prints the compressed image's info and map. Needs no file of
/// the user's and no QEMU.
/// </summary>
internal sealed class DemoCommand : Command
{
    public override string Name => "demo";
    public override string Summary => "Run an end-to-end job: create, write, convert (compressed), check, info, map";
    public override string Synopsis => "[--keep] [--dir DIR]";

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('\0', "keep", false, null, "keep the files (they are removed otherwise)"),
        new OptionSpec('\0', "dir", true, "DIR", "work in DIR instead of a new temporary directory"),
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        RequirePositionals(args, 0, 0, "no arguments");
        var output = context.Out;
        bool ownDir = args.Get("dir") is null;
        string dir = args.Get("dir") ?? Path.Combine(Path.GetTempPath(), "qcow2-demo-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        bool keep = args.Has("keep") || !ownDir;
        string source = Path.Combine(dir, "demo.qcow2");
        string compressed = Path.Combine(dir, "demo-compressed.qcow2");
        try
        {
            output.Write($"== Working in {dir}\n");

            output.Write("\n== qcow2 create -f qcow2 demo.qcow2 64M\n");
            Step(context, "create", "-f", "qcow2", source, "64M");

            output.Write("\n== writing patterns through the library (Qcow2Image.Write)\n");
            using (var image = Qcow2Image.Open(source, ImageOpener.TrustedOptions(readOnly: false)))
            {
                var runner = new IoRunner(image, output);
                string[] commands =
                {
                    "write -P 0x5a 0 1M",
                    "write -P 0xa5 4M 256k",
                    "write -z 8M 64k",
                    "write -P 0x33 32M 512k",
                    "read -P 0x5a 0 1M",
                    "read -P 0 2M 1M",
                };
                foreach (var c in commands)
                {
                    output.Write($"qcow2 io> {c}\n");
                    if (!runner.Run(c)) throw new CommandFailedException($"demo: '{c}' failed");
                }
                image.Flush();
            }

            output.Write("\n== qcow2 convert -c -O qcow2 demo.qcow2 demo-compressed.qcow2\n");
            Step(context, "convert", "-c", "-O", "qcow2", source, compressed);

            output.Write("\n== qcow2 check demo.qcow2\n");
            Step(context, "check", source);
            output.Write("\n== qcow2 check demo-compressed.qcow2\n");
            Step(context, "check", compressed);

            output.Write("\n== qcow2 compare demo.qcow2 demo-compressed.qcow2\n");
            Step(context, "compare", source, compressed);

            output.Write("\n== qcow2 info demo-compressed.qcow2\n");
            Step(context, "info", compressed);

            output.Write("\n== qcow2 map --output=json demo-compressed.qcow2\n");
            Step(context, "map", "--output=json", compressed);

            long a = new FileInfo(source).Length, b = new FileInfo(compressed).Length;
            output.Write(string.Create(CultureInfo.InvariantCulture,
                $"\nDone: demo.qcow2 is {NumberFormat.HumanSize(a)}, the compressed copy {NumberFormat.HumanSize(b)}.\n"));
            output.Write(keep ? $"The files are in {dir}\n" : $"Removing {dir} (use --keep to keep the files).\n");
            return ExitCodes.Success;
        }
        finally
        {
            if (!keep)
            {
                try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
        }
    }

    /// <summary>Runs another command of the table in-process; a non-zero exit fails the demo.</summary>
    private static void Step(CliContext context, params string[] argv)
    {
        var command = CommandTable.Find(argv[0])!;
        var parsed = ArgParser.Parse(argv.AsSpan(1).ToArray(), command.Options);
        int code = command.Execute(parsed, context);
        if (code != 0) throw new CommandFailedException($"demo: '{string.Join(' ', argv)}' exited with {code}");
    }
}
