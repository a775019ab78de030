using System.Buffers.Binary;
using System.Text;

namespace Qcow2.Volume.Check;

internal sealed partial class CheckRun
{
    internal readonly record struct SnapshotRef(ulong L1Offset, uint L1Size, string Id, string Name);

    // Bitmap limits (spec "Bitmaps"; QEMU's BME_* constants): they bound what a directory entry may claim.
    private const uint BitmapMaxTableSize = 0x800_0000;
    private const ulong BitmapMaxPhysicalSize = 0x2000_0000;
    private const int BitmapMinGranularityBits = 9, BitmapMaxGranularityBits = 31;
    private const uint BitmapInUseFlag = 1, BitmapReservedFlags = 0xffff_fffc;
    private const int BitmapMaxNameSize = 1023;
    private const byte BitmapTypeDirtyTracking = 1;
    private const int BitmapEntryFixedSize = 24;
    private const ulong BitmapTableOffsetMask = 0x00ff_ffff_ffff_fe00UL;
    private const ulong BitmapTableReservedMask = 0xff00_0000_0000_01feUL;
    private const ulong BitmapTableAllOnes = 1;

    // Snapshot table problems are counted apart from the refcount check (as QEMU does) and joined at the end.
    private long _snapshotCorruptions;
    private const int MinV3SnapshotExtraData = 16;
    private List<byte[]>? _snapshotRewrite;   // the entries to write back when the table must be rewritten
    private bool _snapshotTableNeedsRewrite;
    private readonly List<(long Start, long Count)> _snapshotTableIncrements = new();

    /// <summary>Reads the snapshot table as QEMU's check does; problems that prevent reading it fail the check.</summary>
    private List<SnapshotRef> ReadSnapshotTable(out long tableSize)
    {
        tableSize = 0;
        uint count = _img.NbSnapshots;
        ulong offset = _img.SnapshotsOffset;
        var list = new List<SnapshotRef>();
        if (FixErrors) _snapshotRewrite = new List<byte[]>();
        if (count > CheckImage.MaxSnapshots)
        {
            _snapshotCorruptions++;
            uint overhanging = count - CheckImage.MaxSnapshots;
            if (FixErrors)
            {
                // Only the first snapshots are kept; the table is written anew at the end.
                count = CheckImage.MaxSnapshots;
                _snapshotTableNeedsRewrite = true;
                Report(CheckFindingKind.Information, 60, $"Discarding {overhanging} overhanging snapshots", repaired: true);
            }
            else
                throw FailOpen("File too large",
                    $"ERROR snapshot table too large\nYou can force-remove all {overhanging} overhanging snapshots with qemu-img check -r all");
        }
        if (offset > long.MaxValue - (ulong)count * CheckImage.SnapshotHeaderSize || (offset & (ulong)(ClusterSize - 1)) != 0)
            throw FailOpen("Invalid argument", "ERROR snapshot table offset invalid");
        if (count > 0 && offset < (ulong)ClusterSize && _fix != RepairMode.None)
        {
            // A table in the header cluster is the header read as snapshots: every repair that rewrites
            // a header field (the refcount table pointer, the dirty bit) would change the "snapshots"
            // and make what they reference worse. Nothing is written.
            throw Fail("Invalid argument", CheckFindingKind.SnapshotTable, 64,
                "the snapshot table overlaps the image header; refusing to repair");
        }
        // Reported once the whole table has been read: a table that cannot be read reports only that.
        List<(uint Index, long Offset)>? incomplete = null;   // created only when needed (JIT cost)

        long pos = (long)offset;
        Span<byte> header = stackalloc byte[CheckImage.SnapshotHeaderSize];
        for (uint i = 0; i < count; i++)
        {
            pos = (pos + 7) & ~7L;
            ReadZeroFilled(pos, header);
            long entryStart = pos;
            pos += CheckImage.SnapshotHeaderSize;
            ulong l1Offset = BinaryPrimitives.ReadUInt64BigEndian(header);
            uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(header[8..]);
            ushort idSize = BinaryPrimitives.ReadUInt16BigEndian(header[12..]);
            ushort nameSize = BinaryPrimitives.ReadUInt16BigEndian(header[14..]);
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(header[36..]);
            uint keptExtra = extraSize;
            if (extraSize > CheckImage.MaxSnapshotExtraData)
            {
                if (!FixErrors)
                    throw FailOpen("File too large",
                        $"ERROR failed to read the snapshot table: Too much extra metadata in snapshot table entry {i}\nYou can force-remove this extra metadata with qemu-img check -r all");
                // The excess extra data is dropped when the table is written anew.
                _snapshotCorruptions++;
                _snapshotTableNeedsRewrite = true;
                keptExtra = CheckImage.MaxSnapshotExtraData;
                Report(CheckFindingKind.Information, entryStart + 36, $"Discarding too much extra metadata in snapshot table entry {i} ({extraSize} > {CheckImage.MaxSnapshotExtraData})", repaired: true);
            }
            var extra = new byte[keptExtra];
            ReadZeroFilled(pos, extra);
            pos += extraSize;
            if (_img.Version >= 3 && extraSize < MinV3SnapshotExtraData)
            {
                // Version 3 entries carry at least vm_state_size_large and disk_size (spec "Snapshots").
                _snapshotCorruptions++;
                (incomplete ??= new()).Add((i, entryStart + 36));
                if (FixErrors)
                {
                    _snapshotTableNeedsRewrite = true;
                    var full = new byte[MinV3SnapshotExtraData];
                    extra.CopyTo(full, 0);
                    if (extraSize < 8) BinaryPrimitives.WriteUInt64BigEndian(full, BinaryPrimitives.ReadUInt32BigEndian(header[32..]));
                    BinaryPrimitives.WriteUInt64BigEndian(full.AsSpan(8), (ulong)_img.VirtualSize);
                    extra = full;
                    keptExtra = MinV3SnapshotExtraData;
                }
            }
            var text = new byte[idSize + nameSize];
            ReadZeroFilled(pos, text);
            pos += text.Length;
            if (pos - (long)offset > CheckImage.MaxSnapshotTableBytes)
                throw FailOpen("File too large", "ERROR failed to read the snapshot table: Snapshot table is too big");
            list.Add(new SnapshotRef(l1Offset, l1Size,
                Encoding.UTF8.GetString(text, 0, idSize), Encoding.UTF8.GetString(text, idSize, nameSize)));
            if (_snapshotRewrite is not null)
            {
                var entry = new byte[(CheckImage.SnapshotHeaderSize + keptExtra + text.Length + 7) & ~7L];
                header.CopyTo(entry);
                BinaryPrimitives.WriteUInt32BigEndian(entry.AsSpan(36), keptExtra);
                extra.CopyTo(entry, CheckImage.SnapshotHeaderSize);
                text.CopyTo(entry, CheckImage.SnapshotHeaderSize + (int)keptExtra);
                _snapshotRewrite.Add(entry);
            }
        }
        if (incomplete is not null)
            foreach (var (index, at) in incomplete)
                Report(CheckFindingKind.SnapshotTable, at, $"snapshot table entry {index} is incomplete", repaired: FixErrors);
        tableSize = pos - (long)offset;
        if (!_snapshotTableNeedsRewrite) _snapshotRewrite = null;
        return list;
    }

    /// <summary>
    /// Writes the repaired snapshot table after the end of the file and switches to it, ordered so a
    /// crash at any point leaves at most leaked clusters: the new table's clusters are first made
    /// used in a fresh refcount structure (while the old table still counts), then the header moves
    /// to the new table, and only then is the old table freed.
    /// </summary>
    private void RewriteSnapshotTable()
    {
        if (_snapshotRewrite is null) return;
        long bytes = 0;
        foreach (var e in _snapshotRewrite) bytes += e.Length;
        var table = new byte[bytes];
        int at = 0;
        foreach (var e in _snapshotRewrite) { e.CopyTo(table, at); at += e.Length; }

        long newStart = FirstUnreferencedCluster();
        long clusters = (bytes + ClusterSize - 1) >> ClusterBits;
        if (!_refs.TryEnsure(newStart + clusters + 1))
            throw Fail("Cannot allocate memory", CheckFindingKind.SnapshotTable, -1, "no room for the rewritten snapshot table");
        long tableOffset = bytes == 0 ? 0 : newStart << ClusterBits;
        if (bytes > 0)
        {
            _storage.Write(tableOffset, table);
            _storage.Flush();
            for (long k = newStart; k < newStart + clusters; k++) _refs.Set(k, 1);
            _nbClusters = newStart + clusters;
            _fileLength = _storage.Length;
        }

        // 1. A refcount structure in which the new table is used (and the old one still is).
        long absorbed = WriteRefcountStructure();
        _res.Corruptions -= absorbed;
        _res.CorruptionsFixed += absorbed;

        // 2. The header moves to the new table.
        Span<byte> pointer = stackalloc byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(pointer, (uint)_snapshotRewrite.Count);
        BinaryPrimitives.WriteUInt64BigEndian(pointer[4..], (ulong)tableOffset);
        _storage.Write(60, pointer);
        _storage.Flush();

        // 3. The old table is freed in the refcount blocks just written (slices of the array).
        var touched = new SortedSet<long>();
        foreach (var (start, count) in _snapshotTableIncrements)
            for (long k = start; k < start + count; k++)
            {
                ulong r = _refs.Get(k);
                if (r > 0) _refs.Set(k, r - 1);
                touched.Add(k >> _refs.EntriesPerBlockBits);
            }
        foreach (long b in touched)
        {
            ulong offset = b < _refcountTable.Length ? _refcountTable[b] & RefcountTableOffsetMask : 0;
            if (offset != 0) _storage.Write((long)offset, _refs.Block(b));
        }
        _storage.Flush();
        _lastStoredBlock = -1;
        Report(CheckFindingKind.SnapshotTable, tableOffset, "snapshot table written anew", repaired: true);
    }

    /// <summary>Counts the bitmap directory, bitmap tables and bitmap data clusters.</summary>
    private void CountBitmaps()
    {
        if (_img.NbBitmaps == 0) return;
        ulong dirOffset = _img.BitmapDirectoryOffset;
        ulong dirSize = _img.BitmapDirectorySize;
        IncrementRange(dirOffset, (long)dirSize);
        if (dirSize == 0)
        {
            _res.Corruptions++;
            throw Fail("Invalid argument", CheckFindingKind.Bitmap, (long)dirOffset, "bitmap directory size is zero");
        }
        var dir = new byte[dirSize];
        ReadZeroFilled((long)dirOffset, dir);
        var tables = new List<(ulong Offset, uint Size)>();
        int pos = 0;
        uint entries = 0;
        while (pos < dir.Length)
        {
            string? error = null;
            if (pos + BitmapEntryFixedSize > dir.Length) error = "broken bitmap directory";
            else if (++entries > _img.NbBitmaps) error = "more bitmaps found than specified in the header extension";
            ulong tableOffset = 0; uint tableSize = 0, flags = 0, extra = 0; byte type = 0, granularity = 0; ushort nameSize = 0;
            if (error is null)
            {
                var e = dir.AsSpan(pos);
                tableOffset = BinaryPrimitives.ReadUInt64BigEndian(e);
                tableSize = BinaryPrimitives.ReadUInt32BigEndian(e[8..]);
                flags = BinaryPrimitives.ReadUInt32BigEndian(e[12..]);
                type = e[16];
                granularity = e[17];
                nameSize = BinaryPrimitives.ReadUInt16BigEndian(e[18..]);
                extra = BinaryPrimitives.ReadUInt32BigEndian(e[20..]);
                long next = (pos + (long)BitmapEntryFixedSize + extra + nameSize + 7) & ~7L;
                if (next > dir.Length) error = "broken bitmap directory";
                else if (extra != 0) error = "bitmap extra data is not supported";
                else if (tableSize == 0 || tableOffset == 0 || (tableOffset & (ulong)(ClusterSize - 1)) != 0
                    || tableSize > BitmapMaxTableSize || granularity > BitmapMaxGranularityBits || granularity < BitmapMinGranularityBits
                    || (flags & BitmapReservedFlags) != 0 || nameSize > BitmapMaxNameSize || type != BitmapTypeDirtyTracking
                    || (ulong)tableSize * (ulong)ClusterSize > BitmapMaxPhysicalSize
                    || ((flags & BitmapInUseFlag) == 0 && (ulong)_img.VirtualSize > (((ulong)tableSize * (ulong)ClusterSize * 8) << granularity)))
                    error = "a bitmap does not satisfy the constraints";
                else pos = (int)next;
            }
            if (error is not null)
            {
                _res.Corruptions++;
                throw Fail("Invalid argument", CheckFindingKind.Bitmap, (long)dirOffset + pos, error);
            }
            tables.Add((tableOffset, tableSize));
        }
        if (entries != _img.NbBitmaps)
        {
            _res.Corruptions++;
            throw Fail("Invalid argument", CheckFindingKind.Bitmap, (long)dirOffset, "fewer bitmaps found than specified in the header extension");
        }

        foreach (var (tableOffset, tableSize) in tables)
        {
            IncrementRange(tableOffset, (long)tableSize * 8);
            var table = ReadEntries((long)tableOffset, (int)tableSize);
            foreach (ulong entry in table)
            {
                if (!BitmapTableEntryValid(entry))
                {
                    _res.Corruptions++;
                    throw Fail("Invalid argument", CheckFindingKind.Bitmap, (long)tableOffset, $"invalid bitmap table entry {Hex(entry)}");
                }
            }
            foreach (ulong entry in table)
            {
                ulong data = entry & BitmapTableOffsetMask;
                if (data != 0) IncrementRange(data, ClusterSize);
            }
        }
    }

    private bool BitmapTableEntryValid(ulong entry)
    {
        if ((entry & BitmapTableReservedMask) != 0) return false;
        ulong offset = entry & BitmapTableOffsetMask;
        if (offset != 0 && ((entry & BitmapTableAllOnes) != 0 || (offset & (ulong)(ClusterSize - 1)) != 0)) return false;
        return true;
    }
}
