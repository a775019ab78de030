using Qcow2.Spans.Layout;

namespace Qcow2.Spans;

/// <summary>Outcome of reading one snapshot table entry.</summary>
public enum SnapshotEntryStatus
{
    /// <summary>Read.</summary>
    Ok,

    /// <summary>The entry (fixed part, extra data, id or name) runs past the end of the table.</summary>
    Truncated,

    /// <summary>extra_data_size is above QEMU's limit of 1024 bytes.</summary>
    ExtraDataTooLarge,

    /// <summary>The entry ends beyond QEMU's snapshot table size limit (64 MiB).</summary>
    TableTooLarge,

    /// <summary>The offset is negative or not a multiple of 8.</summary>
    InvalidOffset,

    /// <summary>The snapshot's L1 table offset is not cluster aligned (or is zero with entries).</summary>
    L1TableMisaligned,

    /// <summary>The snapshot's L1 table is larger than QEMU's 32 MiB limit.</summary>
    L1TableTooLarge,

    /// <summary>A version 3 entry's extra data does not reach disk_size (16 bytes).</summary>
    ExtraDataTooSmall,
}

/// <summary>
/// A decoded snapshot table entry (spec "Snapshots"); strings and extra data are slices of the
/// table, nothing is copied.
/// </summary>
public readonly ref struct SnapshotEntryInfo
{
    /// <summary>Offset of the snapshot's L1 table.</summary>
    public ulong L1TableOffset { get; init; }

    /// <summary>Entries in the snapshot's L1 table.</summary>
    public uint L1Size { get; init; }

    /// <summary>Seconds since the Epoch when the snapshot was taken.</summary>
    public uint DateSeconds { get; init; }

    /// <summary>Nanosecond part of the date.</summary>
    public uint DateNanoseconds { get; init; }

    /// <summary>Guest run time in nanoseconds.</summary>
    public ulong VmClockNanoseconds { get; init; }

    /// <summary>The 32-bit vm_state_size field.</summary>
    public uint VmStateSize32 { get; init; }

    /// <summary>The VM state size: vm_state_size_large when present, else the 32-bit field.</summary>
    public ulong VmStateSize { get; init; }

    /// <summary>extra_data_size.</summary>
    public uint ExtraDataSize { get; init; }

    /// <summary>True when the extra data holds disk_size (required for version 3 images).</summary>
    public bool HasDiskSize { get; init; }

    /// <summary>The snapshot's virtual disk size (0 when absent; then the image size applies).</summary>
    public ulong DiskSize { get; init; }

    /// <summary>True when the extra data holds icount.</summary>
    public bool HasIcount { get; init; }

    /// <summary>The instruction count (ulong.MaxValue when QEMU did not record one).</summary>
    public ulong Icount { get; init; }

    /// <summary>The unique id string bytes.</summary>
    public ReadOnlySpan<byte> Id { get; init; }

    /// <summary>The name bytes.</summary>
    public ReadOnlySpan<byte> Name { get; init; }

    /// <summary>The whole extra data (known and unknown fields).</summary>
    public ReadOnlySpan<byte> ExtraData { get; init; }
}

/// <summary>Values for writing a snapshot table entry with <see cref="SnapshotEntryReader.Write"/>.</summary>
public struct SnapshotEntryData
{
    /// <summary>Offset of the snapshot's L1 table.</summary>
    public ulong L1TableOffset;

    /// <summary>Entries in the snapshot's L1 table.</summary>
    public uint L1Size;

    /// <summary>Seconds since the Epoch.</summary>
    public uint DateSeconds;

    /// <summary>Nanosecond part of the date.</summary>
    public uint DateNanoseconds;

    /// <summary>Guest run time in nanoseconds.</summary>
    public ulong VmClockNanoseconds;

    /// <summary>VM state size (written to both the 32-bit field, saturated, and vm_state_size_large).</summary>
    public ulong VmStateSize;

    /// <summary>Virtual disk size of the snapshot.</summary>
    public ulong DiskSize;

    /// <summary>Instruction count; ulong.MaxValue for none (as QEMU writes).</summary>
    public ulong Icount;
}

/// <summary>
/// Reads and writes snapshot table entries (spec "Snapshots"):
/// <code>
/// 0 fixed part (40 bytes, <see cref="SnapshotTableEntryView"/>)  40 extra data  then id, name,
/// padding to a multiple of 8
/// </code>
/// Every length is checked against the table before it is sliced.
/// </summary>
public static class SnapshotEntryReader
{
    /// <summary>Extra data size QEMU writes: vm_state_size_large, disk_size, icount.</summary>
    public const int StandardExtraDataSize = SnapshotExtraDataView.SizeInBytes;

    /// <summary>Extra data a version 3 entry must at least hold (through disk_size).</summary>
    public const int MinExtraDataSizeV3 = 16;

    /// <summary>
    /// Reads the entry at <paramref name="offset"/> of <paramref name="table"/> (offsets relative to
    /// the table start). <paramref name="entryLength"/> includes the padding to 8 bytes (the
    /// padding of the last entry may lie past the table end).
    /// </summary>
    public static SnapshotEntryStatus Read(ReadOnlySpan<byte> table, int offset, out SnapshotEntryInfo info, out int entryLength)
    {
        info = default;
        entryLength = 0;
        if (offset < 0 || (offset & 7) != 0) return SnapshotEntryStatus.InvalidOffset;
        if ((uint)offset > (uint)table.Length || table.Length - offset < SnapshotTableEntryView.SizeInBytes)
            return offset >= Qcow2Limits.MaxSnapshotTableSize ? SnapshotEntryStatus.TableTooLarge : SnapshotEntryStatus.Truncated;
        var entry = table[offset..];
        var v = SnapshotTableEntryReadOnlyView.Create(entry);
        uint extra = v.ExtraDataSize;
        if (extra > Qcow2Limits.MaxSnapshotExtraDataSize) return SnapshotEntryStatus.ExtraDataTooLarge;
        long unpadded = SnapshotTableEntryView.SizeInBytes + (long)extra + v.IdStringSize + v.NameSize;
        long padded = (unpadded + 7) & ~7L;
        if ((long)offset + unpadded > Qcow2Limits.MaxSnapshotTableSize) return SnapshotEntryStatus.TableTooLarge;
        if (unpadded > entry.Length) return SnapshotEntryStatus.Truncated;

        var extraData = entry.Slice(SnapshotTableEntryView.SizeInBytes, (int)extra);
        int idStart = SnapshotTableEntryView.SizeInBytes + (int)extra;
        ulong vmLarge = 0, disk = 0, icount = 0;
        if (extra >= 8) vmLarge = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(extraData);
        if (extra >= 16) disk = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(extraData[8..]);
        if (extra >= 24) icount = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(extraData[16..]);
        info = new SnapshotEntryInfo
        {
            L1TableOffset = v.L1TableOffset,
            L1Size = v.L1Size,
            DateSeconds = v.DateSeconds,
            DateNanoseconds = v.DateNanoseconds,
            VmClockNanoseconds = v.VmClockNanoseconds,
            VmStateSize32 = v.VmStateSize,
            VmStateSize = extra >= 8 ? vmLarge : v.VmStateSize,
            ExtraDataSize = extra,
            HasDiskSize = extra >= 16,
            DiskSize = disk,
            HasIcount = extra >= 24,
            Icount = extra >= 24 ? icount : ulong.MaxValue,
            Id = entry.Slice(idStart, v.IdStringSize),
            Name = entry.Slice(idStart + v.IdStringSize, v.NameSize),
            ExtraData = extraData,
        };
        entryLength = (int)padded;
        return SnapshotEntryStatus.Ok;
    }

    /// <summary>
    /// Checks a decoded entry against the image: its L1 table aligned and within QEMU's limit,
    /// and, for version 3 images, extra data through disk_size.
    /// </summary>
    public static SnapshotEntryStatus Validate(in SnapshotEntryInfo info, in ClusterGeometry geometry, uint version)
    {
        if (info.L1Size > Qcow2Limits.MaxL1Entries) return SnapshotEntryStatus.L1TableTooLarge;
        if ((info.L1TableOffset & (ulong)(geometry.ClusterSize - 1)) != 0 || (info.L1Size != 0 && info.L1TableOffset == 0)
            || info.L1TableOffset > long.MaxValue)
            return SnapshotEntryStatus.L1TableMisaligned;
        if (version >= 3 && info.ExtraDataSize < MinExtraDataSizeV3) return SnapshotEntryStatus.ExtraDataTooSmall;
        return SnapshotEntryStatus.Ok;
    }

    /// <summary>Like <see cref="Read"/>, reporting only success.</summary>
    public static bool TryRead(ReadOnlySpan<byte> table, int offset, out SnapshotEntryInfo info, out int entryLength) =>
        Read(table, offset, out info, out entryLength) == SnapshotEntryStatus.Ok;

    /// <summary>Length of an entry (padded to 8) with the given extra data, id and name sizes.</summary>
    public static int EntryLength(int extraDataSize, int idLength, int nameLength) =>
        (SnapshotTableEntryView.SizeInBytes + extraDataSize + idLength + nameLength + 7) & ~7;

    /// <summary>
    /// Writes an entry with QEMU's 24 bytes of extra data; returns its padded length.
    /// </summary>
    /// <exception cref="ArgumentException">id or name is longer than 65535 bytes, or destination is too small.</exception>
    public static int Write(Span<byte> destination, in SnapshotEntryData data, ReadOnlySpan<byte> id, ReadOnlySpan<byte> name)
    {
        if (id.Length > ushort.MaxValue) ThrowHelper.ThrowArgument(nameof(id), "A snapshot id is at most 65535 bytes.");
        if (name.Length > ushort.MaxValue) ThrowHelper.ThrowArgument(nameof(name), "A snapshot name is at most 65535 bytes.");
        int length = EntryLength(StandardExtraDataSize, id.Length, name.Length);
        if (destination.Length < length) ThrowHelper.ThrowBufferTooSmall(nameof(destination), length, destination.Length);
        var e = destination[..length];
        e.Clear();
        var v = SnapshotTableEntryView.Create(e);
        v.L1TableOffset = data.L1TableOffset;
        v.L1Size = data.L1Size;
        v.IdStringSize = (ushort)id.Length;
        v.NameSize = (ushort)name.Length;
        v.DateSeconds = data.DateSeconds;
        v.DateNanoseconds = data.DateNanoseconds;
        v.VmClockNanoseconds = data.VmClockNanoseconds;
        v.VmStateSize = data.VmStateSize > uint.MaxValue ? 0 : (uint)data.VmStateSize;
        v.ExtraDataSize = StandardExtraDataSize;
        var x = SnapshotExtraDataView.Create(e[SnapshotTableEntryView.SizeInBytes..]);
        x.VmStateSizeLarge = data.VmStateSize;
        x.DiskSize = data.DiskSize;
        x.Icount = data.Icount;
        int idStart = SnapshotTableEntryView.SizeInBytes + StandardExtraDataSize;
        id.CopyTo(e[idStart..]);
        name.CopyTo(e[(idStart + id.Length)..]);
        return length;
    }
}
