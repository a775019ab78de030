namespace Qcow2.Spans;

/// <summary>The bytes an image layout needs, as <c>qemu-img measure</c> reports them.</summary>
public readonly record struct MetadataSize(
    long HeaderBytes,
    long L1Bytes,
    long L2Bytes,
    long RefcountBytes,
    long RefcountBlocks,
    long VirtualSizeAligned,
    long AllocatedDataBytes,
    long ExtraBytes)
{
    /// <summary>All metadata: header cluster, L1, L2 and refcount structures (plus the extra bytes).</summary>
    public long MetadataBytes => HeaderBytes + L1Bytes + L2Bytes + RefcountBytes + ExtraBytes;

    /// <summary>measure's "fully-allocated": the metadata plus every data cluster.</summary>
    public long FullyAllocated => MetadataBytes + VirtualSizeAligned;

    /// <summary>measure's "required": the metadata (for a fully allocated file) plus the allocated data.</summary>
    public long Required => MetadataBytes + AllocatedDataBytes;
}

/// <summary>
/// Computes the space a qcow2 image needs, the way <c>qemu-img measure</c> does: one header
/// cluster, L2 tables for every guest cluster (L2 entries rounded up to whole tables), the L1
/// table rounded up to whole clusters, and the refcount table and blocks needed to count all of
/// those clusters and themselves (found as a fixed point). The metadata is always that of a
/// fully allocated image; "required" then adds only the data actually allocated.
/// </summary>
public static class MetadataSizeCalculator
{
    /// <summary>
    /// Computes the sizes; false when the virtual size needs an L1 table beyond QEMU's 32 MiB
    /// limit ("The image size is too large") or the total does not fit 63 bits.
    /// </summary>
    /// <param name="clusterBits">9..21 (14..21 with extended L2).</param>
    /// <param name="refcountOrder">0..6.</param>
    /// <param name="extendedL2">Extended L2 entries.</param>
    /// <param name="virtualSize">The virtual disk size; rounded up to a cluster.</param>
    /// <param name="allocatedDataBytes">Guest data to be stored (cluster-rounded by the caller); 0 for a new image.</param>
    /// <param name="extraBytes">Other space added to both totals (e.g. LUKS header clusters).</param>
    /// <param name="size">The result.</param>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of range.</exception>
    public static bool TryCalculate(int clusterBits, int refcountOrder, bool extendedL2, long virtualSize,
        long allocatedDataBytes, long extraBytes, out MetadataSize size)
    {
        var g = ClusterGeometry.Create(clusterBits, extendedL2);
        var r = RefcountGeometry.Create(clusterBits, refcountOrder);
        if (virtualSize < 0) ThrowHelper.ThrowArgumentOutOfRange(nameof(virtualSize), virtualSize, "Must not be negative.");
        if (allocatedDataBytes < 0) ThrowHelper.ThrowArgumentOutOfRange(nameof(allocatedDataBytes), allocatedDataBytes, "Must not be negative.");
        if (extraBytes < 0) ThrowHelper.ThrowArgumentOutOfRange(nameof(extraBytes), extraBytes, "Must not be negative.");
        size = default;
        long clusterSize = g.ClusterSize;

        long dataClusters = g.ClustersFor(virtualSize);
        long l2Tables = (dataClusters + g.L2Entries - 1) >> g.L2Bits;
        if (l2Tables > Qcow2Limits.MaxL1Entries) return false;
        long aligned = dataClusters << clusterBits;
        if (dataClusters > (long.MaxValue >> clusterBits)) return false;

        long header = clusterSize;
        long l2Bytes = l2Tables << clusterBits;
        // One L1 entry per L2 table, in whole clusters of the L1 table.
        long l1Entries = RoundUp(l2Tables, g.L1EntriesPerCluster);
        long l1Bytes = l1Entries * Qcow2Constants.TableEntrySize;

        UInt128 sum = (UInt128)(ulong)header + (ulong)l2Bytes + (ulong)l1Bytes + (ulong)aligned;
        if (sum > long.MaxValue) return false;
        long counted = (long)(sum >> clusterBits);
        long refBytes = RefcountMetadataBytes(counted, r, out long blocks);
        UInt128 total = sum + (ulong)refBytes + (ulong)extraBytes + (ulong)allocatedDataBytes;
        if (total > long.MaxValue) return false;
        size = new MetadataSize(header, l1Bytes, l2Bytes, refBytes, blocks, aligned, allocatedDataBytes, extraBytes);
        return true;
    }

    /// <summary>Like <see cref="TryCalculate"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of range, or the image is too large for QEMU's L1 limit.</exception>
    public static MetadataSize Calculate(int clusterBits, int refcountOrder, bool extendedL2, long virtualSize,
        long allocatedDataBytes = 0, long extraBytes = 0)
    {
        if (!TryCalculate(clusterBits, refcountOrder, extendedL2, virtualSize, allocatedDataBytes, extraBytes, out var s))
            ThrowHelper.ThrowArgumentOutOfRange(nameof(virtualSize), virtualSize, "The image size is too large for this cluster size.");
        return s;
    }

    /// <summary>
    /// Bytes of refcount table and refcount blocks needed to count <paramref name="clusters"/>
    /// clusters plus the refcount structures themselves: iterate blocks → table clusters until
    /// the count stops changing.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">clusters is negative.</exception>
    public static long RefcountMetadataBytes(long clusters, RefcountGeometry geometry, out long refcountBlocks)
    {
        if (clusters < 0) ThrowHelper.ThrowArgumentOutOfRange(nameof(clusters), clusters, "Must not be negative.");
        long perBlock = geometry.EntriesPerBlock;
        long perTableCluster = geometry.TableEntriesPerCluster;
        long blocks = 0, table = 0, previous = -1, total = clusters;
        while (total != previous)
        {
            previous = total;
            blocks = DivRoundUp(clusters + blocks + table, perBlock);
            table = DivRoundUp(blocks, perTableCluster);
            total = clusters + blocks + table;
        }
        refcountBlocks = blocks;
        return (blocks + table) << geometry.ClusterBits;
    }

    private static long DivRoundUp(long a, long b) => (a + b - 1) / b;

    private static long RoundUp(long a, long multiple) => DivRoundUp(a, multiple) * multiple;
}
