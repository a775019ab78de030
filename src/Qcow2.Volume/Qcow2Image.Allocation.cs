using System.Buffers.Binary;
using Qcow2.Spans;

namespace Qcow2.Volume;

// Host cluster allocation and refcounts. Every method here runs under the metadata lock.
public sealed partial class Qcow2Image
{
    /// <summary>No cluster below this index is free (a search starts here).</summary>
    private long _freeClusterHint;

    private int RefcountOrder => _rc.RefcountOrder;

    /// <summary>The refcount of a host cluster; 0 when no refcount block covers it.</summary>
    private ulong GetRefcount(long clusterIndex)
    {
        long t = _rc.TableIndex(clusterIndex);
        if (t >= _refTable.Length) return 0;
        long block = (long)(_refTable[t] & RefcountTableEntry.OffsetMask);
        if (block == 0) return 0;
        int slot = _refCache.Get(block, _file);
        return new ReadOnlyRefcountBlock(_refCache.Entry(slot), RefcountOrder).Get(_rc.BlockIndex(clusterIndex));
    }

    /// <summary>Adds <paramref name="delta"/> to a cluster's refcount, creating its refcount block when needed.</summary>
    private void AddToRefcount(long clusterIndex, long delta)
    {
        long block;
        if (delta < 0)
        {
            // A cluster being freed must already have a refcount: no block means it is 0, and an
            // entry pointing there (a damaged L2 entry) must not make the table grow to reach it.
            long t = _rc.TableIndex(clusterIndex);
            block = t < _refTable.Length ? (long)(_refTable[t] & RefcountTableEntry.OffsetMask) : 0;
            if (block == 0)
                MarkCorruptAndThrow("refcount", clusterIndex << _clusterBits, 0,
                    $"Cluster {clusterIndex} is being freed but has no refcount.");
        }
        else
        {
            block = EnsureRefcountBlock(clusterIndex);
        }
        int slot = _refCache.Get(block, _file);
        var rb = new RefcountBlock(_refCache.Entry(slot), RefcountOrder);
        var status = rb.TryAdd(_rc.BlockIndex(clusterIndex), delta, out ulong value);
        if (status != RefcountUpdateStatus.Ok)
        {
            if (status == RefcountUpdateStatus.Overflow)
                throw new Qcow2UnsupportedImageException("refcount_bits",
                    $"The refcount of cluster {clusterIndex} would exceed the {_rc.RefcountBits}-bit refcount width.");
            MarkCorruptAndThrow("refcount", block, rb.Get(_rc.BlockIndex(clusterIndex)),
                $"The refcount of cluster {clusterIndex} would drop below zero.");
        }
        _refCache.MarkDirty(slot);
        if (value == 0)
        {
            _metadataClusters.Remove(clusterIndex);
            if (clusterIndex < _freeClusterHint) _freeClusterHint = clusterIndex;
        }
    }

    /// <summary>The host offset of the refcount block covering <paramref name="clusterIndex"/>, allocating it (and growing the table) when needed.</summary>
    private long EnsureRefcountBlock(long clusterIndex)
    {
        long t = _rc.TableIndex(clusterIndex);
        while (true)
        {
            if (t >= _refTable.Length) GrowRefcountTable(t + 1);
            long existing = (long)(_refTable[t] & RefcountTableEntry.OffsetMask);
            if (existing != 0) return existing;

            long candidate = FindFreeRun(1);
            long block = candidate << _clusterBits;
            if (_rc.TableIndex(candidate) == t)
            {
                // The new block describes itself: it covers its own cluster.
                int slot = _refCache.InsertZeroed(block);
                new RefcountBlock(_refCache.Entry(slot), RefcountOrder).TrySet(_rc.BlockIndex(candidate), 1);
            }
            else
            {
                // The block lies in another block's range: that block must exist first, and
                // creating it may have taken the candidate cluster.
                EnsureRefcountBlock(candidate);
                if (GetRefcount(candidate) != 0) continue;
                AddToRefcount(candidate, 1);
                _refCache.InsertZeroed(block);
            }
            // The new block is zero on disk before any table entry points at it.
            WriteZeroClusters(block, 1);
            _metadataClusters.Add(candidate);
            _allocatedEnd = Math.Max(_allocatedEnd, candidate + 1);
            _refTable[t] = (ulong)block;
            MarkRefTableDirty(t);
            return block;
        }
    }

    /// <summary>
    /// Grows the refcount table to at least <paramref name="minEntries"/>, relocating it to the end
    /// of the image with the refcount blocks that its own clusters need, then switching the header.
    /// </summary>
    private void GrowRefcountTable(long minEntries)
    {
        int perCluster = _clusterSize / 8;
        if (minEntries > Qcow2Limits.MaxRefcountTableEntries)
            throw new Qcow2UnsupportedImageException("refcount_table", "The refcount table would exceed QEMU's 8 MiB limit.");
        long wantEntries = Math.Min(Math.Max(minEntries, (long)_refTable.Length * 3 / 2 + perCluster), Qcow2Limits.MaxRefcountTableEntries);
        long end = Math.Max(HostEndCluster(), 1);
        long tableClusters;
        long blocks;
        while (true)
        {
            // Lay out [new table][new blocks] at the end, enough blocks to cover the table and themselves.
            tableClusters = (wantEntries + perCluster - 1) / perCluster;
            blocks = 0;
            for (int iteration = 0; iteration < 64; iteration++)
            {
                long lastCluster = end + tableClusters + blocks - 1;
                long needEntries = Math.Max(wantEntries, _rc.TableIndex(lastCluster) + 1);
                tableClusters = (needEntries + perCluster - 1) / perCluster;
                long newBlocks = 0;
                for (long t = _rc.TableIndex(end); t <= _rc.TableIndex(end + tableClusters + blocks - 1); t++)
                    if (t >= _refTable.Length || _refTable[t] == 0) newBlocks++;
                if (newBlocks == blocks) break;
                blocks = newBlocks;
            }
            // Clusters past the end of the file may still carry a refcount (a write torn by a crash):
            // never place the table over them.
            long inUse = -1;
            for (long c = end; c < end + tableClusters + blocks; c++)
                if (GetRefcount(c) != 0) inUse = c;
            if (inUse < 0) break;
            end = inUse + 1;
        }
        long entries = tableClusters * perCluster;
        if (entries * 8 > Qcow2Limits.MaxRefcountTableSize)
            throw new Qcow2UnsupportedImageException("refcount_table", "The refcount table would exceed QEMU's 8 MiB limit.");

        var newTable = new ulong[entries];
        Array.Copy(_refTable, newTable, _refTable.Length);
        long tableOffset = end << _clusterBits;
        long nextBlock = end + tableClusters;
        long oldOffset = _refTableOffset;
        int oldClusters = _refTableClusters;

        // Install the table in memory first so that refcount updates below find the new blocks.
        _refTable = newTable;
        for (long t = _rc.TableIndex(end); t <= _rc.TableIndex(end + tableClusters + blocks - 1); t++)
        {
            if (newTable[t] != 0) continue;
            long block = nextBlock++ << _clusterBits;
            _refCache.InsertZeroed(block);
            WriteZeroClusters(block, 1);
            newTable[t] = (ulong)block;
            _metadataClusters.Add(block >> _clusterBits);
        }
        _allocatedEnd = Math.Max(_allocatedEnd, nextBlock);
        for (long c = end; c < nextBlock; c++) AddToRefcount(c, 1);
        for (long c = end; c < end + tableClusters; c++) _metadataClusters.Add(c);

        // Blocks, then the new table, then the header: each durable before the next refers to it.
        _refCache.WriteBackAll();
        _file.Flush();
        // The new table holds every entry, including any not yet written to the old one.
        if (_refTableDirtyEnd >= 0) { _refTableDirtyStart = int.MaxValue; _refTableDirtyEnd = -1; }
        WriteTableRange(tableOffset, newTable, 0, newTable.Length - 1);
        _file.Flush();
        Span<byte> h = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(h, (ulong)tableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(h[8..], (uint)tableClusters);
        WriteHeaderBytes(48, h);
        _file.Flush();
        _refTableOffset = tableOffset;
        _refTableClusters = (int)tableClusters;

        // The old table is no longer referenced by the header on disk.
        if (oldOffset != 0)
        {
            for (long c = 0; c < oldClusters; c++)
            {
                _metadataClusters.Remove((oldOffset >> _clusterBits) + c);
                AddToRefcount((oldOffset >> _clusterBits) + c, -1);
            }
        }
    }

    /// <summary>One past the last host cluster in use or covered by the file.</summary>
    private long HostEndCluster() => Math.Max(_allocatedEnd, (_file.Length + _clusterSize - 1) >> _clusterBits);

    /// <summary>One past the highest cluster allocated in this session (its data may not be written yet).</summary>
    private long _allocatedEnd;

    /// <summary>The first run of <paramref name="count"/> free host clusters at or after the hint.</summary>
    private long FindFreeRun(int count)
    {
        long c = Math.Max(_freeClusterHint, 1);
        long runStart = c;
        long run = 0;
        int perBlock = _rc.EntriesPerBlock;
        while (true)
        {
            long t = _rc.TableIndex(c);
            long block = t < _refTable.Length ? (long)(_refTable[t] & RefcountTableEntry.OffsetMask) : 0;
            int index = _rc.BlockIndex(c);
            if (block == 0)
            {
                // No block: every cluster it would cover is free.
                if (run == 0) runStart = c;
                run += perBlock - index;
                if (run >= count) return runStart;
                c += perBlock - index;
                continue;
            }
            int slot = _refCache.Get(block, _file);
            var data = new ReadOnlyRefcountBlock(_refCache.Entry(slot), RefcountOrder);
            while (index < perBlock)
            {
                if (run == 0)
                {
                    int z = data.IndexOfZero(index);
                    if (z < 0) { index = perBlock; break; }
                    index = z;
                    runStart = (t * perBlock) + z;
                }
                int nz = data.IndexOfNonZero(index);
                int freeEnd = nz < 0 ? perBlock : nz;
                run += freeEnd - index;
                if (run >= count) return runStart;
                if (nz < 0) { index = perBlock; break; }
                run = 0;
                index = nz;
            }
            c = (t + 1) * perBlock;
        }
    }

    /// <summary>Allocates <paramref name="count"/> contiguous host clusters (refcount 1) and returns the host offset of the first.</summary>
    private long AllocateClusters(int count)
    {
        while (true)
        {
            long start = FindFreeRun(count);
            for (long c = start; c < start + count; c += _rc.EntriesPerBlock - _rc.BlockIndex(c))
                EnsureRefcountBlock(c);
            EnsureRefcountBlock(start + count - 1);
            bool stillFree = true;
            for (long c = start; c < start + count && stillFree; c++)
                stillFree = GetRefcount(c) == 0;
            if (!stillFree) continue;
            for (long c = start; c < start + count; c++)
            {
                if (_metadataClusters.Contains(c))
                    MarkCorruptAndThrow("refcount", c << _clusterBits, 0,
                        $"Metadata cluster {c} has refcount 0 and was about to be allocated.");
            }
            for (long c = start; c < start + count; c++) AddToRefcount(c, 1);
            if (start <= Math.Max(_freeClusterHint, 1)) _freeClusterHint = start + count;
            _allocatedEnd = Math.Max(_allocatedEnd, start + count);
            return start << _clusterBits;
        }
    }

    /// <summary>Frees clusters once the references to them are gone from the disk (after the next L2/L1 write-back).</summary>
    private void QueueFree(long hostOffset, int clusters)
    {
        if (_dataFile is not null) return;
        QueueFreeClusters(hostOffset >> _clusterBits, clusters);
    }

    /// <summary>Queues clusters for freeing after checking that they are in use (a damaged entry is caught here, not at the next flush).</summary>
    private void QueueFreeClusters(long firstCluster, int count)
    {
        for (long c = firstCluster; c < firstCluster + count; c++)
        {
            if (GetRefcount(c) == 0)
                MarkCorruptAndThrow("L2 entry", c << _clusterBits, 0,
                    $"An entry refers to host cluster {c}, which has refcount 0 (or lies outside the refcounted area).");
        }
        _pendingFrees.Add((firstCluster, count));
    }

    /// <summary>Queues the host clusters held by an L2 entry being replaced (caller holds the lock).</summary>
    private void QueueFreeOfEntry(ulong raw)
    {
        if ((raw & Mapping.L2Bits.Compressed) != 0)
        {
            var d = CompressedDescriptor.Decode(raw, _clusterBits);
            long first = d.HostOffset >> _clusterBits;
            long last = (d.HostOffset + d.HostLength - 1) >> _clusterBits;
            QueueFreeClusters(first, (int)(last - first + 1));
            return;
        }
        long host = (long)(raw & Mapping.L2Bits.OffsetMask);
        if (host != 0) QueueFree(host, 1);
    }

    private void WriteZeroClusters(long hostOffset, int clusters)
    {
        byte[] zero = System.Buffers.ArrayPool<byte>.Shared.Rent(_clusterSize);
        try
        {
            zero.AsSpan(0, _clusterSize).Clear();
            for (int i = 0; i < clusters; i++) _file.Write(hostOffset + ((long)i << _clusterBits), zero.AsSpan(0, _clusterSize));
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(zero);
        }
    }
}
