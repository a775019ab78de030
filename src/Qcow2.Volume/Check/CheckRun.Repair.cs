using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Qcow2.Volume.Check;

internal sealed partial class CheckRun
{
    /// <summary>
    /// Replaces the refcount table and every refcount block with ones built from the counted
    /// references. The new structure goes after the end of the file, is written and flushed, and
    /// only then does the header switch to it (one write of the table offset and size): a crash
    /// before the switch leaves the old structure in charge and the new clusters as mere leaks.
    /// </summary>
    private void RebuildRefcountStructure(List<Mismatch> mismatches)
    {
        long oldCorruptions = _res.Corruptions, oldLeaks = _res.Leaks;
        Report(CheckFindingKind.Information, -1, "Rebuilding refcount structure", repaired: true);
        WriteRefcountStructure();

        // As QEMU counts it: what a fresh count would still find stays; the rest was fixed.
        _res.Corruptions = _persistentCorruptions;
        _res.Leaks = 0;
        if (_res.Corruptions < oldCorruptions) _res.CorruptionsFixed += oldCorruptions - _res.Corruptions;
        _res.LeaksFixed += oldLeaks;
        // What qemu-img prints here: the old table and blocks, which its rebuilt structure still counts
        // and its follow-up leak repair then frees. Ours never counts them; the lines are the same.
        foreach (var (cluster, (before, after)) in _freedStructure)
            Report(CheckFindingKind.Leak, cluster << ClusterBits, $"cluster {cluster} refcount={before} reference={after}", repaired: true);
        _res.FindingsOmitted += _freedStructureOmitted;
        _freedStructure.Clear();
    }

    /// <summary>Clusters of the replaced refcount structure (refcount before → after), at most MaxFindings.</summary>
    private readonly SortedDictionary<long, (ulong Before, ulong After)> _freedStructure = new();
    private long _freedStructureOmitted;

    /// <summary>
    /// Writes a refcount table and blocks describing the counted references, then switches the header
    /// to them. Returns how many past-the-end corruptions this resolved (their regions are now inside
    /// the file and counted).
    /// </summary>
    private long WriteRefcountStructure()
    {
        // The old table and blocks are replaced: stop counting them.
        foreach (var (start, count) in _structureIncrements)
            for (long k = start; k < start + count; k++)
            {
                ulong r = _refs.Get(k);
                if (r == 0) continue;
                _refs.Set(k, r - 1);
                if (_freedStructure.TryGetValue(k, out var seen)) _freedStructure[k] = (seen.Before, r - 1);
                else if (_freedStructure.Count < _maxFindings) _freedStructure[k] = (r, r - 1);
                else _freedStructureOmitted++;
            }

        int perBlockBits = _refs.EntriesPerBlockBits;
        long perBlock = 1L << perBlockBits;
        long newStart = FirstUnreferencedCluster();

        // Regions referenced past the end of the file that the new end of the file will cover.
        long absorbed = 0;
        if (_pastEndRegions.Count > 0 && _refs.TryEnsure(newStart))
        {
            foreach (var (offset, length, weight, persistent) in _pastEndRegions)
            {
                if (offset + (ulong)length > (ulong)newStart << ClusterBits) continue;
                long first = (long)(offset >> ClusterBits), last = (long)((offset + (ulong)length - 1) >> ClusterBits);
                for (long k = first; k <= last; k++)
                {
                    ulong r = _refs.Get(k);
                    _refs.Set(k, (ulong)weight > _refs.MaxValue - r ? _refs.MaxValue : r + (ulong)weight);
                }
                absorbed += weight;
                if (persistent) _persistentCorruptions -= weight;
            }
            _pastEndRegions.Clear();
        }
        var usedBlocks = new SortedSet<long>();
        long oldBlocks = (_nbClusters + perBlock - 1) >> perBlockBits;
        for (long b = 0; b < oldBlocks; b++)
            if (_refs.Block(b).IndexOfAnyExcept((byte)0) >= 0) usedBlocks.Add(b);

        // Find how many clusters the new structure needs, counting the blocks that describe itself.
        long size = 0, blockCount = 0, tableClusters = 0;
        SortedSet<long> blocks;
        while (true)
        {
            blocks = new SortedSet<long>(usedBlocks);
            if (size > 0)
                for (long b = newStart >> perBlockBits; b <= (newStart + size - 1) >> perBlockBits; b++) blocks.Add(b);
            blockCount = blocks.Count;
            long tableEntries = blocks.Count == 0 ? 1 : blocks.Max + 1;
            tableClusters = (tableEntries * 8 + ClusterSize - 1) >> ClusterBits;
            long needed = blockCount + tableClusters;
            if (needed == size) break;
            size = needed;
        }
        if (tableClusters << ClusterBits > CheckImage.MaxRefcountTableBytes || !_refs.TryEnsure(newStart + size))
            throw Fail("File too large", CheckFindingKind.RefcountStructure, -1, "the rebuilt refcount table would be too large");
        for (long k = newStart; k < newStart + size; k++) _refs.Set(k, 1);

        // Refcount blocks first, in block order, then the table after them.
        var table = new byte[tableClusters << ClusterBits];
        long next = newStart;
        foreach (long b in blocks)
        {
            long offset = next++ << ClusterBits;
            _storage.Write(offset, _refs.Block(b));
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan((int)(b * 8)), (ulong)offset);
        }
        long tableOffset = next << ClusterBits;
        _storage.Write(tableOffset, table);
        _storage.Flush();

        Span<byte> pointer = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(pointer, (ulong)tableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(pointer[8..], (uint)tableClusters);
        _storage.Write(CheckImage.RefcountTableHeaderOffset, pointer);
        _storage.Flush();

        _refcountTableOffset = tableOffset;
        _refcountTable = new ulong[table.Length / 8];
        for (int i = 0; i < _refcountTable.Length; i++) _refcountTable[i] = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(i * 8));
        _nbClusters = newStart + size;
        _fileLength = _storage.Length;
        _res.RefcountStructureRebuilt = true;
        _structureIncrements.Clear();
        _structureIncrements.Add((newStart, size));
        _lastStoredBlock = -1;
        return absorbed;
    }

    /// <summary>
    /// Where new metadata may go: after the end of the file and after every region the metadata
    /// refers to, even a region past the end of the file (a table lost to truncation must not come
    /// back to life reading our new clusters).
    /// </summary>
    private long FirstUnreferencedCluster()
    {
        long end = (long)Math.Min(_maxReferencedEnd, (ulong)long.MaxValue - (ulong)ClusterSize);
        return Math.Max(_nbClusters, (end + ClusterSize - 1) >> ClusterBits);
    }

    private long HighestUsedCluster()
    {
        for (long k = _nbClusters - 1; k > 0; k--)
            if (_refs.Get(k) != 0) return k;
        return 0;
    }

    /// <summary>
    /// Checks the COPIED flag of the active image's L1 and L2 entries against the stored refcounts
    /// (set exactly when the refcount is 1), repairing when the mode allows it.
    /// </summary>
    private void CheckCopiedFlags(List<Mismatch> mismatches)
    {
        bool repair = FixErrors || (FixLeaks && _res.CheckErrors == 0 && _res.Corruptions == 0 && _res.Leaks == 0);
        if (_img.L1Size == 0) return;
        var l1 = ReadEntries(_img.L1Offset, _img.L1Size);
        var l2Offsets = new List<long>();
        Span<byte> raw = stackalloc byte[8];
        for (int i = 0; i < l1.Length; i++)
        {
            ulong entry = l1[i];
            ulong l2Offset = entry & L1OffsetMask;
            if (l2Offset == 0) continue;
            ulong? refcount = StoredRefcount((long)(l2Offset >> ClusterBits), mismatches);
            if (refcount is null) continue;
            bool copied = (entry & CopiedFlag) != 0;
            if ((refcount == 1) != copied)
            {
                long at = _img.L1Offset + i * 8L;
                string message = $"OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={BareHex(entry)} refcount={refcount}";
                if (repair)
                {
                    BinaryPrimitives.WriteUInt64BigEndian(raw, refcount == 1 ? entry | CopiedFlag : entry & ~CopiedFlag);
                    _storage.Write(at, raw);
                    _res.CorruptionsFixed++;
                    Report(CheckFindingKind.CopiedFlag, at, message, repaired: true);
                }
                else
                {
                    _res.Corruptions++;
                    Report(CheckFindingKind.CopiedFlag, at, message);
                }
            }
            l2Offsets.Add((long)l2Offset);
        }

        if (!_copiedNeedsFullPass && !CopiedFlagsMayBeWrong(mismatches)) return;
        l2Offsets.Sort();
        var offsets = l2Offsets.ToArray();
        bool wrote = false;
        VisitTables(offsets, (index, table, weight) =>
        {
            int dirty = CheckCopiedFlagsInL2(offsets[index], table, weight, repair, mismatches);
            if (dirty > 0)
            {
                _storage.Write(offsets[index], table);
                _res.CorruptionsFixed += dirty;
                wrote = true;
            }
        }, 0.75, 0.2);
        if (wrote || (repair && _res.CorruptionsFixed > 0)) _storage.Flush();
    }

    /// <summary>Whether any cluster the active L2 tables use has a COPIED flag that disagrees with its refcount.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool CopiedFlagsMayBeWrong(List<Mismatch> mismatches)
    {
        if (mismatches.Count == 0 && _errorBlocks.Count == 0)
        {
            // Stored refcounts equal the counted ones (within the compared range).
            long limit = Math.Min((long)_activeCopied.Length * 64, _nbClusters);
            for (int w = 0; w < _activeCopied.Length; w++)
            {
                ulong copied = _activeCopied[w], notCopied = _activeNotCopied[w];
                ulong any = copied | notCopied;
                while (any != 0)
                {
                    int bit = System.Numerics.BitOperations.TrailingZeroCount(any);
                    any &= any - 1;
                    long cluster = ((long)w << 6) + bit;
                    if (cluster >= limit) return true;
                    bool one = _refs.Get(cluster) == 1;
                    if (one ? (notCopied & (1UL << bit)) != 0 : (copied & (1UL << bit)) != 0) return true;
                }
            }
            return false;
        }
        for (int w = 0; w < _activeCopied.Length; w++)
        {
            ulong any = _activeCopied[w] | _activeNotCopied[w];
            while (any != 0)
            {
                int bit = System.Numerics.BitOperations.TrailingZeroCount(any);
                any &= any - 1;
                long cluster = ((long)w << 6) + bit;
                ulong? refcount = StoredRefcount(cluster, mismatches);
                if (refcount is null) continue;
                bool copied = (_activeCopied[w] & (1UL << bit)) != 0;
                bool notCopied = (_activeNotCopied[w] & (1UL << bit)) != 0;
                if ((copied && refcount != 1) || (notCopied && refcount == 1)) return true;
            }
        }
        return false;
    }

    /// <summary>Checks (and in memory repairs) the COPIED flags of one L2 table; returns the entries changed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int CheckCopiedFlagsInL2(long l2Offset, Span<byte> table, long weight, bool repair, List<Mismatch> mismatches)
    {
        int entrySize = _img.L2EntrySize;
        bool extended = _img.ExtendedL2;
        bool dataFile = _img.HasDataFile;
        int entries = _img.L2Entries;
        int clusterBits = ClusterBits;
        // Without mismatches the stored refcounts are the counted ones: read them from the array directly.
        bool direct = mismatches.Count == 0 && _errorBlocks.Count == 0;
        int dirty = 0;
        for (int j = 0; j < entries; j++)
        {
            ulong entry = ReadL2(table, j, entrySize);
            if (entry == 0)
            {
                int nonZero = table[(j * entrySize)..].IndexOfAnyExcept((byte)0);
                if (nonZero < 0) break;
                int skip = nonZero / entrySize;
                if (skip > 0) j += skip - 1;
                continue;
            }
            if ((entry & CompressedFlag) != 0) continue;
            ulong dataOffset = entry & L2OffsetMask;
            bool allocated;
            if (!extended && (entry & ZeroFlag) != 0) allocated = dataOffset != 0;
            else allocated = dataOffset != 0 || (dataFile && (entry & CopiedFlag) != 0);
            if (!allocated) continue;
            long cluster = (long)(dataOffset >> clusterBits);
            ulong refcount;
            if (dataFile) refcount = 1;
            else if (direct && cluster < _nbClusters) refcount = _refs.Get(cluster);
            else
            {
                ulong? stored = StoredRefcount(cluster, mismatches);
                if (stored is null) continue;
                refcount = stored.Value;
            }
            if ((refcount == 1) == ((entry & CopiedFlag) != 0)) continue;

            long at = l2Offset + (long)j * entrySize;
            string message = $"OFLAG_COPIED data cluster: l2_entry={BareHex(entry)} refcount={refcount}";
            if (repair)
            {
                BinaryPrimitives.WriteUInt64BigEndian(table[(j * entrySize)..], refcount == 1 ? entry | CopiedFlag : entry & ~CopiedFlag);
                dirty++;
                Report(CheckFindingKind.CopiedFlag, at, message, repaired: true);
            }
            else
            {
                // Each reference to this table would find it again.
                _res.Corruptions += weight;
                Report(CheckFindingKind.CopiedFlag, at, weight == 1 ? message : $"{message} ({weight} times)");
            }
        }
        return dirty;
    }
}
