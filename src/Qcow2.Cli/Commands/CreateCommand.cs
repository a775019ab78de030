using Qcow2.Cli.Framework;
using Qcow2.Cli.Parsing;

namespace Qcow2.Cli.Commands;

/// <summary><c>qcow2 create</c>: qemu-img create's options, sizes and "Formatting" line.</summary>
internal sealed class CreateCommand : Command
{
    public override string Name => "create";
    public override string Summary => "Create a new qcow2 or raw image";
    public override string Synopsis => "[--object OBJECTDEF] [-f qcow2|raw] [-o OPTIONS] [-b BACKING [-F FMT]] [-u] [-q] FILE [SIZE]";
    public override string Details =>
        "SIZE takes the suffixes k, M, G, T, P, E (powers of 1024) and b. Without SIZE the backing\n" +
        "file's size is used. -o help lists the options of the format; they are qemu-img's:\n" +
        "size, compat, backing_file, backing_fmt, cluster_size, preallocation, lazy_refcounts,\n" +
        "refcount_bits, compression_type, extended_l2, data_file, data_file_raw, and for encryption\n" +
        "encrypt.format (luks or aes), encrypt.key-secret, encrypt.cipher-alg, encrypt.cipher-mode,\n" +
        "encrypt.ivgen-alg, encrypt.ivgen-hash-alg, encrypt.hash-alg, encrypt.iter-time, encryption.\n\n" +
        "Example (LUKS, password from a secret object):\n" +
        "  qcow2 create -f qcow2 --object secret,id=sec0,data=PASSWORD \\\n" +
        "      -o encrypt.format=luks,encrypt.key-secret=sec0 disk.qcow2 10G";

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('f', "format", true, "FMT", "image format: raw (default, as qemu-img) or qcow2"),
        new OptionSpec('o', "options", true, "OPTIONS", "key=value,... creation options (-o help lists them)"),
        new OptionSpec('b', "backing", true, "BACKING", "backing file (qcow2 only)"),
        new OptionSpec('F', "backing-format", true, "FMT", "format of the backing file"),
        new OptionSpec('u', "unsafe", false, null, "do not open the backing file (SIZE is then required)"),
        new OptionSpec('q', "quiet", false, null, "do not print the Formatting line"),
        ImageArguments.Object,
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        if (ImageArguments.LoadSecrets(args, context) is not { } secrets) return ExitCodes.Success;
        string format = ImageOpener.CheckFormat(args.Get("format") ?? "raw");
        var optionList = OptionList.Parse(args.GetAll("options"));
        if (optionList.HelpRequested)
        {
            context.Out.Write(CreateSettings.HelpText(format));
            return ExitCodes.Success;
        }
        RequirePositionals(args, 1, 2, "a file name");
        string path = args.Positionals[0];
        var settings = CreateSettings.FromOptions(format, optionList);
        if (args.Get("backing") is { } b) settings = settings with { BackingFile = b };
        if (args.Get("backing-format") is { } bf) settings = settings with { BackingFormat = ImageOpener.CheckFormat(bf) };
        if (settings.BackingFile is not null && format != "qcow2")
            throw new UsageException($"Backing file not supported for file format '{format}'");

        long? size = settings.Size;
        if (args.Positionals.Count == 2) size = SizeParser.ParseSize(args.Positionals[1], "image size");

        if (settings.BackingFile is not null)
        {
            if (settings.BackingFormat is null)
                throw new CommandFailedException($"{path}: Backing file specified without backing format");
            if (!args.Has("unsafe"))
            {
                // As qemu-img: the backing file must open, and gives the size when none is given.
                string full = ImageOpener.FullBackingName(path, settings.BackingFile);
                if (!File.Exists(full))
                    throw new CommandFailedException($"{path}: Could not open '{full}': No such file or directory");
                using var backing = ImageOpener.Open(full, settings.BackingFormat, readOnly: true);
                size ??= backing.Size;
            }
        }
        if (size is null) throw new UsageException("Image creation needs a size parameter");

        try
        {
            settings.Encryption.CheckSyntax();
        }
        catch (CommandFailedException e)
        {
            throw new CommandFailedException($"{path}: {e.Message}");
        }
        if (!args.Has("quiet")) context.Out.Write(settings.FormattingLine(path, size.Value));
        context.Out.Flush();
        EncryptionPlan? encryption;
        try
        {
            encryption = settings.Encryption.Resolve(secrets);
        }
        catch (CommandFailedException e)
        {
            throw new CommandFailedException($"{path}: {e.Message}");
        }
        try
        {
            ImageFactory.Create(path, settings, size.Value, encryption: encryption);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            throw new CommandFailedException($"{path}: {CliApp.MessageOf(e)}", null, e);
        }
        return ExitCodes.Success;
    }
}
