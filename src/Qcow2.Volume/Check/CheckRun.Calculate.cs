using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Qcow2.Spans;

namespace Qcow2.Volume.Check;

internal sealed partial class CheckRun
{
    /// <summary>Counts every reference, compares, repairs, then checks COPIED flags (qemu's check order).</summary>
    private void CheckRefcounts(List<SnapshotRef> snapshots, long snapshotsSize)
    {
        long clusters = (_fileLength + ClusterSize - 1) >> ClusterBits;
        if (clusters > int.MaxValue)
            throw Fail("File too large", CheckFindingKind.CheckError, -1, "the image file has too many clusters to check");
        try
        {
            _refs = new RefcountArray(_img.RefcountOrder, ClusterBits, clusters + 1, _maxArrayBytes);
        }
        catch (InsufficientMemoryException)
        {
            throw Fail("Cannot allocate memory", CheckFindingKind.CheckError, -1,
                $"the refcount array for {clusters} clusters would exceed the memory limit of {_maxArrayBytes} bytes");
        }
        _nbClusters = clusters;
        _refcountTableOffset = _img.RefcountTableOffset;
        _refcountTable = ReadEntries(_img.RefcountTableOffset, (int)_img.RefcountTableEntries);

        CalculateRefcounts(snapshots, snapshotsSize);
        _progress?.Report(0.6);

        var (mismatches, highest) = CompareRefcounts();
        _progress?.Report(0.75);

        if (_rebuild && FixErrors)
        {
            RebuildRefcountStructure(mismatches);
            mismatches.Clear();
            _errorBlocks.Clear();
            highest = HighestUsedCluster();
        }
        else if (_fix != RepairMode.None)
        {
            if (_rebuild)
                throw Fail("Input/output error", CheckFindingKind.RefcountStructure, -1,
                    "need to rebuild refcount structures");
            mismatches = FixMismatches(mismatches);
            ClearRefcountsPastEnd();
        }

        CheckCopiedFlags(mismatches);
        _progress?.Report(0.95);
        _res.ImageEndOffset = (highest + 1) << ClusterBits;
    }

    // One bit per host cluster: used by an active L2 entry with / without COPIED. After the comparison
    // these show at once whether any COPIED flag can be wrong, so a clean image skips the second
    // reading of every L2 table that the flag check otherwise needs.
    private ulong[] _activeCopied = [];
    private ulong[] _activeNotCopied = [];
    private bool _copiedNeedsFullPass;

    private void NoteActiveCopied(long cluster, bool copied)
    {
        if (_activeWeight != 1 || _img.HasDataFile || cluster >= (long)_activeCopied.Length * 64)
        {
            _copiedNeedsFullPass = true;
            return;
        }
        var bits = copied ? _activeCopied : _activeNotCopied;
        bits[cluster >> 6] |= 1UL << (int)(cluster & 63);
    }

    private void CalculateRefcounts(List<SnapshotRef> snapshots, long snapshotsSize)
    {
        PrepareEncryptionRegion();
        long words = (_nbClusters + 64) / 64;
        _activeCopied = new ulong[words];
        _activeNotCopied = new ulong[words];

        // The header cluster.
        IncrementRange(0, ClusterSize);

        // The active L1 table and everything below it (with allocation statistics).
        CheckL1(_img.L1Offset, _img.L1Size, active: true);

        if (_img.HasDataFile && snapshots.Count > 0)
            Corruption(CheckFindingKind.SnapshotTable, -1, $"{snapshots.Count} snapshots in image with data file");
        // Snapshots sharing one L1 table (only a hostile image has them) are examined once, weighted.
        // Created only when there are snapshots: a plain image never pays to JIT these instantiations.
        Dictionary<(ulong, uint), long>? groups = null;
        List<(ulong, uint)>? order = null;
        for (int i = 0; i < snapshots.Count; i++)
        {
            var sn = snapshots[i];
            if ((sn.L1Offset & (ulong)(ClusterSize - 1)) != 0)
            {
                Corruption(CheckFindingKind.SnapshotTable, -1,
                    $"snapshot {sn.Id} ({sn.Name}) l1_offset={Hex(sn.L1Offset)}: L1 table is not cluster aligned; snapshot table entry corrupted");
                continue;
            }
            if (sn.L1Size > CheckImage.MaxL1Bytes / 8)
            {
                Corruption(CheckFindingKind.SnapshotTable, -1,
                    $"snapshot {sn.Id} ({sn.Name}) l1_size={Hex((ulong)sn.L1Size)}: L1 table is too large; snapshot table entry corrupted");
                continue;
            }
            if (sn.L1Offset > long.MaxValue / 2)
            {
                Corruption(CheckFindingKind.SnapshotTable, -1,
                    $"snapshot {sn.Id} ({sn.Name}) l1_offset={Hex(sn.L1Offset)}: L1 table lies beyond any file");
                continue;
            }
            var key = (sn.L1Offset, sn.L1Size);
            groups ??= new();
            order ??= new();
            if (groups.TryGetValue(key, out long n)) groups[key] = n + 1;
            else { groups[key] = 1; order.Add(key); }
        }
        for (int g = 0; order is not null && g < order.Count; g++)
        {
            var (l1Offset, l1Size) = order[g];
            _weight = groups![order[g]];
            CheckL1((long)l1Offset, (int)l1Size, active: false);
            _weight = 1;
        }
        CheckAllL2Tables();
        _recordSnapshotTable = true;
        IncrementRange(_img.SnapshotsOffset, snapshotsSize);
        _recordSnapshotTable = false;

        // The refcount table.
        _countingStructure = true;
        IncrementRange((ulong)_img.RefcountTableOffset, (long)_img.RefcountTableClusters << ClusterBits, persistent: false);
        _countingStructure = false;

        // The encryption header.
        CountEncryptionRegion();

        CountBitmaps();
        CheckRefcountBlocks();
    }

    private static readonly byte[] ZeroEntry = new byte[8];

    /// <summary>Counts an L1 table, its L2 tables and their clusters.</summary>
    private void CheckL1(long l1Offset, int l1Size, bool active)
    {
        if (l1Size == 0) return;
        IncrementRange((ulong)l1Offset, (long)l1Size * 8);
        // Entries past the end of the file read as zeros (unallocated): only those inside are read.
        int inFile = l1Offset >= _fileLength ? 0 : (int)Math.Min(l1Size, (_fileLength - l1Offset + 7) / 8);
        var l1 = ReadEntries(l1Offset, inFile);
        // Entries are dropped in place only in a table referenced once, and never in one that lies in
        // the header cluster or the LUKS key material (its "entries" are those bytes).
        bool dropEntries = FixErrors && _weight == 1 && L1TableWritable(l1Offset, l1Size);

        for (int i = 0; i < l1.Length; i++)
        {
            ulong entry = l1[i];
            if (entry == 0) continue;
            if ((entry & L1ReservedMask) != 0)
                Corruption(CheckFindingKind.L1Entry, l1Offset + i * 8L, $"found L1 entry with reserved bits set: {BareHex(entry)}");
            ulong l2Offset = entry & L1OffsetMask;
            if (dropEntries && l2Offset >= (ulong)_fileLength)
            {
                // An L2 table past the end of the file reads as zeros: the entry maps nothing.
                _storage.Write(l1Offset + i * 8L, ZeroEntry);
                _storage.Flush();
                _res.CorruptionsFixed++;
                Report(CheckFindingKind.L1Entry, l1Offset + i * 8L, $"l2_offset={BareHex(l2Offset)}: L2 table lies past the end of the file; L1 entry dropped", repaired: true);
                continue;
            }
            if (dropEntries && (l2Offset & (ulong)(ClusterSize - 1)) != 0)
            {
                // No L2 table can start at an unaligned offset (reading through the entry fails): the
                // bytes there belong to other clusters. Counting their bogus references would make a
                // refcount rebuild wrong, and repairing them would overwrite whatever lives there.
                _storage.Write(l1Offset + i * 8L, ZeroEntry);
                _storage.Flush();
                _res.CorruptionsFixed++;
                Report(CheckFindingKind.L1Entry, l1Offset + i * 8L, $"l2_offset={BareHex(l2Offset)}: Table is not cluster aligned; L1 entry dropped", repaired: true);
                continue;
            }
            if (l2Offset != 0 && (l2Offset & (ulong)(ClusterSize - 1)) == 0 && ProtectedMetadataAt(l2Offset) is { } metadata)
            {
                // Key material or the header read as an L2 table: repairing its "entries" would
                // destroy them (a LUKS key region so damaged unlocks with no secret). The refcount
                // comparison counts the double use; a repair drops the entry instead.
                if (dropEntries)
                {
                    _storage.Write(l1Offset + i * 8L, ZeroEntry);
                    _storage.Flush();
                    _res.CorruptionsFixed++;
                    Report(CheckFindingKind.L1Entry, l1Offset + i * 8L, $"l2_offset={BareHex(l2Offset)}: L2 table lies in {metadata}; L1 entry dropped", repaired: true);
                    continue;
                }
                Report(CheckFindingKind.L1Entry, l1Offset + i * 8L, $"l2_offset={BareHex(l2Offset)}: L2 table lies in {metadata}; L1 entry corrupted");
            }
            IncrementRange(l2Offset, ClusterSize);
            if ((l2Offset & (ulong)(ClusterSize - 1)) != 0)
                Corruption(CheckFindingKind.L1Entry, l1Offset + i * 8L, $"l2_offset={BareHex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted");
            // Tables past the end of the file read as zeros and reference nothing.
            if ((long)l2Offset < _storage.Length)
            {
                var key = (long)l2Offset;
                _l2References.Add(key, _weight, active ? _weight : 0);
                // Bounded memory even for hostile images with millions of distinct tables.
                if (_l2References.Count >= MaxPendingL2Tables) CheckAllL2Tables();
            }
        }
    }

    /// <summary>
    /// Every L2 table referenced by the active image or a snapshot, with how often: each distinct
    /// table is read and examined once, its effect counted once per reference (QEMU reads it again
    /// for every snapshot; counting is the same, repairs found by the first reading are seen by the
    /// later ones either way).
    /// </summary>
    private readonly L2ReferenceMap _l2References = new();
    private long _activeWeight;
    private const int MaxPendingL2Tables = 1 << 22;

    private void CheckAllL2Tables()
    {
        var offsets = _l2References.Keys();
        Array.Sort(offsets);
        long outerWeight = _weight;
        VisitTables(offsets, (index, table, _) =>
        {
            var (total, active) = _l2References.Get(offsets[index]);
            _weight = total;
            _activeWeight = active;
            CheckL2(offsets[index], table);
            _weight = outerWeight;
            _activeWeight = 0;
        }, 0.05, 0.5);
        _l2References.Clear();
    }

    /// <summary>Counts the clusters one L2 table references and checks its entries.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void CheckL2(long l2Offset, Span<byte> table)
    {
        int entrySize = _img.L2EntrySize;
        bool extended = _img.ExtendedL2;
        bool dataFile = _img.HasDataFile;
        int entries = _img.L2Entries;
        int clusterBits = ClusterBits;
        int csizeShift = 62 - (clusterBits - 8);
        ulong coffsetMask = (1UL << csizeShift) - 1;
        long nextContiguous = 0;
        ulong clusterMask = (ulong)ClusterSize - 1;
        // A table at an unaligned offset is no table: its "entries" are bytes of other clusters
        // (often other metadata), so nothing is ever written through it. Its L1 entry is reported.
        bool fix = FixErrors && ((ulong)l2Offset & clusterMask) == 0 && ProtectedMetadataAt((ulong)l2Offset) is null;

        int i = 0;
        while (i < entries)
        {
            ulong entry = ReadL2(table, i, entrySize);
            ulong bitmap = extended ? BinaryPrimitives.ReadUInt64BigEndian(table[(i * entrySize + 8)..]) : 0;
            if (entry == 0 && bitmap == 0)
            {
                // Skip runs of unallocated entries without decoding them.
                int nonZero = table[(i * entrySize)..].IndexOfAnyExcept((byte)0);
                if (nonZero < 0) break;
                i += nonZero / entrySize;
                continue;
            }
            long entryOffset = l2Offset + (long)i * entrySize;

            if ((entry & CompressedFlag) != 0)
            {
                if ((entry & CopiedFlag) != 0)
                {
                    Corruption(CheckFindingKind.L2Entry, entryOffset,
                        $"coffset={Hex(entry & coffsetMask)}: copied flag must never be set for compressed clusters");
                    entry &= ~CopiedFlag;
                }
                if (dataFile)
                {
                    Corruption(CheckFindingKind.L2Entry, entryOffset, $"compressed cluster {i} with data file, entry={Hex(entry)}");
                }
                else if (bitmap != 0 && !fix)
                {
                    Corruption(CheckFindingKind.L2Entry, entryOffset, $"compressed cluster {i} with non-zero subcluster allocation bitmap, entry={Hex(entry)}");
                }
                else
                {
                    if (bitmap != 0)
                    {
                        // The bitmap of a compressed cluster is reserved: clearing it makes the entry valid again.
                        RewriteL2Entry(table, i, entryOffset, entry, 0,
                            $"compressed cluster {i} with non-zero subcluster allocation bitmap, entry={Hex(entry)}");
                        bitmap = 0;
                    }
                    var descriptor = CompressedDescriptor.Decode(entry, clusterBits);
                    ulong coffset = (ulong)descriptor.HostOffset;
                    long csize = descriptor.HostLength;
                    if (fix && coffset + (ulong)csize >= (ulong)_fileLength + (ulong)ClusterSize)
                    {
                        // Compressed data past the end of the file cannot be read back: the cluster reads as zeros from now on.
                        DropL2Entry(table, i, entryOffset, $"compressed cluster at {Hex(coffset)} lies past the end of the file");
                        i++;
                        continue;
                    }
                    IncrementRange(coffset, csize);
                    if (_activeWeight > 0)
                    {
                        _res.AllocatedClusters += _activeWeight;
                        _res.CompressedClusters += _activeWeight;
                        _res.FragmentedClusters += _activeWeight;
                    }
                }
                i++;
                continue;
            }

            if ((entry & L2StandardReservedMask) != 0)
                Corruption(CheckFindingKind.L2Entry, entryOffset, $"found l2 entry with reserved bits set: {BareHex(entry)}");

            ulong offset = entry & L2OffsetMask;
            bool zeroFlag = !extended && (entry & ZeroFlag) != 0;
            bool allocated = offset != 0 || (dataFile && (entry & CopiedFlag) != 0);
            if (zeroFlag && offset == 0) allocated = false;

            if (!allocated)
            {
                if (!zeroFlag && (bitmap & SubclusterAllocMask) != 0)
                {
                    const string message = "Unallocated cluster has non-zero subcluster allocation map";
                    if (fix) RewriteL2Entry(table, i, entryOffset, entry, bitmap & ~SubclusterAllocMask, message);
                    else Corruption(CheckFindingKind.L2Entry, entryOffset, message);
                }
                i++;
                continue;
            }

            if (((bitmap >> 32) & bitmap) != 0)
            {
                string message = $"offset={BareHex(offset)}: Allocated cluster has corrupted subcluster allocation bitmap";
                if (fix)
                {
                    // A subcluster marked both allocated and zero: keep the data.
                    bitmap &= ~((bitmap & SubclusterAllocMask) << 32);
                    RewriteL2Entry(table, i, entryOffset, entry, bitmap, message);
                }
                else Corruption(CheckFindingKind.L2Entry, entryOffset, message);
            }

            if ((offset & (ulong)(ClusterSize - 1)) != 0)
            {
                bool containsData = extended ? (bitmap & SubclusterAllocMask) != 0 : (entry & ZeroFlag) == 0;
                if (!containsData)
                {
                    if (fix)
                    {
                        _res.Corruptions++;
                        FixL2EntryByZero(table, i, entryOffset, bitmap, offset);
                        i++;
                        continue;
                    }
                    Corruption(CheckFindingKind.L2Entry, entryOffset, $"offset={BareHex(offset)}: Preallocated cluster is not properly aligned; L2 entry corrupted.");
                }
                else if (fix)
                {
                    // No cluster can be found at an unaligned offset: the guest cluster reads as zeros from now on.
                    DropL2Entry(table, i, entryOffset, $"offset={BareHex(offset)}: Data cluster is not properly aligned; L2 entry corrupted.");
                    i++;
                    continue;
                }
                else
                {
                    Corruption(CheckFindingKind.L2Entry, entryOffset, $"offset={BareHex(offset)}: Data cluster is not properly aligned; L2 entry corrupted.");
                }
            }

            if (fix && !dataFile && offset >= (ulong)_fileLength)
            {
                DropL2Entry(table, i, entryOffset, $"offset={BareHex(offset)}: Data cluster lies past the end of the file; L2 entry corrupted.");
                i++;
                continue;
            }

            if (_activeWeight > 0)
            {
                NoteActiveCopied((long)(offset >> clusterBits), (entry & CopiedFlag) != 0);
                _res.AllocatedClusters += _activeWeight;
                if (nextContiguous != 0 && (long)offset != nextContiguous) _res.FragmentedClusters += _activeWeight;
                nextContiguous = (long)offset + ClusterSize;
            }
            if (!dataFile)
            {
                // The common case, one whole cluster inside the file, without the general range logic.
                long k = (long)(offset >> clusterBits);
                ulong r;
                if ((offset & clusterMask) == 0 && offset < (ulong)_fileLength && k < _nbClusters && !_countingStructure && (r = _refs.Get(k)) <= _refs.MaxValue - (ulong)_weight)
                    _refs.Set(k, r + (ulong)_weight);
                else
                    IncrementRange(offset, ClusterSize);
            }
            i++;
        }
    }

    /// <summary>Turns a preallocated-zero entry whose offset cannot be valid into a plain zero entry.</summary>
    private void FixL2EntryByZero(Span<byte> table, int index, long entryOffset, ulong bitmap, ulong offset)
    {
        string message = $"offset={BareHex(offset)}: Preallocated cluster is not properly aligned; L2 entry corrupted.";
        _res.Corruptions--;
        if (_img.ExtendedL2)
            RewriteL2Entry(table, index, entryOffset, 0, (bitmap | (bitmap << 32)) & SubclusterZeroMask, message); // allocated subclusters read as zeros
        else
            RewriteL2Entry(table, index, entryOffset, ZeroFlag, 0, message);
    }

    /// <summary>Replaces an L2 entry that cannot be valid by one that reads zeros (unallocated on version 2).</summary>
    private void DropL2Entry(Span<byte> table, int index, long entryOffset, string message)
    {
        ulong entry = _img.Version >= 3 && !_img.ExtendedL2 ? ZeroFlag : 0;
        ulong bitmap = _img.ExtendedL2 ? SubclusterZeroMask : 0;
        RewriteL2Entry(table, index, entryOffset, entry, bitmap, message);
    }

    /// <summary>Writes a repaired L2 entry (and bitmap) in place and counts the corruption as fixed.</summary>
    private void RewriteL2Entry(Span<byte> table, int index, long entryOffset, ulong entry, ulong bitmap, string message)
    {
        int entrySize = _img.L2EntrySize;
        var slot = table.Slice(index * entrySize, entrySize);
        BinaryPrimitives.WriteUInt64BigEndian(slot, entry);
        if (_img.ExtendedL2) BinaryPrimitives.WriteUInt64BigEndian(slot[8..], bitmap);
        _storage.Write(entryOffset, slot);
        _storage.Flush();
        _res.CorruptionsFixed++;
        Report(CheckFindingKind.L2Entry, entryOffset, message, repaired: true);
    }

    /// <summary>Checks the refcount table's entries and counts the refcount blocks.</summary>
    private void CheckRefcountBlocks()
    {
        for (long i = 0; i < _refcountTable.Length; i++)
        {
            ulong raw = _refcountTable[i];
            ulong offset = raw & RefcountTableOffsetMask;
            long entryOffset = _refcountTableOffset + i * 8;
            if ((raw & RefcountTableReservedMask) != 0)
            {
                Corruption(CheckFindingKind.RefcountStructure, entryOffset, $"refcount table entry {i} has reserved bits set", persistent: false);
                _rebuild = true;
                continue;
            }
            if ((offset & (ulong)(ClusterSize - 1)) != 0)
            {
                Corruption(CheckFindingKind.RefcountStructure, entryOffset, $"refcount block {i} is not cluster aligned; refcount table entry corrupted", persistent: false);
                _rebuild = true;
                continue;
            }
            ulong cluster = offset >> ClusterBits;
            if (cluster >= (ulong)_nbClusters)
            {
                _res.Corruptions++;
                if (FixErrors && TryExtendFileFor(offset))
                {
                    _res.Corruptions--;
                    _res.CorruptionsFixed++;
                    Report(CheckFindingKind.RefcountStructure, entryOffset, $"refcount block {i} is outside image", repaired: true);
                    _countingStructure = true;
                    IncrementRange(offset, ClusterSize, persistent: false);
                    _countingStructure = false;
                    continue;
                }
                Report(CheckFindingKind.RefcountStructure, entryOffset, $"refcount block {i} is outside image");
                if (FixErrors) _rebuild = true;
                continue;
            }
            if (offset != 0)
            {
                _countingStructure = true;
                IncrementRange(offset, ClusterSize, persistent: false);
                _countingStructure = false;
                ulong count = _refs.Get((long)cluster);
                if (count != 1)
                {
                    Corruption(CheckFindingKind.RefcountStructure, (long)offset, $"refcount block {i} refcount={count}", persistent: false);
                    _rebuild = true;
                }
            }
        }
    }

    /// <summary>Extends the file so a refcount block that lies past its end is inside it (zeros: all free).</summary>
    private bool TryExtendFileFor(ulong offset)
    {
        if (offset > (ulong)(long.MaxValue - ClusterSize)) return false;
        long newLength = (long)offset + ClusterSize;
        // Growing the file (and the refcount array) without bound for a wild offset helps nobody:
        // beyond doubling (or 1 GiB) the entry is left to the rebuild instead.
        if (newLength - _fileLength > Math.Max(_fileLength, 1L << 30)) return false;
        long clusters = (newLength + ClusterSize - 1) >> ClusterBits;
        if (!_refs.TryEnsure(clusters + 1)) return false;
        _storage.SetLength(newLength);
        _fileLength = _storage.Length;
        _nbClusters = Math.Max(_nbClusters, (_fileLength + ClusterSize - 1) >> ClusterBits);
        return true;
    }

    /// <summary>
    /// Leak repair beyond qemu-img's: refcounts of clusters past the end of the file (left by a power
    /// cut after the refcount update but before the file grew). qemu-img check does not look there, so
    /// they are neither reported nor counted (the report stays qemu-img's), but left in place they
    /// would become leaks once the file grows over them. Only on an image that is otherwise
    /// consistent and refers to nothing past its end, and only through refcount blocks inside the file.
    /// </summary>
    private void ClearRefcountsPastEnd()
    {
        if (_rebuild || _res.Corruptions != 0 || _res.CheckErrors != 0 || _errorBlocks.Count != 0) return;
        if (_pastEndRegions.Count != 0 || _maxReferencedEnd > (ulong)_nbClusters << ClusterBits) return;
        int order = _img.RefcountOrder;
        int perBlockBits = _refs.EntriesPerBlockBits;
        long perBlock = 1L << perBlockBits;
        var done = new HashSet<ulong>();
        byte[]? block = null;
        bool wrote = false;
        for (long b = _nbClusters >> perBlockBits; b < _refcountTable.Length; b++)
        {
            ulong offset = _refcountTable[b] & RefcountTableOffsetMask;
            if (offset == 0 || (offset & (ulong)(ClusterSize - 1)) != 0 || offset > (ulong)(_fileLength - ClusterSize)) continue;
            if (!done.Add(offset)) continue;
            block ??= new byte[ClusterSize];
            ReadZeroFilled((long)offset, block);
            long first = b << perBlockBits;
            int start = (int)Math.Max(0, _nbClusters - first);
            bool changed = false;
            for (int i = start; i < perBlock; i++)
            {
                if (RefcountArray.GetFrom(block, order, i) == 0) continue;
                RefcountArray.SetIn(block, order, i, 0);
                _res.RefcountsPastEndCleared++;
                changed = true;
            }
            if (!changed) continue;
            _storage.Write((long)offset, block);
            wrote = true;
        }
        if (wrote)
        {
            _storage.Flush();
            _lastStoredBlock = -1;
        }
    }
}
