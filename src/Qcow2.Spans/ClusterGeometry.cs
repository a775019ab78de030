using System.Runtime.CompilerServices;

namespace Qcow2.Spans;

/// <summary>
/// The arithmetic of one cluster size (and L2 entry format): how a guest offset splits into L1
/// index, L2 index, subcluster index and in-cluster offset (spec "Cluster mapping" and
/// "Extended L2 Entries"). Every cluster size from 512 B (cluster_bits 9) to 2 MiB (21).
/// </summary>
public readonly struct ClusterGeometry : IEquatable<ClusterGeometry>
{
    private ClusterGeometry(int clusterBits, bool extendedL2)
    {
        ClusterBits = clusterBits;
        ExtendedL2 = extendedL2;
    }

    /// <summary>log2 of the cluster size.</summary>
    public int ClusterBits { get; }

    /// <summary>True when L2 entries are 128-bit with a subcluster bitmap.</summary>
    public bool ExtendedL2 { get; }

    /// <summary>The cluster size in bytes.</summary>
    public int ClusterSize => 1 << ClusterBits;

    /// <summary>Bytes per L2 entry: 8, or 16 with extended L2.</summary>
    public int L2EntrySize => ExtendedL2 ? Qcow2Constants.ExtendedL2EntrySize : Qcow2Constants.TableEntrySize;

    /// <summary>log2 of <see cref="L2Entries"/>.</summary>
    public int L2Bits => ClusterBits - (ExtendedL2 ? 4 : 3);

    /// <summary>Entries per L2 table (one cluster).</summary>
    public int L2Entries => 1 << L2Bits;

    /// <summary>Entries per cluster of an L1 table (or of a refcount table).</summary>
    public int L1EntriesPerCluster => ClusterSize / Qcow2Constants.TableEntrySize;

    /// <summary>log2 of <see cref="SubclusterSize"/>.</summary>
    public int SubclusterBits => ExtendedL2 ? ClusterBits - 5 : ClusterBits;

    /// <summary>Subcluster size in bytes (the cluster size without extended L2).</summary>
    public int SubclusterSize => 1 << SubclusterBits;

    /// <summary>32 with extended L2, else 1.</summary>
    public int SubclustersPerCluster => ExtendedL2 ? Qcow2Constants.SubclustersPerExtendedCluster : 1;

    /// <summary>Guest bytes mapped by one L2 table.</summary>
    public long BytesPerL2Table => 1L << (ClusterBits + L2Bits);

    /// <summary>log2 of <see cref="BytesPerL2Table"/>.</summary>
    public int L1Shift => ClusterBits + L2Bits;

    /// <summary>
    /// Creates the geometry; false when <paramref name="clusterBits"/> is outside 9..21 or extended
    /// L2 is asked with fewer than 14 cluster bits.
    /// </summary>
    public static bool TryCreate(int clusterBits, bool extendedL2, out ClusterGeometry geometry)
    {
        if (clusterBits < Qcow2Limits.MinClusterBits || clusterBits > Qcow2Limits.MaxClusterBits
            || (extendedL2 && clusterBits < Qcow2Limits.MinExtendedL2ClusterBits))
        {
            geometry = default;
            return false;
        }
        geometry = new ClusterGeometry(clusterBits, extendedL2);
        return true;
    }

    /// <summary>Creates the geometry.</summary>
    /// <exception cref="ArgumentOutOfRangeException">clusterBits outside 9..21, or below 14 with extended L2.</exception>
    public static ClusterGeometry Create(int clusterBits, bool extendedL2 = false)
    {
        if (!TryCreate(clusterBits, extendedL2, out var g))
            ThrowHelper.ThrowArgumentOutOfRange(nameof(clusterBits), clusterBits,
                extendedL2 ? "Extended L2 needs cluster_bits 14..21." : "cluster_bits must be 9..21.");
        return g;
    }

    /// <summary>Creates the geometry from a cluster size in bytes (a power of two, 512 B..2 MiB).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The size is not a supported power of two.</exception>
    public static ClusterGeometry FromClusterSize(int clusterSize, bool extendedL2 = false)
    {
        if (clusterSize <= 0 || (clusterSize & (clusterSize - 1)) != 0)
            ThrowHelper.ThrowArgumentOutOfRange(nameof(clusterSize), clusterSize, "The cluster size must be a power of two.");
        return Create(System.Numerics.BitOperations.Log2((uint)clusterSize), extendedL2);
    }

    /// <summary>Index in the L1 table of the L2 table that maps <paramref name="guestOffset"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long L1Index(long guestOffset) => (long)((ulong)guestOffset >> L1Shift);

    /// <summary>Index in its L2 table of the entry that maps <paramref name="guestOffset"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int L2Index(long guestOffset) => (int)(((ulong)guestOffset >> ClusterBits) & (uint)(L2Entries - 1));

    /// <summary>Index of the subcluster within its cluster (always 0 without extended L2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int SubclusterIndex(long guestOffset) =>
        (int)(((ulong)guestOffset >> SubclusterBits) & (uint)(SubclustersPerCluster - 1));

    /// <summary>Offset within the cluster.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int OffsetInCluster(long offset) => (int)(offset & (ClusterSize - 1));

    /// <summary>Offset within the subcluster.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int OffsetInSubcluster(long offset) => (int)(offset & (SubclusterSize - 1));

    /// <summary>Index of the cluster holding <paramref name="offset"/> (guest or host).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long ClusterIndex(long offset) => (long)((ulong)offset >> ClusterBits);

    /// <summary>Start of the cluster holding <paramref name="offset"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long StartOfCluster(long offset) => offset & ~(long)(ClusterSize - 1);

    /// <summary>True when <paramref name="offset"/> is a multiple of the cluster size.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsClusterAligned(long offset) => (offset & (ClusterSize - 1)) == 0;

    /// <summary>True when <paramref name="offset"/> is a multiple of the subcluster size.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsSubclusterAligned(long offset) => (offset & (SubclusterSize - 1)) == 0;

    /// <summary>Clusters needed to hold <paramref name="bytes"/> (rounded up).</summary>
    /// <exception cref="ArgumentOutOfRangeException">bytes is negative.</exception>
    public long ClustersFor(long bytes)
    {
        if (bytes < 0) ThrowHelper.ThrowArgumentOutOfRange(nameof(bytes), bytes, "Must not be negative.");
        return (long)(((ulong)bytes + (ulong)(ClusterSize - 1)) >> ClusterBits);
    }

    /// <summary>
    /// L1 entries (L2 tables) needed to map a disk of <paramref name="virtualSize"/> bytes: the
    /// smallest l1_size a header with that size may have.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">virtualSize is negative.</exception>
    public long L1EntriesFor(long virtualSize)
    {
        if (virtualSize < 0) ThrowHelper.ThrowArgumentOutOfRange(nameof(virtualSize), virtualSize, "Must not be negative.");
        // Unsigned so that sizes near long.MaxValue do not overflow before the shift.
        ulong perTable = (ulong)BytesPerL2Table;
        return (long)(((ulong)virtualSize + perTable - 1) >> L1Shift);
    }

    /// <summary>Largest virtual size an L1 table of <paramref name="l1Entries"/> entries can map (saturates at long.MaxValue).</summary>
    public long MaxVirtualSizeFor(long l1Entries)
    {
        if (l1Entries <= 0) return 0;
        if (l1Entries > (long.MaxValue >> L1Shift)) return long.MaxValue;
        return l1Entries << L1Shift;
    }

    /// <inheritdoc/>
    public bool Equals(ClusterGeometry other) => ClusterBits == other.ClusterBits && ExtendedL2 == other.ExtendedL2;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is ClusterGeometry g && Equals(g);

    /// <inheritdoc/>
    public override int GetHashCode() => ClusterBits * 2 + (ExtendedL2 ? 1 : 0);

    /// <summary>Equality.</summary>
    public static bool operator ==(ClusterGeometry a, ClusterGeometry b) => a.Equals(b);

    /// <summary>Inequality.</summary>
    public static bool operator !=(ClusterGeometry a, ClusterGeometry b) => !a.Equals(b);

    /// <inheritdoc/>
    public override string ToString() =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"cluster_bits={ClusterBits} ({ClusterSize} B){(ExtendedL2 ? " extended L2" : "")}");
}

/// <summary>
/// The arithmetic of refcounts for a cluster size and refcount_order (spec "Host cluster
/// management"): entries per refcount block, the largest refcount, and where a cluster's
/// refcount lives.
/// </summary>
public readonly struct RefcountGeometry : IEquatable<RefcountGeometry>
{
    private RefcountGeometry(int clusterBits, int refcountOrder)
    {
        ClusterBits = clusterBits;
        RefcountOrder = refcountOrder;
    }

    /// <summary>log2 of the cluster size.</summary>
    public int ClusterBits { get; }

    /// <summary>log2 of the refcount width in bits (0..6).</summary>
    public int RefcountOrder { get; }

    /// <summary>Refcount width in bits: 1, 2, 4, 8, 16, 32 or 64.</summary>
    public int RefcountBits => 1 << RefcountOrder;

    /// <summary>The cluster size in bytes.</summary>
    public int ClusterSize => 1 << ClusterBits;

    /// <summary>log2 of <see cref="EntriesPerBlock"/>.</summary>
    public int BlockBits => ClusterBits + 3 - RefcountOrder;

    /// <summary>Refcount entries per refcount block (one cluster).</summary>
    public int EntriesPerBlock => 1 << BlockBits;

    /// <summary>Refcount table entries per cluster of the refcount table.</summary>
    public int TableEntriesPerCluster => ClusterSize / Qcow2Constants.TableEntrySize;

    /// <summary>The largest refcount representable: 2^bits - 1.</summary>
    public ulong MaxValue => RefcountOrder == 6 ? ulong.MaxValue : (1UL << RefcountBits) - 1;

    /// <summary>Creates the geometry; false when clusterBits is outside 9..21 or refcountOrder outside 0..6.</summary>
    public static bool TryCreate(int clusterBits, int refcountOrder, out RefcountGeometry geometry)
    {
        if (clusterBits < Qcow2Limits.MinClusterBits || clusterBits > Qcow2Limits.MaxClusterBits
            || refcountOrder < 0 || refcountOrder > Qcow2Limits.MaxRefcountOrder)
        {
            geometry = default;
            return false;
        }
        geometry = new RefcountGeometry(clusterBits, refcountOrder);
        return true;
    }

    /// <summary>Creates the geometry.</summary>
    /// <exception cref="ArgumentOutOfRangeException">clusterBits outside 9..21 or refcountOrder outside 0..6.</exception>
    public static RefcountGeometry Create(int clusterBits, int refcountOrder)
    {
        if (!TryCreate(clusterBits, refcountOrder, out var g))
        {
            if (refcountOrder < 0 || refcountOrder > Qcow2Limits.MaxRefcountOrder)
                ThrowHelper.ThrowArgumentOutOfRange(nameof(refcountOrder), refcountOrder, "refcount_order must be 0..6.");
            ThrowHelper.ThrowArgumentOutOfRange(nameof(clusterBits), clusterBits, "cluster_bits must be 9..21.");
        }
        return g;
    }

    /// <summary>The refcount_order for a width in bits (1..64, a power of two); -1 otherwise.</summary>
    public static int OrderFromBits(int refcountBits) =>
        refcountBits > 0 && refcountBits <= 64 && (refcountBits & (refcountBits - 1)) == 0
            ? System.Numerics.BitOperations.Log2((uint)refcountBits)
            : -1;

    /// <summary>Index in the refcount table of the block that holds the refcount of cluster <paramref name="clusterIndex"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long TableIndex(long clusterIndex) => (long)((ulong)clusterIndex >> BlockBits);

    /// <summary>Index within its refcount block of the refcount of cluster <paramref name="clusterIndex"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int BlockIndex(long clusterIndex) => (int)(clusterIndex & (EntriesPerBlock - 1));

    /// <summary>Host bytes covered by one refcount block.</summary>
    public long BytesPerBlock => 1L << (BlockBits + ClusterBits);

    /// <summary>Host bytes addressable by a refcount table of <paramref name="tableClusters"/> clusters (saturating).</summary>
    public long MaxHostSizeFor(long tableClusters)
    {
        if (tableClusters <= 0) return 0;
        int shift = BlockBits + ClusterBits + ClusterBits - 3;
        if (shift >= 63 || tableClusters > (long.MaxValue >> shift)) return long.MaxValue;
        return tableClusters << shift;
    }

    /// <inheritdoc/>
    public bool Equals(RefcountGeometry other) => ClusterBits == other.ClusterBits && RefcountOrder == other.RefcountOrder;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is RefcountGeometry g && Equals(g);

    /// <inheritdoc/>
    public override int GetHashCode() => ClusterBits * 8 + RefcountOrder;

    /// <summary>Equality.</summary>
    public static bool operator ==(RefcountGeometry a, RefcountGeometry b) => a.Equals(b);

    /// <summary>Inequality.</summary>
    public static bool operator !=(RefcountGeometry a, RefcountGeometry b) => !a.Equals(b);

    /// <inheritdoc/>
    public override string ToString() =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"cluster_bits={ClusterBits} refcount_bits={RefcountBits}");
}
