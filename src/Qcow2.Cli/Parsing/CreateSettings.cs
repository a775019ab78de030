using System.Globalization;
using System.Text;
using Qcow2.Cli.Framework;

namespace Qcow2.Cli.Parsing;

/// <summary>
/// Image creation settings parsed from qemu-img's <c>-o</c> option names (size, compat,
/// backing_file, backing_fmt, cluster_size, preallocation, lazy_refcounts, refcount_bits,
/// compression_type, extended_l2, data_file, data_file_raw). Validates only the syntax and
/// the value sets; the library validates combinations it cannot honour.
/// </summary>
internal sealed record CreateSettings
{
    public string Format { get; init; } = "qcow2";
    public long? Size { get; init; }
    public string? Compat { get; init; }
    public string? BackingFile { get; init; }
    public string? BackingFormat { get; init; }
    public long? ClusterSize { get; init; }
    public string? Preallocation { get; init; }
    public bool? LazyRefcounts { get; init; }
    public int? RefcountBits { get; init; }
    public string? CompressionType { get; init; }
    public bool? ExtendedL2 { get; init; }
    public string? DataFile { get; init; }
    public bool? DataFileRaw { get; init; }

    /// <summary>The encrypt.* and encryption options (see <see cref="EncryptionSettings"/>).</summary>
    public EncryptionSettings Encryption { get; init; } = new();

    public static readonly string[] Qcow2Keys =
    {
        "backing_file", "backing_fmt", "cluster_size", "compat", "compression_type", "data_file",
        "data_file_raw", "extended_l2", "lazy_refcounts", "preallocation", "refcount_bits", "size",
        "encryption", "encrypt.format", "encrypt.key-secret", "encrypt.cipher-alg", "encrypt.cipher-mode",
        "encrypt.ivgen-alg", "encrypt.ivgen-hash-alg", "encrypt.hash-alg", "encrypt.iter-time",
    };

    public static readonly string[] RawKeys = { "size", "preallocation" };

    /// <summary>qemu-img's "-o help" text for the format.</summary>
    public static string HelpText(string format)
    {
        var sb = new StringBuilder();
        sb.Append("Supported ").Append(format).Append(" options:\n");
        void Line(string name, string kind, string text) =>
            sb.Append("  ").Append((name + "=<" + kind + ">").PadRight(22)).Append(" - ").Append(text).Append('\n');
        if (format == "qcow2")
        {
            Line("backing_file", "str", "File name of a base image");
            Line("backing_fmt", "str", "Image format of the base image");
            Line("cluster_size", "size", "qcow2 cluster size");
            Line("compat", "str", "Compatibility level (v2 [0.10] or v3 [1.1])");
            Line("compression_type", "str", "Compression method used for image cluster compression");
            Line("data_file", "str", "File name of an external data file");
            Line("data_file_raw", "bool (on/off)", "The external data file must stay valid as a raw image");
            Line("encrypt.cipher-alg", "str", "Name of encryption cipher algorithm");
            Line("encrypt.cipher-mode", "str", "Name of encryption cipher mode");
            Line("encrypt.format", "str", "Encrypt the image, format choices: 'aes', 'luks'");
            Line("encrypt.hash-alg", "str", "Name of encryption hash algorithm");
            Line("encrypt.iter-time", "num", "Time to spend in PBKDF in milliseconds");
            Line("encrypt.ivgen-alg", "str", "Name of IV generator algorithm");
            Line("encrypt.ivgen-hash-alg", "str", "Name of IV generator hash algorithm");
            Line("encrypt.key-secret", "str", "ID of secret providing qcow AES key or LUKS passphrase");
            Line("encryption", "bool (on/off)", "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)");
            Line("extended_l2", "bool (on/off)", "Extended L2 tables");
            Line("lazy_refcounts", "bool (on/off)", "Postpone refcount updates");
            Line("preallocation", "str", "Preallocation mode (allowed values: off, metadata, falloc, full)");
            Line("refcount_bits", "num", "Width of a reference count entry in bits");
            Line("size", "size", "Virtual disk size");
        }
        else
        {
            Line("preallocation", "str", "Preallocation mode (allowed values: off, falloc, full)");
            Line("size", "size", "Virtual disk size");
        }
        return sb.ToString();
    }

    /// <summary>Reads the options of <paramref name="list"/> for <paramref name="format"/>.</summary>
    public static CreateSettings FromOptions(string format, OptionList list)
    {
        list.RejectUnknown(format == "qcow2" ? Qcow2Keys : RawKeys, format);
        var s = new CreateSettings { Format = format };
        foreach (var (key, value) in list.Items)
        {
            string v = value ?? "";
            s = key switch
            {
                "size" => s with { Size = ParseSizeValue(key, value) },
                "compat" => s with
                {
                    Compat = v switch
                    {
                        "0.10" or "v2" => "0.10",
                        "1.1" or "v3" => "1.1",
                        _ => throw new UsageException($"Invalid parameter '{v}' for compat (use 0.10 or 1.1)"),
                    },
                },
                "backing_file" => s with { BackingFile = v },
                "backing_fmt" => s with { BackingFormat = v },
                "cluster_size" => s with { ClusterSize = ParseSizeValue(key, value) },
                "preallocation" => s with
                {
                    Preallocation = v is "off" or "metadata" or "falloc" or "full"
                        ? (format == "raw" && v == "metadata"
                            ? throw new UsageException("Invalid parameter 'metadata' for preallocation of format 'raw'")
                            : v)
                        : throw new UsageException($"Invalid parameter '{v}' for preallocation (use off, metadata, falloc or full)"),
                },
                "lazy_refcounts" => s with { LazyRefcounts = OptionList.ParseBool(key, value) },
                "refcount_bits" => s with
                {
                    RefcountBits = int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int rb)
                        ? rb
                        : throw new UsageException($"Parameter 'refcount_bits' expects a number"),
                },
                "compression_type" => s with
                {
                    CompressionType = v is "zlib" or "zstd"
                        ? v
                        : throw new UsageException($"Invalid parameter '{v}' for compression_type (use zlib or zstd)"),
                },
                "extended_l2" => s with { ExtendedL2 = OptionList.ParseBool(key, value) },
                "data_file" => s with { DataFile = v },
                "data_file_raw" => s with { DataFileRaw = OptionList.ParseBool(key, value) },
                "encryption" => s with { Encryption = s.Encryption with { Legacy = OptionList.ParseBool(key, value) } },
                _ when key.StartsWith("encrypt.", StringComparison.Ordinal) => s with { Encryption = s.Encryption.With(key, v) },
                _ => s,
            };
        }
        return s;
    }

    private static long ParseSizeValue(string key, string? value)
    {
        if (value is null || SizeParser.TryParse(value, out long v) != SizeParseError.None)
            throw new UsageException($"Parameter '{key}' expects a non-negative number below 2^64 (optional suffix k, M, G, T, P or E)");
        return v;
    }

    /// <summary>The "Formatting 'FILE', fmt=..." line qemu-img create prints.</summary>
    public string FormattingLine(string filename, long size)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append("Formatting '").Append(filename).Append("', fmt=").Append(Format);
        if (Format == "qcow2")
        {
            Encryption.AppendFormatting(sb);
            sb.Append(" cluster_size=").Append((ClusterSize ?? 65536).ToString(inv));
            sb.Append(" extended_l2=").Append(ExtendedL2 == true ? "on" : "off");
            if (Preallocation is not null) sb.Append(" preallocation=").Append(Preallocation);
            sb.Append(" compression_type=").Append(CompressionType ?? "zlib");
            sb.Append(" size=").Append(size.ToString(inv));
            if (Compat is not null) sb.Append(" compat=").Append(Compat);
            if (BackingFile is not null) sb.Append(" backing_file=").Append(BackingFile);
            if (BackingFormat is not null) sb.Append(" backing_fmt=").Append(BackingFormat);
            if (DataFile is not null) sb.Append(" data_file=").Append(DataFile);
            if (DataFileRaw is not null) sb.Append(" data_file_raw=").Append(DataFileRaw.Value ? "on" : "off");
            sb.Append(" lazy_refcounts=").Append(LazyRefcounts == true ? "on" : "off");
            sb.Append(" refcount_bits=").Append((RefcountBits ?? 16).ToString(inv));
        }
        else
        {
            sb.Append(" size=").Append(size.ToString(inv));
            if (Preallocation is not null) sb.Append(" preallocation=").Append(Preallocation);
        }
        return sb.Append('\n').ToString();
    }
}
