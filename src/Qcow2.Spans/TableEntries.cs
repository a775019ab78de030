using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Qcow2.Spans;

/// <summary>What is wrong with an L1, refcount table or bitmap table entry.</summary>
public enum TableEntryStatus
{
    /// <summary>The entry is well formed.</summary>
    Valid = 0,

    /// <summary>A reserved bit below the offset field (or another reserved flag) is set.</summary>
    ReservedBitsSet,

    /// <summary>The offset is not a multiple of the cluster size.</summary>
    Misaligned,

    /// <summary>The offset does not fit in its field (bits above it are set).</summary>
    OffsetTooLarge,
}

/// <summary>
/// An L1 table entry (spec "Cluster mapping"):
/// <code>
/// bit 0-8 reserved | 9-55 L2 table offset | 56-62 reserved | 63 COPIED
/// </code>
/// </summary>
public readonly struct L1Entry : IEquatable<L1Entry>
{
    /// <summary>Bits 9–55: the L2 table offset.</summary>
    public const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;

    /// <summary>Bit 63: the L2 table's refcount is exactly one.</summary>
    public const ulong CopiedFlag = 1UL << 63;

    /// <summary>Bits 0–8 (reserved).</summary>
    public const ulong LowReservedMask = 0x1ffUL;

    /// <summary>Bits 56–62 (reserved; set means an offset beyond 56 bits).</summary>
    public const ulong HighReservedMask = 0x7f00_0000_0000_0000UL;

    /// <summary>Wraps a raw (host-order) entry value.</summary>
    public L1Entry(ulong raw) => Raw = raw;

    /// <summary>The raw value.</summary>
    public ulong Raw { get; }

    /// <summary>The L2 table offset (0 when unallocated).</summary>
    public long L2Offset => (long)(Raw & OffsetMask);

    /// <summary>The COPIED flag.</summary>
    public bool IsCopied => (Raw & CopiedFlag) != 0;

    /// <summary>True when no L2 table is allocated.</summary>
    public bool IsUnallocated => (Raw & OffsetMask) == 0;

    /// <summary>An unallocated entry.</summary>
    public static L1Entry Unallocated => default;

    /// <summary>Checks reserved bits and alignment.</summary>
    public TableEntryStatus Validate(in ClusterGeometry geometry)
    {
        if ((Raw & HighReservedMask) != 0) return TableEntryStatus.OffsetTooLarge;
        if ((Raw & LowReservedMask) != 0) return TableEntryStatus.ReservedBitsSet;
        if (!geometry.IsClusterAligned(L2Offset)) return TableEntryStatus.Misaligned;
        return TableEntryStatus.Valid;
    }

    /// <summary>Builds an entry.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The offset is negative, not 512-aligned or beyond 56 bits.</exception>
    public static L1Entry Create(long l2Offset, bool copied)
    {
        if (l2Offset < 0 || ((ulong)l2Offset & ~OffsetMask) != 0)
            ThrowHelper.ThrowArgumentOutOfRange(nameof(l2Offset), l2Offset, "An L2 offset is 512-aligned and below 2^56.");
        return new L1Entry((ulong)l2Offset | (copied ? CopiedFlag : 0));
    }

    /// <summary>Reads entry <paramref name="index"/> of a big-endian table.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the table.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static L1Entry Read(ReadOnlySpan<byte> table, int index)
    {
        if ((uint)index >= (uint)(table.Length >> 3)) ThrowHelper.ThrowIndexArgument(nameof(index), index, table.Length >> 3);
        return new L1Entry(BinaryPrimitives.ReadUInt64BigEndian(table.Slice(index << 3, 8)));
    }

    /// <summary>Writes entry <paramref name="index"/> of a big-endian table.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the table.</exception>
    public static void Write(Span<byte> table, int index, L1Entry entry)
    {
        if ((uint)index >= (uint)(table.Length >> 3)) ThrowHelper.ThrowIndexArgument(nameof(index), index, table.Length >> 3);
        BinaryPrimitives.WriteUInt64BigEndian(table.Slice(index << 3, 8), entry.Raw);
    }

    /// <inheritdoc/>
    public bool Equals(L1Entry other) => Raw == other.Raw;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is L1Entry e && Equals(e);

    /// <inheritdoc/>
    public override int GetHashCode() => Raw.GetHashCode();

    /// <summary>Equality.</summary>
    public static bool operator ==(L1Entry a, L1Entry b) => a.Raw == b.Raw;

    /// <summary>Inequality.</summary>
    public static bool operator !=(L1Entry a, L1Entry b) => a.Raw != b.Raw;

    /// <inheritdoc/>
    public override string ToString() => $"L1Entry(0x{Raw:x16})";
}

/// <summary>
/// A refcount table entry (spec "Host cluster management"):
/// <code>
/// bit 0-8 reserved | 9-63 refcount block offset
/// </code>
/// </summary>
public readonly struct RefcountTableEntry : IEquatable<RefcountTableEntry>
{
    /// <summary>Bits 9–63: the refcount block offset.</summary>
    public const ulong OffsetMask = 0xffff_ffff_ffff_fe00UL;

    /// <summary>Bits 0–8 (reserved).</summary>
    public const ulong ReservedMask = 0x1ffUL;

    /// <summary>Wraps a raw entry value.</summary>
    public RefcountTableEntry(ulong raw) => Raw = raw;

    /// <summary>The raw value.</summary>
    public ulong Raw { get; }

    /// <summary>The refcount block offset (0 when unallocated). Meaningful only when <see cref="Validate"/> is Valid.</summary>
    public long BlockOffset => (long)(Raw & OffsetMask);

    /// <summary>True when no refcount block is allocated.</summary>
    public bool IsUnallocated => (Raw & OffsetMask) == 0;

    /// <summary>Checks reserved bits, alignment, and that the offset fits a signed 64-bit file offset.</summary>
    public TableEntryStatus Validate(in ClusterGeometry geometry)
    {
        if ((Raw & (1UL << 63)) != 0) return TableEntryStatus.OffsetTooLarge;
        if ((Raw & ReservedMask) != 0) return TableEntryStatus.ReservedBitsSet;
        if (!geometry.IsClusterAligned(BlockOffset)) return TableEntryStatus.Misaligned;
        return TableEntryStatus.Valid;
    }

    /// <summary>Builds an entry.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The offset is negative or not 512-aligned.</exception>
    public static RefcountTableEntry Create(long blockOffset)
    {
        if (blockOffset < 0 || ((ulong)blockOffset & ReservedMask) != 0)
            ThrowHelper.ThrowArgumentOutOfRange(nameof(blockOffset), blockOffset, "A refcount block offset is non-negative and 512-aligned.");
        return new RefcountTableEntry((ulong)blockOffset);
    }

    /// <summary>Reads entry <paramref name="index"/> of a big-endian table.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the table.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static RefcountTableEntry Read(ReadOnlySpan<byte> table, int index)
    {
        if ((uint)index >= (uint)(table.Length >> 3)) ThrowHelper.ThrowIndexArgument(nameof(index), index, table.Length >> 3);
        return new RefcountTableEntry(BinaryPrimitives.ReadUInt64BigEndian(table.Slice(index << 3, 8)));
    }

    /// <summary>Writes entry <paramref name="index"/> of a big-endian table.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the table.</exception>
    public static void Write(Span<byte> table, int index, RefcountTableEntry entry)
    {
        if ((uint)index >= (uint)(table.Length >> 3)) ThrowHelper.ThrowIndexArgument(nameof(index), index, table.Length >> 3);
        BinaryPrimitives.WriteUInt64BigEndian(table.Slice(index << 3, 8), entry.Raw);
    }

    /// <inheritdoc/>
    public bool Equals(RefcountTableEntry other) => Raw == other.Raw;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is RefcountTableEntry e && Equals(e);

    /// <inheritdoc/>
    public override int GetHashCode() => Raw.GetHashCode();

    /// <summary>Equality.</summary>
    public static bool operator ==(RefcountTableEntry a, RefcountTableEntry b) => a.Raw == b.Raw;

    /// <summary>Inequality.</summary>
    public static bool operator !=(RefcountTableEntry a, RefcountTableEntry b) => a.Raw != b.Raw;

    /// <inheritdoc/>
    public override string ToString() => $"RefcountTableEntry(0x{Raw:x16})";
}

/// <summary>
/// A bitmap table entry (spec "Bitmap table"):
/// <code>
/// bit 0 all-ones (only when the offset is 0) | 1-8 reserved | 9-55 data cluster offset | 56-63 reserved
/// </code>
/// </summary>
public readonly struct BitmapTableEntry : IEquatable<BitmapTableEntry>
{
    /// <summary>Bits 9–55: the data cluster offset.</summary>
    public const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;

    /// <summary>Bit 0: an unallocated cluster reads as all ones.</summary>
    public const ulong AllOnesFlag = 1UL;

    /// <summary>Bits 1–8 (reserved).</summary>
    public const ulong LowReservedMask = 0x1feUL;

    /// <summary>Bits 56–63 (reserved).</summary>
    public const ulong HighReservedMask = 0xff00_0000_0000_0000UL;

    /// <summary>Wraps a raw entry value.</summary>
    public BitmapTableEntry(ulong raw) => Raw = raw;

    /// <summary>The raw value.</summary>
    public ulong Raw { get; }

    /// <summary>The data cluster offset (0 when unallocated).</summary>
    public long DataOffset => (long)(Raw & OffsetMask);

    /// <summary>True when no data cluster is allocated.</summary>
    public bool IsUnallocated => (Raw & OffsetMask) == 0;

    /// <summary>For an unallocated entry: the cluster reads as all ones (else all zeros).</summary>
    public bool IsAllOnes => IsUnallocated && (Raw & AllOnesFlag) != 0;

    /// <summary>Checks reserved bits (bit 0 with an offset is reserved) and alignment.</summary>
    public TableEntryStatus Validate(in ClusterGeometry geometry)
    {
        if ((Raw & HighReservedMask) != 0) return TableEntryStatus.OffsetTooLarge;
        if ((Raw & LowReservedMask) != 0) return TableEntryStatus.ReservedBitsSet;
        if (!IsUnallocated && (Raw & AllOnesFlag) != 0) return TableEntryStatus.ReservedBitsSet;
        if (!geometry.IsClusterAligned(DataOffset)) return TableEntryStatus.Misaligned;
        return TableEntryStatus.Valid;
    }

    /// <summary>An unallocated entry that reads as all zeros or all ones.</summary>
    public static BitmapTableEntry Unallocated(bool allOnes) => new(allOnes ? AllOnesFlag : 0);

    /// <summary>An entry pointing at a data cluster.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The offset is not positive, 512-aligned and below 2^56.</exception>
    public static BitmapTableEntry Allocated(long dataOffset)
    {
        if (dataOffset <= 0 || ((ulong)dataOffset & ~OffsetMask) != 0)
            ThrowHelper.ThrowArgumentOutOfRange(nameof(dataOffset), dataOffset, "A bitmap data offset is positive, 512-aligned and below 2^56.");
        return new BitmapTableEntry((ulong)dataOffset);
    }

    /// <summary>Reads entry <paramref name="index"/> of a big-endian table.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the table.</exception>
    public static BitmapTableEntry Read(ReadOnlySpan<byte> table, int index)
    {
        if ((uint)index >= (uint)(table.Length >> 3)) ThrowHelper.ThrowIndexArgument(nameof(index), index, table.Length >> 3);
        return new BitmapTableEntry(BinaryPrimitives.ReadUInt64BigEndian(table.Slice(index << 3, 8)));
    }

    /// <summary>Writes entry <paramref name="index"/> of a big-endian table.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the table.</exception>
    public static void Write(Span<byte> table, int index, BitmapTableEntry entry)
    {
        if ((uint)index >= (uint)(table.Length >> 3)) ThrowHelper.ThrowIndexArgument(nameof(index), index, table.Length >> 3);
        BinaryPrimitives.WriteUInt64BigEndian(table.Slice(index << 3, 8), entry.Raw);
    }

    /// <inheritdoc/>
    public bool Equals(BitmapTableEntry other) => Raw == other.Raw;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is BitmapTableEntry e && Equals(e);

    /// <inheritdoc/>
    public override int GetHashCode() => Raw.GetHashCode();

    /// <summary>Equality.</summary>
    public static bool operator ==(BitmapTableEntry a, BitmapTableEntry b) => a.Raw == b.Raw;

    /// <summary>Inequality.</summary>
    public static bool operator !=(BitmapTableEntry a, BitmapTableEntry b) => a.Raw != b.Raw;

    /// <inheritdoc/>
    public override string ToString() => $"BitmapTableEntry(0x{Raw:x16})";
}
