using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Qcow2.Volume.Check;

internal sealed partial class CheckRun
{
    /// <summary>
    /// Replaces the refcount table and every refcount block with ones built from the counted
    /// references. The new structure goes to clusters nothing uses (see <see cref="WriteRefcountStructure"/>),
    /// is written and flushed, and only then does the header switch to it (one write of the table
    /// offset and size): a crash before the switch leaves the old structure in charge and the new
    /// clusters as mere leaks.
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
        if (_freedStructure is not null)
        {
            foreach (var (cluster, (before, after)) in _freedStructure)
                Report(CheckFindingKind.Leak, cluster << ClusterBits, $"cluster {cluster} refcount={before} reference={after}", repaired: true);
            _freedStructure.Clear();
        }
        _res.FindingsOmitted += _freedStructureOmitted;
    }

    /// <summary>Clusters of the replaced refcount structure (refcount before → after), at most MaxFindings.</summary>
    // Created only when a rebuild happens: a clean check never pays for the JIT of this instantiation.
    private SortedDictionary<long, (ulong Before, ulong After)>? _freedStructure;
    private long _freedStructureOmitted;

    /// <summary>
    /// Writes a refcount table and blocks describing the counted references, then switches the header
    /// to them. Returns how many past-the-end corruptions this resolved (their regions are now inside
    /// the file and counted).
    /// </summary>
    /// <remarks>
    /// Placement is QEMU's (so the repaired image has qemu-img's layout and end offset): each refcount
    /// block goes to the first free cluster at or after the clusters it describes, the table to the
    /// first free run after that, searching from the start of the file; what does not fit is appended.
    /// Free clusters are ones no valid reference uses, and the old table and blocks stay counted while the
    /// new ones are placed, so nothing in use is overwritten before the header switches: a crash
    /// before the switch leaves the old structure in charge and the new clusters as mere leaks.
    /// </remarks>
    private long WriteRefcountStructure()
    {
        int perBlockBits = _refs.EntriesPerBlockBits;
        long perBlock = 1L << perBlockBits;
        // Appended clusters go after the end of the file and after every region the metadata refers
        // to, even past the end of the file (a table lost to truncation must not come back to life
        // reading our new clusters).
        long appendStart = FirstUnreferencedCluster();

        // Regions referenced past the end of the file that the new end of the file will cover.
        long absorbed = 0;
        long nb = _nbClusters;
        if (_pastEndRegions.Count > 0 && _refs.TryEnsure(appendStart))
        {
            foreach (var (offset, length, weight, persistent) in _pastEndRegions)
            {
                if (offset + (ulong)length > (ulong)appendStart << ClusterBits) continue;
                long first = (long)(offset >> ClusterBits), last = (long)((offset + (ulong)length - 1) >> ClusterBits);
                for (long k = first; k <= last; k++)
                {
                    ulong r = _refs.Get(k);
                    _refs.Set(k, (ulong)weight > _refs.MaxValue - r ? _refs.MaxValue : r + (ulong)weight);
                }
                nb = Math.Max(nb, last + 1);
                absorbed += weight;
                if (persistent) _persistentCorruptions -= weight;
            }
            _pastEndRegions.Clear();
        }

        var table = new List<long>();   // block index -> new block cluster (0: none)
        var placed = new List<long>();  // clusters of the new structure

        long Allocate(long count, ref long firstFree)
        {
            long c = firstFree, contiguous = 0;
            bool firstGap = true;
            for (; c < nb && contiguous < count; c++)
            {
                if (_refs.Get(c) == 0)
                {
                    contiguous++;
                    if (firstGap) { firstFree = c; firstGap = false; }
                }
                else contiguous = 0;
            }
            if (contiguous < count)
            {
                if (c < appendStart) { c = appendStart; contiguous = 0; }
                long newNb = c + count - contiguous;
                if (!_refs.TryEnsure(newNb))
                    throw Fail("File too large", CheckFindingKind.RefcountStructure, -1, "the rebuilt refcount structure does not fit the memory limit");
                nb = newNb;
            }
            c -= contiguous;
            for (long i = 0; i < count; i++) _refs.Set(c + i, 1);
            return c;
        }

        // Gives every block with a used cluster in [first, end) a place; true when the table grew.
        bool PlaceBlocks(long first, long end)
        {
            long firstFree = 0;
            bool grown = false;
            for (long cluster = first; cluster < end && cluster < nb; cluster++)
            {
                if (_refs.Get(cluster) == 0) continue;
                long b = cluster >> perBlockBits, blockStart = b << perBlockBits;
                if (b >= table.Count || table[(int)b] == 0)
                {
                    if (firstFree < blockStart) firstFree = blockStart;
                    long at = Allocate(1, ref firstFree);
                    placed.Add(at);
                    if (at >= end) end = at + 1;
                    if (b >= table.Count)
                    {
                        long entries = (((b + 1) * 8 + ClusterSize - 1) >> ClusterBits) << (ClusterBits - 3);
                        if (entries * 8 > CheckImage.MaxRefcountTableBytes)
                            throw Fail("File too large", CheckFindingKind.RefcountStructure, -1, "the rebuilt refcount table would be too large");
                        while (table.Count < entries) table.Add(0);
                        grown = true;
                    }
                    table[(int)b] = at;
                }
                cluster = blockStart + perBlock - 1;
            }
            return grown;
        }

        PlaceBlocks(0, nb);
        if (table.Count == 0) table.AddRange(new long[ClusterSize / 8]);
        long tableStart, tableClusters;
        while (true)
        {
            tableClusters = ((long)table.Count * 8 + ClusterSize - 1) >> ClusterBits;
            long firstFree = 0;
            tableStart = Allocate(tableClusters, ref firstFree);
            if (!PlaceBlocks(tableStart, tableStart + tableClusters)) break;
            for (long k = tableStart; k < tableStart + tableClusters; k++) _refs.Set(k, 0);
        }

        // Blocks first (the old table and blocks still counted in them), then the table.
        var tableBytes = new byte[tableClusters << ClusterBits];
        for (int b = 0; b < table.Count; b++)
        {
            if (table[b] == 0) continue;
            _storage.Write(table[b] << ClusterBits, _refs.Block(b));
            BinaryPrimitives.WriteUInt64BigEndian(tableBytes.AsSpan(b * 8), (ulong)table[b] << ClusterBits);
        }
        long tableOffset = tableStart << ClusterBits;
        _storage.Write(tableOffset, tableBytes);
        _storage.Flush();

        Span<byte> pointer = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(pointer, (ulong)tableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(pointer[8..], (uint)tableClusters);
        _storage.Write(CheckImage.RefcountTableHeaderOffset, pointer);
        _storage.Flush();

        // Only now that the new structure is in charge are the old table and blocks freed in it
        // (as qemu-img frees them after its rebuild): a power cut before this leaves them leaked.
        var touched = new SortedSet<long>();
        _freedStructure ??= new();
        foreach (var (start, count) in _structureIncrements)
            for (long k = start; k < start + count; k++)
            {
                ulong r = _refs.Get(k);
                if (r == 0) continue;
                _refs.Set(k, r - 1);
                touched.Add(k >> perBlockBits);
                if (_freedStructure.TryGetValue(k, out var seen)) _freedStructure[k] = (seen.Before, r - 1);
                else if (_freedStructure.Count < _maxFindings) _freedStructure[k] = (r, r - 1);
                else _freedStructureOmitted++;
            }
        foreach (long b in touched)
            if (b < table.Count && table[(int)b] != 0) _storage.Write(table[(int)b] << ClusterBits, _refs.Block(b));
        if (touched.Count > 0) _storage.Flush();

        _refcountTableOffset = tableOffset;
        _refcountTable = new ulong[tableBytes.Length / 8];
        for (int i = 0; i < _refcountTable.Length; i++) _refcountTable[i] = BinaryPrimitives.ReadUInt64BigEndian(tableBytes.AsSpan(i * 8));
        _nbClusters = Math.Max(nb, (_storage.Length + ClusterSize - 1) >> ClusterBits);
        _fileLength = _storage.Length;
        _res.RefcountStructureRebuilt = true;
        _structureIncrements.Clear();
        foreach (long k in placed) _structureIncrements.Add((k, 1));
        _structureIncrements.Add((tableStart, tableClusters));
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
        bool l1Writable = L1TableWritable(_img.L1Offset, _img.L1Size);
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
                if (repair && l1Writable)
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
            // Never write through a table at an unaligned offset (its L1 entry is reported corrupt).
            bool aligned = (offsets[index] & (ClusterSize - 1)) == 0 && ProtectedMetadataAt((ulong)offsets[index]) is null;
            int dirty = CheckCopiedFlagsInL2(offsets[index], table, weight, repair && aligned, mismatches);
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
