using System.Text;
using Qcow2.Spans;

namespace Qcow2.Volume;

/// <summary>How much of a new image is allocated up front (qemu-img's <c>preallocation</c> option).</summary>
public enum Preallocation
{
    /// <summary>Nothing beyond the header, refcount structures and the L1 table.</summary>
    Off,

    /// <summary>Every L2 table and data cluster allocated in the metadata; the file is sparse.</summary>
    Metadata,

    /// <summary>Like <see cref="Metadata"/>, and the data area reserved on disk (posix_fallocate).</summary>
    Falloc,

    /// <summary>Like <see cref="Metadata"/>, and the data area written with zeros.</summary>
    Full,
}

/// <summary>
/// The options of a new qcow2 image, named and validated like <c>qemu-img create -f qcow2 -o ...</c>.
/// </summary>
public sealed record Qcow2CreateOptions
{
    /// <summary>Virtual size in bytes; rounded up to a multiple of 512 as qemu-img does.</summary>
    public long Size { get; init; }

    /// <summary>Cluster size in bytes: a power of two from 512 to 2 MiB.</summary>
    public int ClusterSize { get; init; } = 65536;

    /// <summary>Refcount width in bits: 1, 2, 4, 8, 16, 32 or 64 (only 16 for compat 0.10).</summary>
    public int RefcountBits { get; init; } = 16;

    /// <summary>"1.1" (or "v3") for version 3, "0.10" (or "v2") for version 2.</summary>
    public string Compat { get; init; } = "1.1";

    /// <summary>Set the lazy refcounts compatible feature (version 3 only).</summary>
    public bool LazyRefcounts { get; init; }

    /// <summary>Extended L2 entries with 32 subclusters (version 3, clusters of at least 16 KiB).</summary>
    public bool ExtendedL2 { get; init; }

    /// <summary>Compression type of compressed clusters (zstd needs version 3).</summary>
    public CompressionType CompressionType { get; init; } = CompressionType.Zlib;

    /// <summary>Backing file name, stored as given (relative names are resolved against the image's directory when opened).</summary>
    public string? BackingFile { get; init; }

    /// <summary>Backing file format ("qcow2", "raw"), stored in the backing format extension.</summary>
    public string? BackingFormat { get; init; }

    /// <summary>
    /// External data file name (version 3), stored in the image as given (less a <c>file:</c> prefix,
    /// as qemu-img stores it). When the image is created from a path
    /// (<see cref="Qcow2Creator.Create(string, Qcow2CreateOptions, string)"/>, <see cref="Qcow2Image.Create(string, Qcow2CreateOptions)"/>)
    /// a relative name is created relative to the process's current directory, not the image's
    /// directory, as <c>qemu-img create -o data_file=NAME</c> does; opening looks for it beside the image
    /// first, then from the current directory, so creation refuses when a different file of that name
    /// lies beside the image. Give an absolute name to be independent of the current directory.
    /// </summary>
    public string? DataFile { get; init; }

    /// <summary>The external data file is a valid raw image by itself (needs <see cref="DataFile"/>, no backing file).</summary>
    public bool DataFileRaw { get; init; }

    /// <summary>Preallocation mode.</summary>
    public Preallocation Preallocation { get; init; }

    /// <summary>The header version the <see cref="Compat"/> level means (2 or 3), or 0 when it names none.</summary>
    public int Version => Compat switch
    {
        "1.1" or "v3" => 3,
        "0.10" or "v2" => 2,
        _ => 0,
    };

    /// <summary>
    /// Checks the options with qemu-img's rules and its messages.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The size is negative.</exception>
    /// <exception cref="ArgumentException">An option or a combination qemu-img refuses.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(Size);
        if (ClusterSize < Qcow2Limits.MinClusterSize || ClusterSize > Qcow2Limits.MaxClusterSize || !int.IsPow2(ClusterSize))
            throw new ArgumentException("Cluster size must be a power of two between 512 and 2048k", nameof(ClusterSize));
        if (RefcountBits < 1 || RefcountBits > 64 || !int.IsPow2(RefcountBits))
            throw new ArgumentException("Refcount width must be a power of two and may not exceed 64 bits", nameof(RefcountBits));
        int version = Version;
        if (version == 0)
            throw new ArgumentException($"Parameter 'version' does not accept value '{Compat}'", nameof(Compat));
        if (BackingFile is null && BackingFormat is not null)
            throw new ArgumentException("Backing format cannot be used without backing file", nameof(BackingFormat));
        if (version < 3 && RefcountBits != 16)
            throw new ArgumentException("Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)", nameof(RefcountBits));
        if (version < 3 && LazyRefcounts)
            throw new ArgumentException("Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)", nameof(LazyRefcounts));
        if (version < 3 && DataFile is not null)
            throw new ArgumentException("External data files are only supported with compatibility level 1.1 and above (use version=v3 or greater)", nameof(DataFile));
        if (DataFileRaw && DataFile is null)
            throw new ArgumentException("data-file-raw requires data-file", nameof(DataFileRaw));
        if (DataFileRaw && BackingFile is not null)
            throw new ArgumentException("Backing file and data-file-raw cannot be used at the same time", nameof(DataFileRaw));
        if (BackingFile is not null && Preallocation != Preallocation.Off && !ExtendedL2)
            throw new ArgumentException("Backing file and preallocation can only be used at the same time if extended_l2 is on", nameof(Preallocation));
        if (CompressionType is not (CompressionType.Zlib or CompressionType.Zstd))
            throw new ArgumentException($"Unknown compression type {(int)CompressionType}", nameof(CompressionType));
        if (version < 3 && CompressionType != CompressionType.Zlib)
            throw new ArgumentException("Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)", nameof(CompressionType));
        if (ExtendedL2)
        {
            if (version < 3)
                throw new ArgumentException("Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)", nameof(ExtendedL2));
            if (ClusterSize < 1 << Qcow2Limits.MinExtendedL2ClusterBits)
                throw new ArgumentException("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes", nameof(ExtendedL2));
        }
        if (!Enum.IsDefined(Preallocation))
            throw new ArgumentException($"Invalid preallocation mode: '{Preallocation}'", nameof(Preallocation));
        CheckName(BackingFile, nameof(BackingFile), Qcow2Limits.MaxBackingFileNameLength, "Backing file name too long");
        CheckName(BackingFormat, nameof(BackingFormat), Qcow2Limits.MaxFormatNameLength, "Backing format name too long");
        CheckName(DataFile, nameof(DataFile), Qcow2Limits.MaxClusterSize, "Data file name too long");
        if (Size > long.MaxValue - 511)
            throw new ArgumentException(TooLarge, nameof(Size));
    }

    internal const string TooLarge = "The image size is too large for file format 'qcow2' (try using a larger cluster size)";

    private static void CheckName(string? name, string param, int maxBytes, string tooLong)
    {
        if (name is null) return;
        if (name.Length == 0) throw new ArgumentException($"{param} is empty", param);
        if (name.Contains('\0')) throw new ArgumentException($"{param} contains a NUL character", param);
        if (Encoding.UTF8.GetByteCount(name) > maxBytes) throw new ArgumentException(tooLong, param);
    }
}
