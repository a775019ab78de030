using Qcow2.Spans;

namespace Qcow2.Volume;

/// <summary>What an open qcow2 image declares about itself.</summary>
public sealed record Qcow2ImageInfo
{
    /// <summary>2 or 3 (compat 0.10 or 1.1).</summary>
    public int Version { get; init; }

    /// <summary>The virtual size in bytes.</summary>
    public long VirtualSize { get; init; }

    /// <summary>The cluster size in bytes.</summary>
    public int ClusterSize { get; init; }

    /// <summary>Width of a refcount entry in bits (1..64).</summary>
    public int RefcountBits { get; init; }

    /// <summary>The incompatible feature bits as found at open.</summary>
    public IncompatibleFeatures IncompatibleFeatures { get; init; }

    /// <summary>The compatible feature bits.</summary>
    public CompatibleFeatures CompatibleFeatures { get; init; }

    /// <summary>The autoclear feature bits.</summary>
    public AutoclearFeatures AutoclearFeatures { get; init; }

    /// <summary>Whether lazy refcounts are enabled.</summary>
    public bool LazyRefcounts { get; init; }

    /// <summary>Whether L2 entries are extended (subclusters).</summary>
    public bool ExtendedL2 { get; init; }

    /// <summary>The compression type of compressed clusters.</summary>
    public CompressionType CompressionType { get; init; }

    /// <summary>The backing file name as written in the image, or null.</summary>
    public string? BackingFile { get; init; }

    /// <summary>The backing format from the header extension, or null.</summary>
    public string? BackingFormat { get; init; }

    /// <summary>The external data file name, or null.</summary>
    public string? DataFile { get; init; }

    /// <summary>Whether the external data file is a consistent raw image.</summary>
    public bool DataFileRaw { get; init; }

    /// <summary>Whether the dirty bit was set at open.</summary>
    public bool Dirty { get; init; }

    /// <summary>Whether the corrupt bit was set at open.</summary>
    public bool Corrupt { get; init; }

    /// <summary>
    /// The encryption method. Encrypted images (<see cref="CryptMethod.Aes"/>, <see cref="CryptMethod.Luks"/>)
    /// open read-only for metadata (info, map, check); their data cannot be read (no key support).
    /// </summary>
    public CryptMethod Encryption { get; init; }

    /// <summary>The LUKS header (crypt_method 2), read without a key; null otherwise.</summary>
    public LuksInfo? Luks { get; init; }

    /// <summary>Number of internal snapshots.</summary>
    public int SnapshotCount { get; init; }

    /// <summary>Number of persistent bitmaps.</summary>
    public int BitmapCount { get; init; }

    /// <summary>Types of header extensions this toolkit does not know, kept as they are.</summary>
    public IReadOnlyList<uint> UnknownHeaderExtensions { get; init; } = [];
}
