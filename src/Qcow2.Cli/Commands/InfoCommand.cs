using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Spans;
using Qcow2.Volume;

namespace Qcow2.Cli.Commands;

/// <summary><c>qcow2 info</c>: what qemu-img info prints.</summary>
internal sealed class InfoCommand : Command
{
    public override string Name => "info";
    public override string Summary => "Show information about a disk image (format, sizes, backing file, snapshots, features)";
    public override string Synopsis => "[--output=human|json] [--backing-chain] [--object OBJECTDEF] [--image-opts] [-f FMT] [-U] FILE";
    public override string Details =>
        "Encrypted images are described without their secret (as qemu-img does); an option string's\n" +
        "encrypt.key-secret is then named in the image name but not checked.\n\n" + ImageArguments.EncryptionHelp;

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('f', "format", true, "FMT", "image format (qcow2 or raw); probed when absent"),
        new OptionSpec('\0', "output", true, "FMT", "human (default) or json"),
        new OptionSpec('\0', "backing-chain", false, null, "show every image of the backing chain"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-img compatibility"),
        ImageArguments.Object,
        ImageArguments.ImageOpts,
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        if (ImageArguments.LoadSecrets(args, context) is null) return ExitCodes.Success;
        RequirePositionals(args, 1, 1, "one image file name");
        bool json = ParseOutputJson(args);
        var spec = ImageArguments.Image(args, args.Positionals[0], args.Get("format"));
        // qemu-img info opens no backing file, so it refuses options for one.
        if (spec.BackingKeySecretId is not null)
            throw spec.OpenError("Block format 'qcow2' does not support the option 'backing.encrypt.key-secret'");
        string path = spec.Path;
        string? format = spec.Format;
        var chain = new List<ImageInfoModel>();
        var seen = new HashSet<string>();
        while (true)
        {
            if (!seen.Add(Path.GetFullPath(path)))
                throw new CommandFailedException($"Backing file '{path}' creates an infinite loop.");
            var model = chain.Count == 0 ? Describe(spec) : Describe(path, format);
            chain.Add(model);
            if (!args.Has("backing-chain") || model.BackingFilename is null) break;
            path = model.FullBackingFilename!;
            // qemu-img opens the whole chain before printing anything; a missing layer fails the
            // command with the name as it combines it, reported twice (its open error wraps the file's).
            if (!File.Exists(path))
                throw new CommandFailedException(Directory.Exists(path)
                    ? $"Could not open '{path}': 'file' driver requires '{path}' to be a regular file"
                    : $"Could not open '{path}': Could not open '{path}': No such file or directory");
            format = model.BackingFormat;
        }
        if (json)
            context.Out.Write(args.Has("backing-chain") ? InfoFormatter.JsonChain(chain) : InfoFormatter.Json(chain[0]));
        else
            context.Out.Write(InfoFormatter.HumanChain(chain));
        return ExitCodes.Success;
    }

    /// <summary>Builds the info model for one image file.</summary>
    internal static ImageInfoModel Describe(string path, string? format) => Describe(ImageSpec.FromFile(path, format));

    /// <summary>
    /// Builds the info model for the image <paramref name="spec"/> names. Like qemu-img info (which
    /// opens without I/O), an encrypted image is described without its secret, which is not looked up.
    /// </summary>
    internal static ImageInfoModel Describe(ImageSpec spec)
    {
        var (format, options) = ImageOpener.Prepare(spec with { KeySecretId = null }, SecretStore.Empty, readOnly: true, needsData: false);
        string path = spec.Path;
        string name = spec.DisplayName;
        if (format == "raw")
        {
            return new ImageInfoModel
            {
                Filename = name,
                Format = "raw",
                VirtualSize = new FileInfo(path).Length,
                ActualSize = ImageOpener.AllocatedBytes(path),
            };
        }
        // Like qemu-img info, one image is described without opening its backing file, so an
        // overlay whose backing file is missing or refused is still described.
        using var image = Qcow2Image.Open(path, options with { OpenBackingChain = false });
        return FromQcow2(path, image, name);
    }

    /// <param name="path">The image file (its allocation is measured).</param>
    /// <param name="image">The open image.</param>
    /// <param name="name">The name shown; the path when null.</param>
    internal static ImageInfoModel FromQcow2(string path, Qcow2Image image, string? name = null)
    {
        var info = image.Info;
        // The image file's own allocation (qemu-img 7.2 does not add an external data file's).
        long? actual = ImageOpener.AllocatedBytes(path);
        var snapshots = new List<SnapshotModel>();
        foreach (var s in image.Snapshots)
        {
            long ticks = s.Date.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks;
            snapshots.Add(new SnapshotModel(
                s.Id, s.Name, s.VmStateSize,
                Math.DivRem(ticks, TimeSpan.TicksPerSecond).Quotient,
                Math.DivRem(ticks, TimeSpan.TicksPerSecond).Remainder * 100,
                (long)s.VmClockNanoseconds,
                // SnapshotInfo does not carry the icount extra field yet; images written by
                // QEMU 5.0+ store 0 unless record/replay was used.
                0));
        }
        return new ImageInfoModel
        {
            Filename = name ?? path,
            Format = "qcow2",
            VirtualSize = image.Size,
            ActualSize = actual,
            ClusterSize = info.ClusterSize,
            Encrypted = info.Encryption != CryptMethod.None,
            DirtyFlag = info.Dirty,
            BackingFilename = info.BackingFile,
            FullBackingFilename = info.BackingFile is null ? null : ImageOpener.FullBackingName(path, info.BackingFile),
            BackingFormat = info.BackingFormat,
            Snapshots = snapshots,
            FormatSpecificData = Qcow2Specific(image),
        };
    }

    /// <summary>qemu-img's "encrypt" block: the LUKS header's parameters, or just the format for legacy AES.</summary>
    private static QDict EncryptBlock(Qcow2ImageInfo info)
    {
        var e = new QDict(KeyOrder.Luks);
        if (info.Luks is not { } luks)
            return e.Add("format", "aes");
        e.Add("ivgen-alg", luks.IvgenAlg);
        if (luks.IvgenHashAlg is not null) e.Add("ivgen-hash-alg", luks.IvgenHashAlg);
        e.Add("hash-alg", luks.HashAlg);
        e.Add("cipher-alg", luks.CipherAlg);
        e.Add("uuid", luks.Uuid);
        e.Add("format", "luks");
        e.Add("cipher-mode", luks.CipherMode);
        var slots = new QList();
        foreach (var s in luks.Slots)
        {
            var slot = new QDict(KeyOrder.LuksSlot).Add("active", s.Active);
            if (s.Active) slot.Add("iters", s.Iterations).Add("stripes", s.Stripes);
            slot.Add("key-offset", s.KeyOffset);
            slots.Add(slot);
        }
        e.Add("slots", slots);
        e.Add("payload-offset", luks.PayloadOffset);
        e.Add("master-key-iters", luks.MasterKeyIters);
        return e;
    }

    private static QDict Qcow2Specific(Qcow2Image image)
    {
        var info = image.Info;
        var d = new QDict(KeyOrder.Qcow2Specific);
        bool v3 = info.Version >= 3;
        d.Add("compat", v3 ? "1.1" : "0.10");
        d.Add("compression-type", info.CompressionType == CompressionType.Zstd ? "zstd" : "zlib");
        d.Add("refcount-bits", info.RefcountBits);
        if (info.Encryption != CryptMethod.None) d.Add("encrypt", EncryptBlock(info));
        if (v3)
        {
            d.Add("lazy-refcounts", info.LazyRefcounts);
            if (image.Bitmaps.Count > 0)
            {
                var list = new QList();
                foreach (var b in image.Bitmaps)
                {
                    var flags = new QList();
                    if (b.InUse) flags.Add("in-use");
                    if (b.Auto) flags.Add("auto");
                    list.Add(new QDict(KeyOrder.Bitmap).Add("flags", flags).Add("name", b.Name).Add("granularity", b.Granularity));
                }
                d.Add("bitmaps", list);
            }
            if (info.DataFile is not null)
            {
                d.Add("data-file", info.DataFile);
                d.Add("data-file-raw", info.DataFileRaw);
            }
            d.Add("corrupt", info.Corrupt || image.IsCorrupt);
            d.Add("extended-l2", info.ExtendedL2);
        }
        return d;
    }
}
