using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Cli.Parsing;
using Qcow2.Volume;
using Qcow2.Volume.Operations;

namespace Qcow2.Cli.Commands;

/// <summary>
/// <c>qcow2 convert</c>: copies one or more sources (concatenated) into a new or existing image,
/// skipping ranges that read as zeroes, compressing with -c, with -m parallel workers.
/// </summary>
internal sealed class ConvertCommand : Command
{
    public override string Name => "convert";
    public override string Summary => "Convert, copy or compress images (several sources are concatenated)";
    public override string Synopsis =>
        "[-f FMT] [-O FMT] [-o OPTIONS] [-c] [-p] [-m N] [-W] [-n] [-S SIZE] [--target-is-zero] [-B BACKING [-F FMT]] [-l snapshot.name=NAME] [--object OBJECTDEF] [--image-opts] [--target-image-opts] [-q] SRC... DST";
    public override string Details =>
        "Ranges that read as zeroes are not written (with -S SIZE, default 4k, zero runs of at least\n" +
        "SIZE inside data are skipped too; -S 0 writes everything). -n writes into an existing target;\n" +
        "add --target-is-zero when that target already reads as zeroes. -B makes the target an\n" +
        "overlay of BACKING and copies only what the sources allocate above their own backing files.\n\n" +
        "-o encrypt.format=luks,encrypt.key-secret=ID (and the other encrypt.* options of create) writes\n" +
        "an encrypted target; -c cannot be combined with encryption. --image-opts makes the sources\n" +
        "option strings; --target-image-opts (with -n) the target.\n\n" + ImageArguments.EncryptionHelp;

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('f', "format", true, "FMT", "format of the sources; probed when absent"),
        new OptionSpec('O', "output-format", true, "FMT", "format of the target: raw (default) or qcow2"),
        new OptionSpec('o', "options", true, "OPTIONS", "target creation options (as create -o)"),
        new OptionSpec('c', "compress", false, null, "write compressed clusters (qcow2 target)"),
        new OptionSpec('p', "progress", false, null, "show progress on a terminal"),
        new OptionSpec('m', "parallel", true, "N", "parallel workers (1 to 16; default the cores, at most 8)"),
        new OptionSpec('W', "out-of-order", false, null, "allow out-of-order writes (always done here)"),
        new OptionSpec('n', "no-create", false, null, "do not create the target; write into the existing one"),
        new OptionSpec('S', "sparse-size", true, "SIZE", "minimum zero run to skip (default 4k; 0 disables)"),
        new OptionSpec('\0', "target-is-zero", false, null, "with -n: the target already reads as zeroes"),
        new OptionSpec('B', "backing", true, "BACKING", "backing file of the target"),
        new OptionSpec('F', "backing-format", true, "FMT", "format of BACKING"),
        new OptionSpec('l', "snapshot", true, "snapshot.name=NAME", "convert an internal snapshot of the source"),
        new OptionSpec('q', "quiet", false, null, "quiet"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-img compatibility"),
        new OptionSpec('t', "cache", true, "MODE", "target cache mode: unsafe (default, as qemu-img: no fsync) or any other qemu-img mode (fsync at the end)"),
        new OptionSpec('T', "source-cache", true, "MODE", "accepted for qemu-img compatibility"),
        ImageArguments.Object,
        ImageArguments.ImageOpts,
        new OptionSpec('\0', "target-image-opts", false, null, "with -n: the target name is an option string"),
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        if (ImageArguments.LoadSecrets(args, context) is not { } secrets) return ExitCodes.Success;
        if (args.Positionals.Count < 2) throw new UsageException("Expecting a source and a target file name");
        bool targetImageOpts = args.Has("target-image-opts");
        if (targetImageOpts && !args.Has("no-create")) throw new CommandFailedException("--target-image-opts requires use of -n flag");
        if (args.Has("image-opts") && args.Has("format")) throw new CommandFailedException("--image-opts and --format are mutually exclusive");
        var sources = args.Positionals.GetRange(0, args.Positionals.Count - 1);
        string target = args.Positionals[^1];
        string outFormat = ImageOpener.CheckFormat(args.Get("output-format") ?? "raw");
        bool compress = args.Has("compress");
        bool noCreate = args.Has("no-create");
        bool targetIsZero = args.Has("target-is-zero");
        if (targetIsZero && !noCreate) throw new UsageException("--target-is-zero requires use of -n flag");
        // qemu-img's default is 8 coroutines; here they are threads, so no more than the cores.
        int parallel = Math.Clamp(Environment.ProcessorCount, 1, 8);
        if (args.Get("parallel") is { } m && (!int.TryParse(m, out parallel) || parallel < 1 || parallel > 16))
            throw new UsageException("Invalid number of coroutines. Allowed number of coroutines is between 1 and 16");
        long sparse = 4096;
        if (args.Get("sparse-size") is { } sps)
        {
            sparse = SizeParser.ParseSize(sps, "buffer size for sparse output");
            if (sparse != 0 && (sparse % 512 != 0 || sparse > 32L << 20))
                throw new UsageException("Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 32M.");
        }
        if (compress && outFormat != "qcow2") throw new CommandFailedException("Compression not supported for this file format");
        string? snapshot = null;
        if (args.Get("snapshot") is { } snap)
        {
            snapshot = snap;
            if (sources.Count != 1) throw new UsageException("No support for concatenating multiple snapshot");
        }

        var options = OptionList.Parse(args.GetAll("options"));
        if (options.HelpRequested)
        {
            context.Out.Write(CreateSettings.HelpText(outFormat));
            return ExitCodes.Success;
        }

        if (noCreate && options.Items.Count > 0) throw new CommandFailedException("-o has no effect when skipping image creation");

        var opened = new List<IDiskImage>();
        IDiskImage? targetImage = null;
        IDisposable? targetFile = null;
        // qemu-img convert writes its target with cache=unsafe unless -t says otherwise: no fsync.
        bool flushToDisk = (args.Get("cache") ?? "unsafe") != "unsafe";
        try
        {
            foreach (var s in sources)
            {
                var img = ImageOpener.Open(ImageArguments.Image(args, s, args.Get("format")), secrets, readOnly: true, needsData: true);
                opened.Add(img);
            }
            // qemu-img refuses a target format with a target option string only once the sources are open.
            if (targetImageOpts && args.Has("output-format")) throw new CommandFailedException("--image-opts and --format are mutually exclusive");
            var inputs = new List<IDiskImage>(opened);
            if (snapshot is not null)
            {
                inputs[0] = SnapshotLoader.Open(inputs[0], snapshot);
                opened.Add(inputs[0]);
            }
            long total = 0;
            foreach (var i in inputs) total = checked(total + i.Size);

            var settings = CreateSettings.FromOptions(outFormat, options);
            if (args.Get("backing") is { } b) settings = settings with { BackingFile = b };
            if (args.Get("backing-format") is { } bf) settings = settings with { BackingFormat = ImageOpener.CheckFormat(bf) };
            bool hasTargetBacking = settings.BackingFile is not null;
            if (hasTargetBacking && outFormat != "qcow2")
                throw new UsageException($"Backing file not supported for file format '{outFormat}'");
            if (hasTargetBacking && settings.BackingFormat is null)
            {
                string full = ImageOpener.FullBackingName(target, settings.BackingFile!);
                settings = settings with { BackingFormat = File.Exists(full) ? ImageOpener.Probe(full) : null };
            }

            var targetSpec = targetImageOpts ? ImageSpec.Parse(target) : ImageSpec.FromFile(target, noCreate ? args.Get("output-format") : outFormat);
            bool fresh = false;
            if (!noCreate)
            {
                if (compress && (settings.Encryption.Format is not null || settings.Encryption.Legacy == true))
                    throw new CommandFailedException("Compression and encryption not supported at the same time");
                EncryptionPlan? encryption;
                try
                {
                    encryption = settings.Encryption.Resolve(secrets);
                }
                catch (CommandFailedException e)
                {
                    throw new CommandFailedException($"{target}: error while converting {outFormat}: {e.Message}");
                }
                try
                {
                    ImageFactory.Create(target, settings, settings.Size ?? total, flushToDisk, encryption);
                }
                catch (Exception e) when (encryption is not null && e is ArgumentException or NotSupportedException or InvalidOperationException)
                {
                    // What the library refuses about the encryption, worded as qemu-img words creation failures.
                    throw new CommandFailedException($"{target}: error while converting {outFormat}: {CliApp.MessageOf(e)}", null, e);
                }
                if (encryption is not null) targetSpec = targetSpec with { KeySecretId = settings.Encryption.KeySecret };
                fresh = true;
            }
            targetImage = ImageOpener.OpenWritable(targetSpec, secrets, flushToDisk, out targetFile);
            if (targetImage.Size < total)
                throw new CommandFailedException("Target image is too small for the source data");

            // A freshly created target reads as zeroes unless it has a backing file.
            bool targetReadsZero = (fresh && !hasTargetBacking) || targetIsZero;
            using (var bar = ProgressBar.Create(context, args.Has("progress") && !args.Has("quiet"), total, "convert"))
            {
                ImageConverter.Convert(inputs, targetImage, new ConvertOptions
                {
                    Compress = compress,
                    SparseSize = sparse,
                    TargetIsZero = targetReadsZero,
                    TargetHasBacking = hasTargetBacking,
                    Parallelism = parallel,
                    Progress = bar.AsFraction(),
                });
            }
            targetImage.Flush();
            return ExitCodes.Success;
        }
        finally
        {
            targetImage?.Dispose();
            targetFile?.Dispose();
            for (int i = opened.Count - 1; i >= 0; i--) opened[i].Dispose();
        }
    }
}
