using Qcow2.Spans.Layout;

namespace Qcow2.Spans;

/// <summary>Outcome of reading one bitmap directory entry.</summary>
public enum BitmapEntryStatus
{
    /// <summary>Read and well formed.</summary>
    Ok,

    /// <summary>The entry runs past the end of the directory.</summary>
    Truncated,

    /// <summary>name_size is zero.</summary>
    NameEmpty,

    /// <summary>name_size is above 1023 (QEMU's limit).</summary>
    NameTooLong,

    /// <summary>Reserved flag bits 3–31 are set.</summary>
    ReservedFlagsSet,

    /// <summary>type is not 1 (dirty tracking).</summary>
    InvalidType,

    /// <summary>granularity_bits outside QEMU's 9..31 (the spec allows 0..63).</summary>
    GranularityOutOfRange,

    /// <summary>bitmap_table_size above QEMU's limit.</summary>
    TableTooLarge,

    /// <summary>The padding after the name is not zero.</summary>
    PaddingNotZero,

    /// <summary>The entry ends beyond QEMU's directory size limit.</summary>
    DirectoryTooLarge,

    /// <summary>The offset is negative or not a multiple of 8.</summary>
    InvalidOffset,

    /// <summary>The bitmap table offset is zero or not cluster aligned.</summary>
    TableOffsetMisaligned,

    /// <summary>bitmap_table_size does not match the clusters the bitmap of this disk needs.</summary>
    TableSizeMismatch,
}

/// <summary>A decoded bitmap directory entry (spec "Bitmap directory"); name and extra data are slices.</summary>
public readonly ref struct BitmapDirectoryEntryInfo
{
    /// <summary>Offset of the bitmap table.</summary>
    public ulong BitmapTableOffset { get; init; }

    /// <summary>Entries in the bitmap table.</summary>
    public uint BitmapTableSize { get; init; }

    /// <summary>The raw flags.</summary>
    public uint Flags { get; init; }

    /// <summary>Flag in_use: the bitmap was not saved correctly.</summary>
    public bool InUse => (Flags & Qcow2Constants.BitmapFlagInUse) != 0;

    /// <summary>Flag auto: the bitmap tracks every write.</summary>
    public bool Auto => (Flags & Qcow2Constants.BitmapFlagAuto) != 0;

    /// <summary>Flag extra_data_compatible.</summary>
    public bool ExtraDataCompatible => (Flags & Qcow2Constants.BitmapFlagExtraDataCompatible) != 0;

    /// <summary>The bitmap type (1: dirty tracking).</summary>
    public byte Type { get; init; }

    /// <summary>log2 of the bytes of guest data per bit.</summary>
    public byte GranularityBits { get; init; }

    /// <summary>extra_data_size.</summary>
    public uint ExtraDataSize { get; init; }

    /// <summary>The name bytes.</summary>
    public ReadOnlySpan<byte> Name { get; init; }

    /// <summary>The extra data.</summary>
    public ReadOnlySpan<byte> ExtraData { get; init; }

    /// <summary>
    /// True when the bitmap may be used: no unknown extra data, or extra data marked compatible.
    /// </summary>
    public bool IsUsable => ExtraDataSize == 0 || ExtraDataCompatible;
}

/// <summary>
/// Reads bitmap directory entries (spec "Bitmap directory"):
/// <code>
/// 0 fixed part (24 bytes, <see cref="BitmapDirectoryEntryView"/>)  24 extra data  then the name,
/// zero padding to a multiple of 8
/// </code>
/// Every length is checked against the directory before it is sliced.
/// </summary>
public static class BitmapDirectoryReader
{
    /// <summary>
    /// Reads the entry at <paramref name="offset"/> of <paramref name="directory"/>.
    /// <paramref name="entryLength"/> includes the padding. On a format error other than
    /// Truncated/InvalidOffset/DirectoryTooLarge the info and length are still filled in.
    /// </summary>
    public static BitmapEntryStatus Read(ReadOnlySpan<byte> directory, int offset, out BitmapDirectoryEntryInfo info, out int entryLength)
    {
        info = default;
        entryLength = 0;
        if (offset < 0 || (offset & 7) != 0) return BitmapEntryStatus.InvalidOffset;
        if ((uint)offset > (uint)directory.Length || directory.Length - offset < BitmapDirectoryEntryView.SizeInBytes)
            return BitmapEntryStatus.Truncated;
        var entry = directory[offset..];
        var v = BitmapDirectoryEntryReadOnlyView.Create(entry);
        long unpadded = BitmapDirectoryEntryView.SizeInBytes + (long)v.ExtraDataSize + v.NameSize;
        long padded = (unpadded + 7) & ~7L;
        if ((long)offset + padded > Qcow2Limits.MaxBitmapDirectorySize) return BitmapEntryStatus.DirectoryTooLarge;
        if (padded > entry.Length) return BitmapEntryStatus.Truncated;

        int extra = (int)v.ExtraDataSize;
        int nameStart = BitmapDirectoryEntryView.SizeInBytes + extra;
        info = new BitmapDirectoryEntryInfo
        {
            BitmapTableOffset = v.BitmapTableOffset,
            BitmapTableSize = v.BitmapTableSize,
            Flags = v.Flags,
            Type = v.Type,
            GranularityBits = v.GranularityBits,
            ExtraDataSize = v.ExtraDataSize,
            ExtraData = entry.Slice(BitmapDirectoryEntryView.SizeInBytes, extra),
            Name = entry.Slice(nameStart, v.NameSize),
        };
        entryLength = (int)padded;

        if (v.NameSize == 0) return BitmapEntryStatus.NameEmpty;
        if (v.NameSize > Qcow2Limits.MaxBitmapNameLength) return BitmapEntryStatus.NameTooLong;
        if ((v.Flags & ~Qcow2Constants.BitmapFlagsKnown) != 0) return BitmapEntryStatus.ReservedFlagsSet;
        if (v.Type != Qcow2Constants.BitmapTypeDirtyTracking) return BitmapEntryStatus.InvalidType;
        if (v.GranularityBits < Qcow2Limits.MinBitmapGranularityBits || v.GranularityBits > Qcow2Limits.MaxBitmapGranularityBits)
            return BitmapEntryStatus.GranularityOutOfRange;
        if (v.BitmapTableSize > Qcow2Limits.MaxBitmapTableSize) return BitmapEntryStatus.TableTooLarge;
        if (entry[(int)unpadded..(int)padded].IndexOfAnyExcept((byte)0) >= 0) return BitmapEntryStatus.PaddingNotZero;
        return BitmapEntryStatus.Ok;
    }

    /// <summary>
    /// Checks a decoded entry against the image: the bitmap table cluster aligned, and exactly
    /// as many table entries as a bitmap of <paramref name="virtualSize"/> at the entry's
    /// granularity needs.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">virtualSize is negative.</exception>
    public static BitmapEntryStatus Validate(in BitmapDirectoryEntryInfo info, in ClusterGeometry geometry, long virtualSize)
    {
        if (info.BitmapTableOffset == 0 || (info.BitmapTableOffset & (ulong)(geometry.ClusterSize - 1)) != 0
            || info.BitmapTableOffset > long.MaxValue)
            return BitmapEntryStatus.TableOffsetMisaligned;
        if (info.GranularityBits > 63) return BitmapEntryStatus.GranularityOutOfRange;
        if (TableEntriesFor(virtualSize, info.GranularityBits, geometry.ClusterBits) != info.BitmapTableSize)
            return BitmapEntryStatus.TableSizeMismatch;
        return BitmapEntryStatus.Ok;
    }

    /// <summary>Like <see cref="Read"/>, reporting only full success.</summary>
    public static bool TryRead(ReadOnlySpan<byte> directory, int offset, out BitmapDirectoryEntryInfo info, out int entryLength) =>
        Read(directory, offset, out info, out entryLength) == BitmapEntryStatus.Ok;

    /// <summary>Length of an entry (padded to 8).</summary>
    public static int EntryLength(int extraDataSize, int nameLength) =>
        (BitmapDirectoryEntryView.SizeInBytes + extraDataSize + nameLength + 7) & ~7;

    /// <summary>Bitmap table entries a bitmap of a disk needs: one per cluster of bitmap data.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of range.</exception>
    public static long TableEntriesFor(long virtualSize, int granularityBits, int clusterBits)
    {
        if (virtualSize < 0) ThrowHelper.ThrowArgumentOutOfRange(nameof(virtualSize), virtualSize, "Must not be negative.");
        if ((uint)granularityBits > 63) ThrowHelper.ThrowArgumentOutOfRange(nameof(granularityBits), granularityBits, "Must be 0..63.");
        if ((uint)clusterBits > 30) ThrowHelper.ThrowArgumentOutOfRange(nameof(clusterBits), clusterBits, "Must be 0..30.");
        ulong bits = granularityBits == 63 ? (virtualSize > 0 ? 1UL : 0) : ((ulong)virtualSize + (1UL << granularityBits) - 1) >> granularityBits;
        ulong bytes = (bits + 7) >> 3;
        ulong clusterBitsOfData = (ulong)clusterBits;
        return (long)((bytes + (1UL << (int)clusterBitsOfData) - 1) >> (int)clusterBitsOfData);
    }

    /// <summary>Writes an entry; returns its padded length.</summary>
    /// <exception cref="ArgumentException">The name is empty or longer than 1023 bytes, or destination is too small.</exception>
    public static int Write(Span<byte> destination, ulong bitmapTableOffset, uint bitmapTableSize, uint flags,
        byte granularityBits, ReadOnlySpan<byte> name, ReadOnlySpan<byte> extraData = default)
    {
        if (name.IsEmpty || name.Length > Qcow2Limits.MaxBitmapNameLength)
            ThrowHelper.ThrowArgument(nameof(name), "A bitmap name is 1..1023 bytes.");
        int length = EntryLength(extraData.Length, name.Length);
        if (destination.Length < length) ThrowHelper.ThrowBufferTooSmall(nameof(destination), length, destination.Length);
        var e = destination[..length];
        e.Clear();
        var v = BitmapDirectoryEntryView.Create(e);
        v.BitmapTableOffset = bitmapTableOffset;
        v.BitmapTableSize = bitmapTableSize;
        v.Flags = flags;
        v.Type = Qcow2Constants.BitmapTypeDirtyTracking;
        v.GranularityBits = granularityBits;
        v.NameSize = (ushort)name.Length;
        v.ExtraDataSize = (uint)extraData.Length;
        extraData.CopyTo(e[BitmapDirectoryEntryView.SizeInBytes..]);
        name.CopyTo(e[(BitmapDirectoryEntryView.SizeInBytes + extraData.Length)..]);
        return length;
    }
}
