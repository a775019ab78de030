using System.Globalization;
using System.Text;
using Qcow2.Cli.Output;
using Qcow2.Cli.Parsing;

namespace Qcow2.Cli.Framework;

/// <summary>
/// One image named on the command line: a plain file name (with -f or probed), or, with
/// <c>--image-opts</c>, qemu's option string <c>driver=qcow2,file.filename=PATH,encrypt.key-secret=ID,...</c>
/// (<c>,,</c> is a comma inside a value; <c>driver</c> may be left out and is then probed). Of the
/// qcow2 runtime options, the key secret, <c>encrypt.format</c> and the cache sizes
/// (<c>l2-cache-size</c>, <c>l2-cache-entry-size</c>, <c>refcount-cache-size</c>, <c>cache-size</c>)
/// are honoured; <c>read-only</c> and <c>force-share</c> are accepted; any other key is refused
/// as qemu-img refuses an unknown one.
/// </summary>
internal sealed record ImageSpec
{
    /// <summary>The argument as given: the file name, or the whole option string.</summary>
    public required string Argument { get; init; }

    /// <summary>The image file.</summary>
    public required string Path { get; init; }

    /// <summary>"qcow2" or "raw"; null to probe.</summary>
    public string? Format { get; init; }

    /// <summary>Whether the image was given as an option string.</summary>
    public bool FromImageOpts { get; init; }

    /// <summary>encrypt.key-secret: the id of the <c>--object secret</c> that unlocks the image.</summary>
    public string? KeySecretId { get; init; }

    /// <summary>
    /// backing.encrypt.key-secret: the secret of an encrypted backing file (and of the files below it),
    /// given to the library through <c>Qcow2OpenOptions.BackingSecretResolver</c>.
    /// </summary>
    public string? BackingKeySecretId { get; init; }

    /// <summary>encrypt.format: "luks" or "aes", checked against the image header.</summary>
    public string? EncryptFormat { get; init; }

    public long? L2CacheSize { get; init; }
    public long? L2CacheEntrySize { get; init; }
    public long? RefcountCacheSize { get; init; }
    public long? CacheSize { get; init; }

    /// <summary>The qcow2-only keys given without a driver, in order (refused if the file probes as raw).</summary>
    public IReadOnlyList<string> Qcow2OnlyKeys { get; init; } = Array.Empty<string>();

    /// <summary>A plain file name.</summary>
    public static ImageSpec FromFile(string path, string? format) => new() { Argument = path, Path = path, Format = format };

    /// <summary>
    /// The name qemu-img gives the opened image (info's "image:"/"filename"): the file name, or,
    /// when the options hold one that a file name cannot express (encrypt.key-secret, QEMU's only
    /// "strong" qcow2 option), a <c>json:{...}</c> name with the members in QEMU's dictionary order.
    /// </summary>
    public string DisplayName
    {
        get
        {
            if (KeySecretId is null) return Path;
            var sb = new StringBuilder("json:{");
            QJson.WriteString(sb, "encrypt.key-secret");
            sb.Append(": ");
            QJson.WriteString(sb, KeySecretId);
            sb.Append(", \"driver\": ");
            QJson.WriteString(sb, Format ?? "qcow2");
            sb.Append(", \"file\": {\"driver\": \"file\", \"filename\": ");
            QJson.WriteString(sb, Path);
            return sb.Append("}}").ToString();
        }
    }

    /// <summary>"Could not open 'ARG': REASON", qemu-img's wording for every failed open.</summary>
    public string OpenFailure(string reason) => $"Could not open '{Argument}': {reason}";

    /// <summary>The failed-open error: <see cref="OpenFailure"/> as its message, the reason kept apart.</summary>
    public CommandFailedException OpenError(string reason, int? exitCode = null) =>
        new(OpenFailure(reason), exitCode) { OpenReason = reason };

    /// <summary>The keys qemu knows for qcow2 but this tool does not implement.</summary>
    private static readonly HashSet<string> KnownUnsupported = new(StringComparer.Ordinal)
    {
        "backing", "data-file", "lazy-refcounts", "pass-discard-request", "pass-discard-snapshot",
        "pass-discard-other", "overlap-check", "cache-clean-interval", "discard", "detect-zeroes",
        "cache.direct", "cache.no-flush", "auto-read-only", "node-name", "file.aio", "file.locking",
    };

    /// <summary>Parses an <c>--image-opts</c> argument.</summary>
    /// <exception cref="CommandFailedException">qemu-img's "Could not open '...': ..." for bad keys or values.</exception>
    public static ImageSpec Parse(string text)
    {
        OptionList list;
        try
        {
            list = OptionList.Parse(text);
        }
        catch (UsageException e)
        {
            throw new CommandFailedException($"Could not open '{text}': {e.Message}");
        }
        string Fail(string reason) => throw new CommandFailedException($"Could not open '{text}': {reason}") { OpenReason = reason };
        if (list.HelpRequested) Fail("Block format 'qcow2' does not support the option 'help'");

        var values = new List<KeyValuePair<string, string?>>(list.Items);
        // A first item without '=' is QEMU's implied "file" (a node reference, which qemu-img cannot resolve either).
        if (values.Count > 0 && values[0].Value is null) values[0] = new("file", values[0].Key);
        string? driver = null, filename = null;
        foreach (var (k, v) in values)
        {
            if (k == "driver") driver = v;
            else if (k == "file.filename") filename = v;
            else if (k == "file") Fail($"Cannot find device='{v}' nor node-name='{v}'");
        }
        if (driver is not null && driver is not ("qcow2" or "raw"))
            Fail(driver is "file" or "host_device" or "null-co" or "vmdk" or "vdi" or "vpc" or "vhdx" or "qed" or "luks"
                ? $"Driver '{driver}' is not supported by this tool (qcow2 and raw are)"
                : $"Unknown driver '{driver}'");
        string shownDriver = driver ?? "qcow2";

        var spec = new ImageSpec { Argument = text, Path = filename ?? "", Format = driver, FromImageOpts = true };
        var qcow2Only = new List<string>();
        var unsupported = new List<string>();
        foreach (var (key, rawValue) in values)
        {
            // A later key without '=' is QEMU's deprecated short boolean ("foo" is foo=on).
            string value = rawValue ?? "on";
            switch (key)
            {
                case "driver" or "file.filename":
                    break;
                case "file.driver":
                    if (value != "file") Fail($"Driver '{value}' is not supported by this tool for 'file' (file is)");
                    break;
                case "read-only" or "force-share":
                    if (!(value is "on" or "off" or "true" or "false" or "yes" or "no"))
                        Fail($"Parameter '{key}' expects 'on' or 'off'");
                    break;
                case "encrypt.key-secret" when shownDriver == "qcow2":
                    if (!qcow2Only.Contains(key)) qcow2Only.Add(key);
                    spec = spec with { KeySecretId = value };
                    break;
                case "backing.encrypt.key-secret" when shownDriver == "qcow2":
                    if (!qcow2Only.Contains(key)) qcow2Only.Add(key);
                    spec = spec with { BackingKeySecretId = value };
                    break;
                case "encrypt.format" when shownDriver == "qcow2":
                    if (!qcow2Only.Contains(key)) qcow2Only.Add(key);
                    if (value is not ("luks" or "aes")) Fail($"Parameter 'encrypt.format' does not accept value '{value}'");
                    spec = spec with { EncryptFormat = value };
                    break;
                case "l2-cache-size" or "l2-cache-entry-size" or "refcount-cache-size" or "cache-size" when shownDriver == "qcow2":
                    if (!qcow2Only.Contains(key)) qcow2Only.Add(key);
                    if (SizeParser.TryParse(value, out long size) != SizeParseError.None)
                    {
                        string reason = $"Parameter '{key}' expects a non-negative number below 2^64";
                        throw new CommandFailedException($"Could not open '{text}': {reason}",
                            hint: "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.")
                        {
                            OpenReason = reason,
                        };
                    }
                    spec = key switch
                    {
                        "l2-cache-size" => spec with { L2CacheSize = size },
                        "l2-cache-entry-size" => spec with { L2CacheEntrySize = size },
                        "refcount-cache-size" => spec with { RefcountCacheSize = size },
                        _ => spec with { CacheSize = size },
                    };
                    break;
                default:
                    if (!unsupported.Contains(key)) unsupported.Add(key);
                    break;
            }
        }
        if (unsupported.Count > 0)
        {
            // QEMU names the first left-over key in its dictionary's order.
            string key = QemuDictOrder(unsupported)[0];
            if (shownDriver == "qcow2" && KnownUnsupported.Contains(key))
                Fail($"The qcow2 option '{key}' is not supported by this tool");
            Fail($"Block format '{shownDriver}' does not support the option '{key}'");
        }
        if (filename is null) Fail("A block device must be specified for \"file\"");
        if (driver is null) spec = spec with { Qcow2OnlyKeys = QemuDictOrder(qcow2Only) };
        if (spec.Path.Length == 0) Fail("The 'file' block driver requires a file name");
        return spec;
    }

    /// <summary>
    /// <paramref name="keys"/> (distinct, in insertion order) in the order a QEMU QDict iterates
    /// them: by hash bucket (tdb_hash modulo 512), and within a bucket the latest inserted first.
    /// </summary>
    internal static List<string> QemuDictOrder(IReadOnlyList<string> keys)
    {
        var indexed = new List<(string Key, uint Bucket, int Index)>();
        for (int i = 0; i < keys.Count; i++) indexed.Add((keys[i], QDictBucket(keys[i]), i));
        indexed.Sort((a, b) => a.Bucket != b.Bucket ? a.Bucket.CompareTo(b.Bucket) : b.Index.CompareTo(a.Index));
        return indexed.ConvertAll(t => t.Key);
    }

    /// <summary>QEMU's qdict bucket for a key (the tdb hash of its bytes, 512 buckets).</summary>
    internal static uint QDictBucket(string key)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(key);
        uint value = unchecked(0x238F13AFu * (uint)bytes.Length);
        for (int i = 0; i < bytes.Length; i++) value = unchecked(value + ((uint)bytes[i] << (i * 5 % 24)));
        return unchecked(1103515243u * value + 12345u) % 512;
    }

    /// <summary>
    /// The cache sizes for an image of <paramref name="virtualSize"/> bytes in clusters of
    /// <paramref name="clusterSize"/>, from the options as QEMU combines them (cache-size split
    /// between the L2 and refcount caches, defaults otherwise); 0 leaves the library's default.
    /// </summary>
    /// <exception cref="CommandFailedException">A combination QEMU refuses, with its message.</exception>
    public (long L2, long Refcount, int EntrySize) CacheSizes(long virtualSize, int clusterSize)
    {
        long l2 = L2CacheSize ?? 0, refcount = RefcountCacheSize ?? 0;
        if (CacheSize is { } combined)
        {
            long minRefcount = 4L * clusterSize;
            // Enough L2 to map the whole disk, rounded up to whole clusters.
            long clusters = (virtualSize + clusterSize - 1) / clusterSize;
            long maxL2 = (clusters * 8 + clusterSize - 1) / clusterSize * clusterSize;
            if (L2CacheSize is not null && RefcountCacheSize is not null)
                throw OpenError("cache-size, l2-cache-size and refcount-cache-size may not be set at the same time");
            if (L2CacheSize is { } l2Only)
            {
                if (l2Only > combined) throw OpenError("l2-cache-size may not exceed cache-size");
                refcount = combined - l2Only;
            }
            else if (RefcountCacheSize is { } rcOnly)
            {
                if (rcOnly > combined) throw OpenError("refcount-cache-size may not exceed cache-size");
                l2 = combined - rcOnly;
            }
            else if (combined >= maxL2 + minRefcount)
            {
                l2 = maxL2;
                refcount = combined - l2;
            }
            else
            {
                refcount = Math.Min(combined, minRefcount);
                l2 = combined - refcount;
            }
        }
        int entry = 0;
        if (L2CacheEntrySize is { } e)
        {
            if (e < 512 || e > clusterSize || (e & (e - 1)) != 0)
                throw OpenError(string.Create(CultureInfo.InvariantCulture,
                    $"L2 cache entry size must be a power of two between 512 and the cluster size ({clusterSize})"));
            entry = (int)e;
        }
        // QEMU never makes the caches smaller than two L2 entries and four refcount blocks. The
        // library reads 0 as "its default", so a size that was set (or derived) is kept above 0.
        bool l2Set = L2CacheSize is not null || CacheSize is not null;
        bool refcountSet = RefcountCacheSize is not null || CacheSize is not null;
        if (l2Set) l2 = Math.Max(l2, 2L * (entry > 0 ? entry : clusterSize));
        if (refcountSet) refcount = Math.Max(refcount, 4L * clusterSize);
        return (l2, refcount, entry);
    }

    /// <summary>Whether any cache option was given.</summary>
    public bool HasCacheOptions => L2CacheSize is not null || L2CacheEntrySize is not null || RefcountCacheSize is not null || CacheSize is not null;
}

/// <summary>The shared <c>--object</c> and <c>--image-opts</c> options and how commands read them.</summary>
internal static class ImageArguments
{
    public static readonly OptionSpec Object = new('\0', "object", true, "OBJECTDEF",
        "define a secret: secret,id=ID,data=STRING or secret,id=ID,file=PATH[,format=raw|base64] (repeatable)");

    public static readonly OptionSpec ImageOpts = new('\0', "image-opts", false, null,
        "image names are option strings: [driver=qcow2,]file.filename=PATH[,encrypt.key-secret=ID][,l2-cache-size=SIZE]...");

    /// <summary>Help text paragraph on secrets and option strings, shared by the commands.</summary>
    public const string EncryptionHelp =
        "Encrypted images (LUKS or legacy AES) are opened with --object secret,id=ID,data=PASSWORD\n" +
        "(or file=PATH; format=base64 for base64) and --image-opts driver=qcow2,file.filename=FILE,\n" +
        "encrypt.key-secret=ID. In an option string ',,' is a comma; l2-cache-size, l2-cache-entry-size,\n" +
        "refcount-cache-size and cache-size set the metadata caches.";

    /// <summary>Loads the <c>--object</c> secrets; null when help was printed (exit 0).</summary>
    public static SecretStore? LoadSecrets(ParsedArgs args, CliContext context) => SecretStore.Load(args.GetAll("object"), context.Out);

    /// <summary>
    /// The image named by <paramref name="argument"/>: an option string with --image-opts (which
    /// qemu-img refuses together with a format option), else a file name of <paramref name="format"/>.
    /// </summary>
    public static ImageSpec Image(ParsedArgs args, string argument, string? format, bool imageOpts)
    {
        if (!imageOpts) return ImageSpec.FromFile(argument, format);
        if (format is not null) throw new CommandFailedException("--image-opts and --format are mutually exclusive");
        return ImageSpec.Parse(argument);
    }

    /// <summary><see cref="Image(ParsedArgs, string, string?, bool)"/> with --image-opts as given.</summary>
    public static ImageSpec Image(ParsedArgs args, string argument, string? format) => Image(args, argument, format, args.Has("image-opts"));
}
