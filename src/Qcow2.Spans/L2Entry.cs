using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Qcow2.Spans;

/// <summary>What a whole guest cluster is, according to its L2 entry.</summary>
public enum ClusterKind
{
    /// <summary>No host cluster: reads go to the backing file (or zeros). With extended L2, see the subclusters.</summary>
    Unallocated,

    /// <summary>Zero flag set, no host cluster (standard entries only).</summary>
    Zero,

    /// <summary>Zero flag set, with a preallocated host cluster (standard entries only).</summary>
    ZeroAllocated,

    /// <summary>A standard host cluster. With extended L2, subclusters say which parts are allocated.</summary>
    Normal,

    /// <summary>A compressed cluster.</summary>
    Compressed,
}

/// <summary>What one subcluster is (the cluster itself without extended L2).</summary>
public enum SubclusterKind
{
    /// <summary>Reads from the backing file (or zeros).</summary>
    Unallocated,

    /// <summary>Reads host data (including compressed data).</summary>
    Allocated,

    /// <summary>Reads as zeros.</summary>
    Zero,

    /// <summary>Both the allocation and the zero bit are set: a corrupt entry.</summary>
    Invalid,
}

/// <summary>What is wrong with an L2 entry (the first rule broken).</summary>
public enum L2EntryStatus
{
    /// <summary>Well formed.</summary>
    Valid = 0,

    /// <summary>Reserved bits 1–8 of a standard descriptor are set.</summary>
    ReservedBitsSet,

    /// <summary>The host offset is not a multiple of the cluster size.</summary>
    Misaligned,

    /// <summary>Bits 56–61 of a standard descriptor are set (an offset beyond 56 bits).</summary>
    OffsetTooLarge,

    /// <summary>Extended L2: subclusters are marked allocated but the entry has no host offset.</summary>
    AllocatedWithoutOffset,

    /// <summary>Extended L2: a subcluster has both its allocation and its zero bit set.</summary>
    AllocatedAndZero,

    /// <summary>Extended L2: a compressed entry has a non-zero subcluster bitmap.</summary>
    CompressedWithBitmap,

    /// <summary>Extended L2: bit 0 (the standard zero flag) is set; it is reserved there.</summary>
    ZeroFlagInExtended,

    /// <summary>A compressed entry has the COPIED flag set.</summary>
    CompressedWithCopied,

    /// <summary>A compressed descriptor's offset uses bits at or above 56.</summary>
    CompressedOffsetTooLarge,

    /// <summary>The entry's format (standard or extended) does not match the geometry.</summary>
    FormatMismatch,
}

/// <summary>
/// An L2 table entry (spec "Cluster mapping" and "Extended L2 Entries"): the 64-bit entry and,
/// for extended L2, the 64-bit subcluster bitmap.
/// <code>
/// bit 0 zero flag (standard only) | 1-8 reserved | 9-55 host offset | 56-61 reserved | 62 compressed | 63 COPIED
/// bitmap (extended): bits 0-31 allocated, bits 32-63 reads as zero (bit x for subcluster x / x-32)
/// </code>
/// </summary>
public readonly struct L2Entry : IEquatable<L2Entry>
{
    /// <summary>Bit 63.</summary>
    public const ulong CopiedFlag = 1UL << 63;

    /// <summary>Bit 62.</summary>
    public const ulong CompressedFlag = 1UL << 62;

    /// <summary>Bit 0 of a standard descriptor: reads as zeros.</summary>
    public const ulong ZeroFlag = 1UL;

    /// <summary>Bits 9–55: host cluster offset of a standard descriptor.</summary>
    public const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;

    /// <summary>Bits 1–8 of a standard descriptor (reserved).</summary>
    public const ulong LowReservedMask = 0x1feUL;

    /// <summary>Bits 56–61 of a standard descriptor (reserved).</summary>
    public const ulong HighReservedMask = 0x3f00_0000_0000_0000UL;

    /// <summary>Wraps a raw standard entry.</summary>
    public L2Entry(ulong raw)
    {
        Raw = raw;
        Bitmap = 0;
        IsExtended = false;
    }

    /// <summary>Wraps a raw extended entry and its subcluster bitmap.</summary>
    public L2Entry(ulong raw, ulong bitmap)
    {
        Raw = raw;
        Bitmap = bitmap;
        IsExtended = true;
    }

    /// <summary>The first 64 bits.</summary>
    public ulong Raw { get; }

    /// <summary>The subcluster bitmap (extended entries; 0 otherwise).</summary>
    public ulong Bitmap { get; }

    /// <summary>True for a 128-bit extended entry.</summary>
    public bool IsExtended { get; }

    /// <summary>The COPIED flag.</summary>
    public bool IsCopied => (Raw & CopiedFlag) != 0;

    /// <summary>The compressed flag.</summary>
    public bool IsCompressed => (Raw & CompressedFlag) != 0;

    /// <summary>Bit 0 (the zero flag of a standard entry; reserved in an extended one).</summary>
    public bool IsZeroFlag => (Raw & ZeroFlag) != 0;

    /// <summary>The host cluster offset of a standard (not compressed) entry; 0 when none.</summary>
    public long HostOffset => IsCompressed ? 0 : (long)(Raw & OffsetMask);

    /// <summary>Bits 0–31 of the bitmap: allocated subclusters.</summary>
    public uint AllocMask => (uint)Bitmap;

    /// <summary>Bits 32–63 of the bitmap: subclusters reading as zeros.</summary>
    public uint ZeroMask => (uint)(Bitmap >> 32);

    /// <summary>
    /// The kind of the cluster. A standard entry with offset 0 and COPIED set (an external data
    /// file at host offset 0) counts as <see cref="ClusterKind.Normal"/>.
    /// </summary>
    public ClusterKind Kind
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            if (IsCompressed) return ClusterKind.Compressed;
            bool hasOffset = (Raw & OffsetMask) != 0 || IsCopied;
            if (!IsExtended && IsZeroFlag) return hasOffset ? ClusterKind.ZeroAllocated : ClusterKind.Zero;
            return hasOffset ? ClusterKind.Normal : ClusterKind.Unallocated;
        }
    }

    /// <summary>The descriptor of a compressed entry.</summary>
    /// <exception cref="ArgumentOutOfRangeException">clusterBits is outside 9..21.</exception>
    public CompressedDescriptor GetCompressedDescriptor(int clusterBits) => CompressedDescriptor.Decode(Raw, clusterBits);

    /// <summary>The kind of subcluster <paramref name="index"/> (0..31 extended; 0 otherwise, the whole cluster).</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is out of range for the entry format.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public SubclusterKind GetSubcluster(int index)
    {
        if (IsExtended && !IsCompressed)
        {
            if ((uint)index >= 32) ThrowHelper.ThrowIndexArgument(nameof(index), index, 32);
            // Unallocated 0, Allocated 1, Zero 2, Invalid 3: the allocation bit plus twice the zero bit.
            return (SubclusterKind)(((Bitmap >> index) & 1) | (((Bitmap >> (32 + index)) & 1) << 1));
        }
        if ((uint)index >= (IsExtended ? 32u : 1u))
            ThrowHelper.ThrowIndexArgument(nameof(index), index, IsExtended ? 32 : 1);
        if (IsCompressed) return SubclusterKind.Allocated;
        return Kind switch
        {
            ClusterKind.Normal => SubclusterKind.Allocated,
            ClusterKind.Zero or ClusterKind.ZeroAllocated => SubclusterKind.Zero,
            _ => SubclusterKind.Unallocated,
        };
    }

    /// <summary>
    /// The number of consecutive subclusters from <paramref name="index"/> with the same kind
    /// as it (at most up to the end of the cluster).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">index is out of range for the entry format.</exception>
    public int SubclusterRunLength(int index)
    {
        if (!IsExtended || IsCompressed)
        {
            _ = GetSubcluster(index);
            return (IsExtended ? 32 : 1) - index;
        }
        if ((uint)index >= 32) ThrowHelper.ThrowIndexArgument(nameof(index), index, 32);
        uint alloc = (uint)Bitmap, zero = (uint)(Bitmap >> 32);
        uint a = (alloc >> index) & 1, z = (zero >> index) & 1;
        // Subclusters whose two bits equal those of subcluster index.
        uint same = ~((alloc ^ (0u - a)) | (zero ^ (0u - z)));
        int run = BitOperations.TrailingZeroCount(~(same >> index));
        return Math.Min(run, 32 - index);
    }

    /// <summary>Checks the entry against the rules of the spec (the first broken rule is returned).</summary>
    public L2EntryStatus Validate(in ClusterGeometry geometry)
    {
        if (geometry.ExtendedL2 != IsExtended) return L2EntryStatus.FormatMismatch;
        if (IsCompressed)
        {
            if (IsCopied) return L2EntryStatus.CompressedWithCopied;
            if (IsExtended && Bitmap != 0) return L2EntryStatus.CompressedWithBitmap;
            if (CompressedDescriptor.Decode(Raw, geometry.ClusterBits).HasOffsetBeyondLimit)
                return L2EntryStatus.CompressedOffsetTooLarge;
            return L2EntryStatus.Valid;
        }
        if ((Raw & HighReservedMask) != 0) return L2EntryStatus.OffsetTooLarge;
        if ((Raw & LowReservedMask) != 0) return L2EntryStatus.ReservedBitsSet;
        if (IsExtended && IsZeroFlag) return L2EntryStatus.ZeroFlagInExtended;
        long offset = (long)(Raw & OffsetMask);
        if (!geometry.IsClusterAligned(offset)) return L2EntryStatus.Misaligned;
        if (IsExtended)
        {
            if ((AllocMask & ZeroMask) != 0) return L2EntryStatus.AllocatedAndZero;
            if (AllocMask != 0 && offset == 0 && !IsCopied) return L2EntryStatus.AllocatedWithoutOffset;
        }
        return L2EntryStatus.Valid;
    }

    /// <summary>Reads entry <paramref name="index"/> of a big-endian L2 table.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the table.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static L2Entry Read(ReadOnlySpan<byte> table, int index, bool extended)
    {
        if (extended)
        {
            if ((uint)index >= (uint)(table.Length >> 4)) ThrowHelper.ThrowIndexArgument(nameof(index), index, table.Length >> 4);
            var e = table.Slice(index << 4, 16);
            return new L2Entry(BinaryPrimitives.ReadUInt64BigEndian(e), BinaryPrimitives.ReadUInt64BigEndian(e[8..]));
        }
        if ((uint)index >= (uint)(table.Length >> 3)) ThrowHelper.ThrowIndexArgument(nameof(index), index, table.Length >> 3);
        return new L2Entry(BinaryPrimitives.ReadUInt64BigEndian(table.Slice(index << 3, 8)));
    }

    /// <summary>Writes entry <paramref name="index"/> of a big-endian L2 table (the bitmap too when extended).</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the table.</exception>
    /// <exception cref="ArgumentException">A standard entry carries a bitmap but the table is not extended.</exception>
    public static void Write(Span<byte> table, int index, bool extended, L2Entry entry)
    {
        if (extended)
        {
            if ((uint)index >= (uint)(table.Length >> 4)) ThrowHelper.ThrowIndexArgument(nameof(index), index, table.Length >> 4);
            var e = table.Slice(index << 4, 16);
            BinaryPrimitives.WriteUInt64BigEndian(e, entry.Raw);
            BinaryPrimitives.WriteUInt64BigEndian(e[8..], entry.Bitmap);
            return;
        }
        if (entry.Bitmap != 0) ThrowHelper.ThrowArgument(nameof(entry), "A standard L2 table cannot store a subcluster bitmap.");
        if ((uint)index >= (uint)(table.Length >> 3)) ThrowHelper.ThrowIndexArgument(nameof(index), index, table.Length >> 3);
        BinaryPrimitives.WriteUInt64BigEndian(table.Slice(index << 3, 8), entry.Raw);
    }

    /// <summary>An unallocated standard entry.</summary>
    public static L2Entry Unallocated => default;

    /// <summary>An unallocated extended entry (all subclusters unallocated).</summary>
    public static L2Entry UnallocatedExtended => new(0, 0);

    /// <summary>A standard entry pointing at a host cluster.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The offset is not 512-aligned, negative, or beyond 56 bits.</exception>
    public static L2Entry Normal(long hostOffset, bool copied) => new(EncodeOffset(hostOffset, copied));

    /// <summary>An extended entry pointing at a host cluster, with a subcluster bitmap (default: all allocated).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The offset is not 512-aligned, negative, or beyond 56 bits.</exception>
    public static L2Entry NormalExtended(long hostOffset, bool copied, ulong bitmap = SubclusterBitmap.AllAllocated) =>
        new(EncodeOffset(hostOffset, copied), bitmap);

    /// <summary>A standard zero entry, optionally keeping a preallocated host cluster.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The offset is not 512-aligned, negative, or beyond 56 bits.</exception>
    public static L2Entry Zero(long preallocatedOffset = 0, bool copied = false) =>
        new(EncodeOffset(preallocatedOffset, copied) | ZeroFlag);

    /// <summary>An extended entry whose subclusters all read as zeros, optionally keeping a host cluster.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The offset is not 512-aligned, negative, or beyond 56 bits.</exception>
    public static L2Entry ZeroExtended(long preallocatedOffset = 0, bool copied = false) =>
        new(EncodeOffset(preallocatedOffset, copied), SubclusterBitmap.AllZero);

    /// <summary>A compressed entry (standard or extended; the bitmap of an extended one is zero).</summary>
    public static L2Entry Compressed(CompressedDescriptor descriptor, bool extended = false) =>
        extended ? new L2Entry(descriptor.Raw | CompressedFlag, 0) : new L2Entry(descriptor.Raw | CompressedFlag);

    /// <summary>This entry with another subcluster bitmap (making it extended).</summary>
    public L2Entry WithBitmap(ulong bitmap) => new(Raw, bitmap);

    /// <summary>This entry with the COPIED flag set or cleared.</summary>
    public L2Entry WithCopied(bool copied)
    {
        ulong raw = copied ? Raw | CopiedFlag : Raw & ~CopiedFlag;
        return IsExtended ? new L2Entry(raw, Bitmap) : new L2Entry(raw);
    }

    private static ulong EncodeOffset(long hostOffset, bool copied)
    {
        if (hostOffset < 0 || ((ulong)hostOffset & ~OffsetMask) != 0)
            ThrowHelper.ThrowArgumentOutOfRange(nameof(hostOffset), hostOffset, "A host cluster offset is 512-aligned and below 2^56.");
        return (ulong)hostOffset | (copied ? CopiedFlag : 0);
    }

    /// <inheritdoc/>
    public bool Equals(L2Entry other) => Raw == other.Raw && Bitmap == other.Bitmap && IsExtended == other.IsExtended;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is L2Entry e && Equals(e);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Raw, Bitmap, IsExtended);

    /// <summary>Equality.</summary>
    public static bool operator ==(L2Entry a, L2Entry b) => a.Equals(b);

    /// <summary>Inequality.</summary>
    public static bool operator !=(L2Entry a, L2Entry b) => !a.Equals(b);

    /// <inheritdoc/>
    public override string ToString() =>
        IsExtended ? $"L2Entry(0x{Raw:x16}, bitmap 0x{Bitmap:x16})" : $"L2Entry(0x{Raw:x16})";
}

/// <summary>Helpers for the 64-bit subcluster bitmap of extended L2 entries.</summary>
public static class SubclusterBitmap
{
    /// <summary>All 32 subclusters allocated.</summary>
    public const ulong AllAllocated = 0x0000_0000_ffff_ffffUL;

    /// <summary>All 32 subclusters read as zeros.</summary>
    public const ulong AllZero = 0xffff_ffff_0000_0000UL;

    /// <summary>
    /// A 32-bit mask of <paramref name="count"/> subclusters from <paramref name="first"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not within 0..32.</exception>
    public static uint Range(int first, int count)
    {
        if ((uint)first > 32 || (uint)count > (uint)(32 - first))
            ThrowHelper.ThrowArgumentOutOfRange(nameof(count), count, "The subcluster range must lie within 0..32.");
        if (count == 0) return 0;
        return (uint)(((1UL << count) - 1) << first);
    }

    /// <summary>Bitmap bits marking the range allocated (bits 0–31).</summary>
    public static ulong AllocMask(int first, int count) => Range(first, count);

    /// <summary>Bitmap bits marking the range as reading zeros (bits 32–63).</summary>
    public static ulong ZeroMask(int first, int count) => (ulong)Range(first, count) << 32;

    /// <summary>True when subcluster <paramref name="index"/> is marked allocated.</summary>
    public static bool IsAllocated(ulong bitmap, int index) => ((bitmap >> (index & 31)) & 1) != 0;

    /// <summary>True when subcluster <paramref name="index"/> is marked as reading zeros.</summary>
    public static bool IsZero(ulong bitmap, int index) => ((bitmap >> (32 + (index & 31))) & 1) != 0;

    /// <summary>Marks a range allocated (clearing its zero bits).</summary>
    public static ulong SetAllocated(ulong bitmap, int first, int count) =>
        (bitmap | AllocMask(first, count)) & ~ZeroMask(first, count);

    /// <summary>Marks a range as reading zeros (clearing its allocation bits).</summary>
    public static ulong SetZero(ulong bitmap, int first, int count) =>
        (bitmap | ZeroMask(first, count)) & ~AllocMask(first, count);

    /// <summary>Marks a range unallocated (clearing both bits).</summary>
    public static ulong SetUnallocated(ulong bitmap, int first, int count) =>
        bitmap & ~(AllocMask(first, count) | ZeroMask(first, count));

    /// <summary>The kind of a subcluster in a standard-cluster bitmap.</summary>
    public static SubclusterKind KindOf(ulong bitmap, int index)
    {
        bool alloc = IsAllocated(bitmap, index), zero = IsZero(bitmap, index);
        return alloc && zero ? SubclusterKind.Invalid : zero ? SubclusterKind.Zero : alloc ? SubclusterKind.Allocated : SubclusterKind.Unallocated;
    }

    /// <summary>
    /// Number of consecutive subclusters from <paramref name="start"/> (up to 32) whose kind is
    /// <paramref name="kind"/>; 0 when the first one differs.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">start is not in 0..31.</exception>
    public static int RunLength(ulong bitmap, int start, SubclusterKind kind)
    {
        if ((uint)start >= 32) ThrowHelper.ThrowIndexArgument(nameof(start), start, 32);
        uint alloc = (uint)bitmap, zero = (uint)(bitmap >> 32);
        uint match = kind switch
        {
            SubclusterKind.Allocated => alloc & ~zero,
            SubclusterKind.Zero => zero & ~alloc,
            SubclusterKind.Unallocated => ~(alloc | zero),
            _ => alloc & zero,
        };
        uint fromStart = match >> start;
        // Count the trailing ones of fromStart, capped to the subclusters left.
        int run = BitOperations.TrailingZeroCount(~fromStart);
        return Math.Min(run, 32 - start);
    }
}
