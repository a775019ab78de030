using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Cli.Parsing;
using Qcow2.Volume;
using Qcow2.Volume.Operations;

namespace Qcow2.Cli.Commands;

/// <summary><c>qcow2 measure</c>: the file size a conversion or creation needs, as qemu-img measure reports it.</summary>
internal sealed class MeasureCommand : Command
{
    public override string Name => "measure";
    public override string Summary => "Calculate the file size needed for a new image or a conversion";
    public override string Synopsis => "[--output=human|json] [--object OBJECTDEF] [--image-opts] [-O qcow2|raw] [-o OPTIONS] [-f FMT] [-l snapshot.name=NAME] (--size SIZE | FILE)";
    public override string Details =>
        "With -o encrypt.format=luks the LUKS header and key slots (rounded up to clusters) are added to\n" +
        "both sizes, as qemu-img measure adds them; the key secret must be defined (--object). An\n" +
        "encrypted FILE is measured from its metadata, without its secret (qemu-img needs it).\n\n" + ImageArguments.EncryptionHelp;

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('\0', "output", true, "FMT", "human (default) or json"),
        new OptionSpec('O', "output-format", true, "FMT", "target format: raw (default) or qcow2"),
        new OptionSpec('o', "options", true, "OPTIONS", "target creation options (as create -o)"),
        new OptionSpec('f', "format", true, "FMT", "format of FILE; probed when absent"),
        new OptionSpec('\0', "size", true, "SIZE", "measure a new empty image of this size"),
        new OptionSpec('l', "snapshot", true, "snapshot.name=NAME", "measure an internal snapshot of FILE"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-img compatibility"),
        ImageArguments.Object,
        ImageArguments.ImageOpts,
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        if (ImageArguments.LoadSecrets(args, context) is not { } secrets) return ExitCodes.Success;
        bool json = ParseOutputJson(args);
        string outFormat = ImageOpener.CheckFormat(args.Get("output-format") ?? "raw");
        var options = OptionList.Parse(args.GetAll("options"));
        if (options.HelpRequested)
        {
            context.Out.Write(CreateSettings.HelpText(outFormat));
            return ExitCodes.Success;
        }
        string? sizeText = args.Get("size");
        if (args.Positionals.Count > 1) throw new UsageException($"Unexpected argument: {args.Positionals[1]}");
        if (sizeText is not null && args.Positionals.Count == 1)
            throw new UsageException("--size N cannot be used together with a filename.");
        if (sizeText is null && args.Positionals.Count == 0)
            throw new UsageException("Either --size N or one filename must be specified.");
        var settings = CreateSettings.FromOptions(outFormat, options);
        var encryption = settings.Encryption.Resolve(secrets, aesNeedsSecret: false);

        IDiskImage? source = null;
        IDiskImage? snapshotView = null;
        try
        {
            long size;
            if (sizeText is not null)
            {
                size = SizeParser.ParseSize(sizeText, "image size");
            }
            else
            {
                source = ImageOpener.Open(ImageArguments.Image(args, args.Positionals[0], args.Get("format")), secrets, readOnly: true, needsData: false);
                if (args.Get("snapshot") is { } snap)
                {
                    snapshotView = SnapshotLoader.Open(source, snap);
                }
                size = (snapshotView ?? source).Size;
            }
            size = settings.Size ?? size;

            long required, fully;
            long? bitmaps = null;
            if (outFormat == "raw")
            {
                required = size;
                fully = size;
            }
            else
            {
                var r = Qcow2Measure.Measure(ImageFactory.ToQcow2Options(settings, size), snapshotView ?? source);
                // The LUKS region sits in whole clusters after the metadata, and qemu-img adds it as such.
                long luks = encryption?.Luks?.GetMeasureBytes((int)(settings.ClusterSize ?? 65536)) ?? 0;
                required = r.Required + luks;
                fully = r.FullyAllocated + luks;
                bitmaps = r.Bitmaps;
            }
            context.Out.Write(json ? MeasureFormatter.Json(required, fully, bitmaps) : MeasureFormatter.Human(required, fully, bitmaps));
            return ExitCodes.Success;
        }
        finally
        {
            snapshotView?.Dispose();
            source?.Dispose();
        }
    }
}
