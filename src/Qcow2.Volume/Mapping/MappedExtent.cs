namespace Qcow2.Volume.Mapping;

/// <summary>How a guest range is stored in one image (not looking at its backing chain).</summary>
internal enum ExtentKind : byte
{
    /// <summary>Not allocated here: read the backing file, or zeros.</summary>
    Unallocated,

    /// <summary>Reads as zeros, no host cluster.</summary>
    ZeroPlain,

    /// <summary>Reads as zeros, host cluster preallocated.</summary>
    ZeroAllocated,

    /// <summary>Host data at <see cref="MappedExtent.HostOffset"/>.</summary>
    Data,

    /// <summary>A compressed cluster; <see cref="MappedExtent.Descriptor"/> holds the raw descriptor.</summary>
    Compressed,
}

/// <summary>A run of guest bytes with one <see cref="ExtentKind"/> (and, for data, contiguous host bytes).</summary>
internal struct MappedExtent
{
    public ExtentKind Kind;
    public long Length;

    /// <summary>Host offset of the first byte (data and preallocated zero extents, and unallocated subclusters of an allocated cluster), else 0.</summary>
    public long HostOffset;

    /// <summary>Whether <see cref="HostOffset"/> is meaningful for an unallocated extent (a subcluster of an allocated cluster).</summary>
    public bool UnallocatedWithHost;

    /// <summary>The raw L2 entry of a compressed cluster.</summary>
    public ulong Descriptor;
}
