namespace Qcow2.Spans;

/// <summary>
/// Limits on qcow2 structures. Most are QEMU's own (its <c>QCOW_MAX_*</c> constants): an image
/// beyond them cannot be opened by QEMU either, and each caps an allocation sized from a header
/// count, so nothing read from an untrusted image can make us allocate without bound.
/// </summary>
public static class Qcow2Limits
{
    /// <summary>Smallest cluster_bits the spec allows (512-byte clusters): a cluster must hold at least one sector.</summary>
    public const int MinClusterBits = 9;

    /// <summary>Largest cluster_bits QEMU supports (2 MiB clusters); the spec notes this implementation limit.</summary>
    public const int MaxClusterBits = 21;

    /// <summary>Extended L2 entries need 32 subclusters of at least 512 bytes: cluster_bits ≥ 14 (16 KiB).</summary>
    public const int MinExtendedL2ClusterBits = 14;

    /// <summary>Smallest cluster size in bytes.</summary>
    public const int MinClusterSize = 1 << MinClusterBits;

    /// <summary>Largest cluster size in bytes.</summary>
    public const int MaxClusterSize = 1 << MaxClusterBits;

    /// <summary>
    /// Largest active or snapshot L1 table in bytes (QCOW_MAX_L1_SIZE, 32 MiB): QEMU keeps the
    /// whole L1 table in memory, so it bounds the memory an image can demand at open.
    /// </summary>
    public const int MaxL1Size = 32 * 1024 * 1024;

    /// <summary>Largest L1 table in entries (<see cref="MaxL1Size"/> / 8).</summary>
    public const int MaxL1Entries = MaxL1Size / 8;

    /// <summary>
    /// Largest refcount table in bytes (QCOW_MAX_REFTABLE_SIZE, 8 MiB): like the L1 table it is
    /// loaded whole into memory.
    /// </summary>
    public const int MaxRefcountTableSize = 8 * 1024 * 1024;

    /// <summary>Largest refcount table in entries.</summary>
    public const int MaxRefcountTableEntries = MaxRefcountTableSize / 8;

    /// <summary>Highest refcount_order the spec allows (64-bit refcounts).</summary>
    public const int MaxRefcountOrder = 6;

    /// <summary>
    /// Most internal snapshots (QCOW_MAX_SNAPSHOTS): the snapshot list is read whole at open.
    /// </summary>
    public const int MaxSnapshots = 65536;

    /// <summary>
    /// Largest snapshot table in bytes (QCOW_MAX_SNAPSHOTS_SIZE: 1 KiB per snapshot on average),
    /// so the table read at open is bounded.
    /// </summary>
    public const int MaxSnapshotTableSize = 1024 * MaxSnapshots;

    /// <summary>
    /// Largest extra data of one snapshot table entry (QEMU's QCOW_MAX_SNAPSHOT_EXTRA_DATA): only
    /// 24 bytes are defined today; the cap stops one entry from claiming the whole table.
    /// </summary>
    public const int MaxSnapshotExtraDataSize = 1024;

    /// <summary>
    /// Longest snapshot id or name: the 16-bit size fields allow 65535, and the table size cap
    /// (<see cref="MaxSnapshotTableSize"/>) bounds the total.
    /// </summary>
    public const int MaxSnapshotIdOrNameLength = ushort.MaxValue;

    /// <summary>Longest backing file name (spec: "Must not be longer than 1023 bytes"; QEMU's buffer is 1024).</summary>
    public const int MaxBackingFileNameLength = 1023;

    /// <summary>
    /// Longest backing format or data file name we write into a new image (the name strings of
    /// the header extensions; bounded by the first cluster in any case).
    /// </summary>
    public const int MaxFormatNameLength = 1023;

    /// <summary>
    /// Longest backing format name QEMU reads: it keeps the name in a 16-byte buffer and refuses
    /// a longer extension. Driver names are short ("qcow2", "raw").
    /// </summary>
    public const int MaxBackingFormatLength = 15;

    /// <summary>Most persistent bitmaps in an image (QCOW2_MAX_BITMAPS; the spec notes it).</summary>
    public const int MaxBitmaps = 65535;

    /// <summary>Largest bitmap directory in bytes (QCOW2_MAX_BITMAP_DIRECTORY_SIZE: 1 KiB per bitmap).</summary>
    public const int MaxBitmapDirectorySize = 1024 * MaxBitmaps;

    /// <summary>Longest bitmap name (QEMU's BME_MAX_NAME_SIZE; the spec notes the 1023 limit).</summary>
    public const int MaxBitmapNameLength = 1023;

    /// <summary>Smallest bitmap granularity_bits QEMU supports (one bit per 512-byte sector).</summary>
    public const int MinBitmapGranularityBits = 9;

    /// <summary>Largest bitmap granularity_bits QEMU supports (one bit per 2 GiB).</summary>
    public const int MaxBitmapGranularityBits = 31;

    /// <summary>Most entries of one bitmap table (QEMU's BME_MAX_TABLE_SIZE): the table is read whole.</summary>
    public const int MaxBitmapTableSize = 0x8000000;

    /// <summary>
    /// The header extensions live between the header and the end of the first cluster (or the
    /// backing file name), so they can never exceed the largest cluster.
    /// </summary>
    public const int MaxHeaderExtensionsSize = MaxClusterSize;

    /// <summary>Largest data of one feature name table: at most 3 × 64 distinct (type, bit) entries of 48 bytes each.</summary>
    public const int MaxFeatureNameTableSize = 3 * 64 * 48;

    /// <summary>
    /// Longest backing chain the volume layer follows. QEMU has no fixed number; we stop long
    /// before a malicious self-referencing or very deep chain can exhaust file handles or stack.
    /// </summary>
    public const int MaxChainDepth = 64;

    /// <summary>
    /// Host offsets in L1/L2 entries have 56 bits (QCOW_MAX_CLUSTER_OFFSET is 2^56 - 1): metadata
    /// and data clusters must start below 64 PiB.
    /// </summary>
    public const long MaxHostOffset = (1L << 56) - 1;
}
