using System.Runtime.CompilerServices;

namespace Qcow2.Spans;

/// <summary>
/// A compressed cluster descriptor, bits 0–61 of a compressed L2 entry (spec "Compressed Clusters
/// Descriptor"). With x = 62 - (cluster_bits - 8):
/// <code>
/// bit 0 .. x-1  host byte offset of the compressed data (not aligned)
/// bit x .. 61   number of additional 512-byte sectors beyond the one holding the offset
/// </code>
/// The split moves with cluster_bits: 61/1 bits at 512 B clusters, 49/13 at 2 MiB.
/// </summary>
public readonly struct CompressedDescriptor : IEquatable<CompressedDescriptor>
{
    /// <summary>Bits 0–61 of an L2 entry.</summary>
    public const ulong DescriptorMask = 0x3fff_ffff_ffff_ffffUL;

    private CompressedDescriptor(ulong raw, int clusterBits)
    {
        Raw = raw;
        ClusterBits = clusterBits;
    }

    /// <summary>The descriptor bits (0–61), without the compressed and COPIED flags.</summary>
    public ulong Raw { get; }

    /// <summary>The cluster_bits the descriptor was decoded with.</summary>
    public int ClusterBits { get; }

    /// <summary>Width of the offset field: 62 - (cluster_bits - 8).</summary>
    public int OffsetFieldBits => OffsetBitsFor(ClusterBits);

    /// <summary>Width of the sector count field: cluster_bits - 8.</summary>
    public int SectorFieldBits => ClusterBits - 8;

    /// <summary>The host byte offset where the compressed data starts.</summary>
    public long HostOffset => (long)(Raw & ((1UL << OffsetFieldBits) - 1));

    /// <summary>Number of 512-byte sectors after the one holding <see cref="HostOffset"/>.</summary>
    public int AdditionalSectors => (int)((Raw >> OffsetFieldBits) & ((1UL << SectorFieldBits) - 1));

    /// <summary>Same as <see cref="HostOffset"/>: the first host byte of the compressed data.</summary>
    public long HostStart => HostOffset;

    /// <summary>Bytes from <see cref="HostOffset"/> to the end of the last sector the data may occupy.</summary>
    public int HostLength => ((AdditionalSectors + 1) << Qcow2Constants.SectorBits) - (int)(HostOffset & (Qcow2Constants.SectorSize - 1));

    /// <summary>One past the last host byte (<see cref="HostStart"/> + <see cref="HostLength"/>).</summary>
    public long HostEnd => HostOffset + HostLength;

    /// <summary>
    /// True when the offset field uses bits at or above 56, which the spec requires to be zero
    /// (possible only for cluster_bits below 14, whose offset field is wider than 56 bits).
    /// </summary>
    public bool HasOffsetBeyondLimit => (ulong)HostOffset > (ulong)Qcow2Limits.MaxHostOffset;

    /// <summary>Width of the offset field for a cluster_bits value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int OffsetBitsFor(int clusterBits) => 70 - clusterBits;

    /// <summary>Largest <see cref="AdditionalSectors"/> representable for a cluster_bits value.</summary>
    public static int MaxAdditionalSectors(int clusterBits) => (1 << (clusterBits - 8)) - 1;

    /// <summary>Decodes the descriptor bits of an L2 entry (the flags in bits 62–63 are ignored).</summary>
    /// <exception cref="ArgumentOutOfRangeException">clusterBits is outside 9..21.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static CompressedDescriptor Decode(ulong raw, int clusterBits)
    {
        if ((uint)(clusterBits - Qcow2Limits.MinClusterBits) > Qcow2Limits.MaxClusterBits - Qcow2Limits.MinClusterBits)
            ThrowHelper.ThrowArgumentOutOfRange(nameof(clusterBits), clusterBits, "cluster_bits must be 9..21.");
        return new CompressedDescriptor(raw & DescriptorMask, clusterBits);
    }

    /// <summary>
    /// Encodes compressed data of <paramref name="compressedLength"/> bytes stored at
    /// <paramref name="hostOffset"/>; false when the offset or the sector count does not fit.
    /// </summary>
    public static bool TryEncode(long hostOffset, int compressedLength, int clusterBits, out CompressedDescriptor descriptor)
    {
        descriptor = default;
        if ((uint)(clusterBits - Qcow2Limits.MinClusterBits) > Qcow2Limits.MaxClusterBits - Qcow2Limits.MinClusterBits) return false;
        if (hostOffset < 0 || compressedLength <= 0) return false;
        int offsetBits = OffsetBitsFor(clusterBits);
        if ((ulong)hostOffset > Math.Min((1UL << offsetBits) - 1, (ulong)Qcow2Limits.MaxHostOffset)) return false;
        long last = hostOffset + compressedLength - 1;
        long additional = (last >> Qcow2Constants.SectorBits) - (hostOffset >> Qcow2Constants.SectorBits);
        if (additional > MaxAdditionalSectors(clusterBits)) return false;
        descriptor = new CompressedDescriptor((ulong)hostOffset | ((ulong)additional << offsetBits), clusterBits);
        return true;
    }

    /// <summary>Encodes like <see cref="TryEncode"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The offset or length does not fit the descriptor.</exception>
    public static CompressedDescriptor Encode(long hostOffset, int compressedLength, int clusterBits)
    {
        if (!TryEncode(hostOffset, compressedLength, clusterBits, out var d))
            ThrowHelper.ThrowArgumentOutOfRange(nameof(hostOffset), hostOffset,
                "The compressed data does not fit a descriptor for this cluster size (offset or sector count too large, or length not positive).");
        return d;
    }

    /// <inheritdoc/>
    public bool Equals(CompressedDescriptor other) => Raw == other.Raw && ClusterBits == other.ClusterBits;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is CompressedDescriptor d && Equals(d);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Raw, ClusterBits);

    /// <summary>Equality.</summary>
    public static bool operator ==(CompressedDescriptor a, CompressedDescriptor b) => a.Equals(b);

    /// <summary>Inequality.</summary>
    public static bool operator !=(CompressedDescriptor a, CompressedDescriptor b) => !a.Equals(b);

    /// <inheritdoc/>
    public override string ToString() => $"Compressed(offset 0x{HostOffset:x}, +{AdditionalSectors} sectors)";
}
