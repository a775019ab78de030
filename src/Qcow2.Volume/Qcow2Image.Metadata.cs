using System.Buffers.Binary;
using Qcow2.Spans;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume;

// Metadata write-back and its crash-safe order.
//
// Metadata changes are made in memory (L1, refcount table) and in the two caches, and reach the
// disk in this order, with an fsync between the steps:
//   1. guest data (the image file and the external data file),
//   2. refcount blocks, then refcount table entries pointing at new blocks,
//   3. L2 slices,
//   4. L1 entries,
//   5. refcount decrements for clusters no longer referenced (deferred until the references
//      are gone from the disk), written back like step 2,
//   6. header fields (the dirty bit last).
// So after a crash the image can only leak clusters: a cluster is never referenced by an L2 or
// L1 entry on disk before its refcount is, nor freed while a reference to it is still on disk.
// An L2 slice evicted from the cache goes through steps 1-2 first. With lazy refcounts the dirty
// bit is set before the first change and step 2 may lag behind step 3 (the next read-write open
// repairs the refcounts, as the spec allows).
public sealed partial class Qcow2Image
{
    private const int IncompatibleFeaturesOffset = 72;

    private readonly HashSet<long> _metadataClusters = [];
    private readonly List<(long Cluster, int Count)> _pendingFrees = [];
    private int _l1DirtyStart = int.MaxValue;
    private int _l1DirtyEnd = -1;
    private int _refTableDirtyStart = int.MaxValue;
    private int _refTableDirtyEnd = -1;
    private bool _lazyRefcounts;
    private bool _dirtyBitSetByUs;
    private volatile bool _dataWrittenSinceSync;

    /// <summary>Reads and writes whose host mapping may still be in use (see <see cref="FlushMetadataLocked"/>).</summary>
    private int _activeDataIo;

    /// <summary>Frees queued before an intermediate flush is forced.</summary>
    private const int MaxPendingFrees = 4096;

    /// <summary>Things done once when an image is opened for writing.</summary>
    private void PrepareForWriting()
    {
        _lazyRefcounts = _version >= 3 && (_compatible & (ulong)CompatibleFeatures.LazyRefcounts) != 0;
        _freeClusterHint = 0;

        // An implementation may only write to an image with unknown autoclear features after
        // clearing them (spec, autoclear_features).
        ulong unknownAutoclear = FeatureBits.UnknownAutoclear(_autoclear);
        if (unknownAutoclear != 0)
        {
            _autoclear &= ~unknownAutoclear;
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(b, _autoclear);
            WriteHeaderBytes(88, b);
            _file.Flush();
        }

        // Bitmaps that track writes ('auto') cannot be kept in sync by this toolkit: mark them
        // in_use, as QEMU does while it holds them in memory, so that every reader knows they no
        // longer match the disk. Disabled bitmaps stay valid: writes do not concern them.
        if ((_autoclear & (ulong)AutoclearFeatures.Bitmaps) != 0)
        {
            bool changed = false;
            Span<byte> b = stackalloc byte[4];
            for (int i = 0; i < _bitmaps.Count; i++)
            {
                var bm = _bitmaps[i];
                if (bm.Auto && !bm.InUse)
                {
                    uint flags = bm.Flags | Qcow2Constants.BitmapFlagInUse;
                    BinaryPrimitives.WriteUInt32BigEndian(b, flags);
                    _file.Write(_bitmapFlagOffsets[i], b);
                    _bitmaps[i] = bm with { Flags = flags };
                    changed = true;
                }
            }
            if (changed) _file.Flush();
        }

        BuildMetadataClusterSet();
    }

    /// <summary>
    /// The dirty bit is set on a read-write open: repair the refcounts first. The repair runs on an
    /// in-memory overlay of the file and reaches the file only when it is clean, so a refused open
    /// leaves the file as it was (dirty bit set, still known to need a repair). Its writes then go
    /// to the file with the header cluster last (the refcount and snapshot table pointers and the
    /// cleared dirty bit in one write): a failure part-way leaves the dirty bit set, and the next
    /// read-write open repairs again. The caller re-reads the whole header afterwards: a refcount
    /// rebuild moves the refcount table, a snapshot table repair moves that table.
    /// </summary>
    /// <exception cref="Qcow2CorruptImageException">The dirty image could not be repaired (the check failed, or corruptions or check errors remain).</exception>
    /// <exception cref="IOException">Reading the file failed, or writing the repair to it failed (then with the same advice).</exception>
    private void RepairDirtyImage()
    {
        var overlay = new RepairOverlay(_file, _clusterSize);
        // Single call site of the checker's repair; it rewrites refcounts, here on the overlay.
        var result = Check.Qcow2Checker.Check(overlay, new Check.CheckOptions { Repair = Check.RepairMode.All });
        if (result.FailureMessage is not null || result.Corruptions > 0 || result.CheckErrors > 0)
        {
            ulong dirty = BinaryPrimitives.ReadUInt64BigEndian(_headerBuffer.AsSpan(IncompatibleFeaturesOffset, 8));
            string why = result.FailureMessage is not null
                ? $"the check failed ({result.FailureMessage})"
                : $"{result.Corruptions} corruption(s) and {result.CheckErrors} check error(s) remain after the repair";
            throw new Qcow2CorruptImageException("header.incompatible_features", IncompatibleFeaturesOffset, dirty, RepairRefusal(why));
        }
        try
        {
            overlay.WriteToInner();
        }
        catch (IOException e)
        {
            throw new IOException(RepairRefusal($"writing the repair failed ({e.Message})"), e);
        }
        _file.Read(0, _headerBuffer);
        ulong incompatible = BinaryPrimitives.ReadUInt64BigEndian(_headerBuffer.AsSpan(IncompatibleFeaturesOffset, 8));
        if ((incompatible & (ulong)IncompatibleFeatures.Dirty) != 0)
        {
            // A clean repair clears the bit itself; this covers a repair pass that left it to the double check.
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(b, incompatible & ~(ulong)IncompatibleFeatures.Dirty);
            WriteHeaderBytes(IncompatibleFeaturesOffset, b);
            _file.Flush();
        }
    }

    private static string RepairRefusal(string why) =>
        $"Could not repair dirty image: {why}. Open it read-only, or repair it with a check.";

    /// <summary>
    /// The image file as the dirty-image repair sees it: reads pass through to the file except where
    /// the repair wrote, and the writes stay in memory (whole clusters, copied on first write) until
    /// <see cref="WriteToInner"/>. Thread-safe: the checker reads ahead on another thread while it
    /// repairs tables.
    /// </summary>
    private sealed class RepairOverlay(IStorage inner, int pageSize) : IStorage
    {
        private readonly Lock _lock = new();
        private readonly Dictionary<long, byte[]> _pages = [];
        private long _innerVisible = inner.Length;   // below this, bytes not written come from the file
        private long _length = inner.Length;

        public long Length
        {
            get { lock (_lock) return _length; }
        }

        public bool CanWrite => true;

        public string Name => inner.Name;

        public int Read(long offset, Span<byte> destination)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(offset);
            lock (_lock) return ReadLocked(offset, destination);
        }

        private int ReadLocked(long offset, Span<byte> destination)
        {
            if (offset >= _length) return 0;
            int n = (int)Math.Min(destination.Length, _length - offset);
            int done = 0;
            while (done < n)
            {
                long pos = offset + done;
                long page = pos / pageSize;
                int inPage = (int)(pos - page * pageSize);
                int chunk = Math.Min(n - done, pageSize - inPage);
                var dst = destination.Slice(done, chunk);
                if (_pages.TryGetValue(page, out var bytes))
                {
                    bytes.AsSpan(inPage, chunk).CopyTo(dst);
                }
                else
                {
                    // Pages the repair did not write, as far as they run: one read of the file.
                    long runEnd = (page + 1) * pageSize;
                    while (runEnd < offset + n && !_pages.ContainsKey(runEnd / pageSize)) runEnd += pageSize;
                    chunk = (int)(Math.Min(runEnd, offset + n) - pos);
                    dst = destination.Slice(done, chunk);
                    ReadInner(pos, dst);
                }
                done += chunk;
            }
            return n;
        }

        /// <summary>Reads the file as it was; past its end (the overlay grew) zeros.</summary>
        private void ReadInner(long pos, Span<byte> dst)
        {
            int got = pos >= _innerVisible ? 0 : inner.Read(pos, dst[..(int)Math.Min(dst.Length, _innerVisible - pos)]);
            dst[got..].Clear();
        }

        public ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult(Read(offset, destination.Span));

        public void Write(long offset, ReadOnlySpan<byte> source)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(offset);
            lock (_lock) WriteLocked(offset, source);
        }

        private void WriteLocked(long offset, ReadOnlySpan<byte> source)
        {
            int done = 0;
            while (done < source.Length)
            {
                long pos = offset + done;
                long page = pos / pageSize;
                int inPage = (int)(pos - page * pageSize);
                int chunk = Math.Min(source.Length - done, pageSize - inPage);
                if (!_pages.TryGetValue(page, out var bytes))
                {
                    bytes = new byte[pageSize];
                    ReadInner(page * pageSize, bytes);
                    _pages.Add(page, bytes);
                }
                source.Slice(done, chunk).CopyTo(bytes.AsSpan(inPage));
                done += chunk;
            }
            _length = Math.Max(_length, offset + source.Length);
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            Write(offset, source.Span);
            return ValueTask.CompletedTask;
        }

        public void Flush()
        {
        }

        public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public void SetLength(long length)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(length);
            lock (_lock) SetLengthLocked(length);
        }

        private void SetLengthLocked(long length)
        {
            if (length < _length)
            {
                // What lies past the new end reads as zeros if the file grows again.
                foreach (long page in new List<long>(_pages.Keys))
                {
                    long start = page * pageSize;
                    if (start >= length) _pages.Remove(page);
                    else if (start + pageSize > length) _pages[page].AsSpan((int)(length - start)).Clear();
                }
                _innerVisible = Math.Min(_innerVisible, length);
            }
            _length = length;
        }

        /// <summary>
        /// Writes what the repair changed to the file: every changed cluster but the header's (the
        /// file's new length first when it grew, last when it shrank), a flush, then the header
        /// cluster and a flush.
        /// </summary>
        public void WriteToInner()
        {
            lock (_lock) WriteToInnerLocked();
        }

        private void WriteToInnerLocked()
        {
            if (_pages.Count == 0 && _length == inner.Length && _innerVisible == inner.Length) return;
            // Cut first what was cut before the file grew again (it reads as zeros), then grow.
            if (_innerVisible < inner.Length && _length > _innerVisible) inner.SetLength(_innerVisible);
            if (_length > inner.Length) inner.SetLength(_length);
            var order = new List<long>(_pages.Keys);
            order.Sort();
            foreach (long page in order)
            {
                if (page != 0) WritePage(page);
            }
            if (_length < inner.Length) inner.SetLength(_length);
            inner.Flush();
            if (_pages.ContainsKey(0)) WritePage(0);
            inner.Flush();
        }

        private void WritePage(long page)
        {
            long at = page * pageSize;
            int n = (int)Math.Min(pageSize, _length - at);
            if (n > 0) inner.Write(at, _pages[page].AsSpan(0, n));
        }

        public void Dispose()
        {
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>Clusters holding metadata, for the pre-write overlap check (QEMU's "cached" set).</summary>
    private void BuildMetadataClusterSet()
    {
        AddMetadataRange(0, _clusterSize);
        AddMetadataRange(_l1Offset, _l1.Length * 8L);
        AddMetadataRange(_refTableOffset, (long)_refTableClusters * _clusterSize);
        foreach (ulong e in _refTable)
        {
            long b = (long)(e & RefcountTableEntry.OffsetMask);
            if (b != 0) _metadataClusters.Add(b >> _clusterBits);
        }
        foreach (ulong e in _l1)
        {
            long l2 = (long)(e & L1Entry.OffsetMask);
            if (l2 != 0) _metadataClusters.Add(l2 >> _clusterBits);
        }
        if (_snapshots.Count > 0)
        {
            AddMetadataRange(_snapshotsOffset, _snapshotTableLength);
            foreach (var s in _snapshots) AddMetadataRange(s.L1TableOffset, s.L1Size * 8L);
        }
        if (_bitmaps.Count > 0) AddMetadataRange(_bitmapDirectoryOffset, 1);
    }

    private void AddMetadataRange(long offset, long length)
    {
        if (offset <= 0 && length <= 0) return;
        long first = offset >> _clusterBits;
        long last = (offset + Math.Max(length, 1) - 1) >> _clusterBits;
        for (long c = first; c <= last && c - first < (1 << 22); c++) _metadataClusters.Add(c);
    }

    /// <summary>The pre-write overlap check: a data write into a metadata cluster means the image is corrupt.</summary>
    private void CheckNoMetadataOverlap(long hostOffset, long length)
    {
        if (_dataFile is not null) return;
        long first = hostOffset >> _clusterBits;
        long last = (hostOffset + length - 1) >> _clusterBits;
        // A cluster past what the refcount table covers has refcount 0: no entry may point there.
        if (last >= (long)_refTable.Length * _rc.EntriesPerBlock)
            MarkCorruptAndThrow("data write", hostOffset, (ulong)hostOffset,
                $"A data write to host offset 0x{hostOffset:x} lies past the refcounted area of the image.");
        for (long c = first; c <= last; c++)
        {
            if (_metadataClusters.Contains(c))
                MarkCorruptAndThrow("data write", hostOffset, (ulong)hostOffset,
                    $"A data write to host offset 0x{hostOffset:x} would overwrite metadata (cluster {c}).");
        }
    }

    /// <summary>Marks the image corrupt on disk, makes it read-only, and throws.</summary>
    private void MarkCorruptAndThrow(string structure, long offset, ulong raw, string message)
    {
        if (!_corrupt && !_readOnly)
        {
            _corrupt = true;
            try
            {
                _incompatible |= (ulong)IncompatibleFeatures.Corrupt;
                if (_version >= 3)
                {
                    Span<byte> b = stackalloc byte[8];
                    BinaryPrimitives.WriteUInt64BigEndian(b, _incompatible);
                    WriteHeaderBytes(IncompatibleFeaturesOffset, b);
                    _file.Flush();
                }
            }
            catch (IOException)
            {
                // The image is read-only from now on anyway.
            }
        }
        _corrupt = true;
        _readOnly = true;
        throw new Qcow2CorruptImageException(structure, offset, raw, message + " The image is now marked corrupt.");
    }

    private void WriteHeaderBytes(int offset, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(_headerBuffer.AsSpan(offset));
        _file.Write(offset, bytes);
    }

    /// <summary>Before the first metadata change with lazy refcounts: set the dirty bit durably.</summary>
    private void EnsureDirtyBitForLazyRefcounts()
    {
        if (!_lazyRefcounts || _dirtyBitSetByUs) return;
        _incompatible |= (ulong)IncompatibleFeatures.Dirty;
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, _incompatible);
        WriteHeaderBytes(IncompatibleFeaturesOffset, b);
        _file.Flush();
        _dirtyBitSetByUs = true;
    }

    private void MarkL1Dirty(long index)
    {
        _l1DirtyStart = (int)Math.Min(_l1DirtyStart, index);
        _l1DirtyEnd = (int)Math.Max(_l1DirtyEnd, index);
    }

    private void MarkRefTableDirty(long index)
    {
        _refTableDirtyStart = (int)Math.Min(_refTableDirtyStart, index);
        _refTableDirtyEnd = (int)Math.Max(_refTableDirtyEnd, index);
    }

    /// <summary>Eviction of a dirty refcount block: refcounts may reach the disk at any time.</summary>
    private void WriteBackRefcountBlock(long key, ReadOnlySpan<byte> data) => _file.Write(key, data);

    /// <summary>Eviction of a dirty L2 slice: what it points at must be on disk first.</summary>
    private void WriteBackL2Slice(long key, ReadOnlySpan<byte> data)
    {
        if (!_lazyRefcounts) PersistDataAndRefcounts();
        else SyncData();
        _file.Write(key, data);
    }

    private void SyncData()
    {
        if (!_dataWrittenSinceSync) return;
        _dataWrittenSinceSync = false;
        _dataFile?.Flush();
        _file.Flush();
    }

    /// <summary>Steps 1 and 2: guest data, refcount blocks, refcount table entries (caller holds the lock).</summary>
    private void PersistDataAndRefcounts()
    {
        bool refDirty = _refCache.HasDirty || _refTableDirtyEnd >= 0;
        if (!refDirty)
        {
            SyncData();
            return;
        }
        _dataWrittenSinceSync = false;
        _dataFile?.Flush();
        _refCache.WriteBackAll();
        if (_refTableDirtyEnd >= 0)
        {
            // New refcount blocks before the table entries that point at them.
            _file.Flush();
            WriteTableRange(_refTableOffset, _refTable, _refTableDirtyStart, _refTableDirtyEnd);
            _refTableDirtyStart = int.MaxValue;
            _refTableDirtyEnd = -1;
        }
        _file.Flush();
    }

    private void WriteTableRange(long tableOffset, ulong[] table, int start, int end)
    {
        int count = end - start + 1;
        byte[] buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(count * 8);
        try
        {
            for (int i = 0; i < count; i++)
                BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(i * 8, 8), table[start + i]);
            _file.Write(tableOffset + start * 8L, buffer.AsSpan(0, count * 8));
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Writes every metadata change back in the crash-safe order and makes it durable (caller holds the lock).</summary>
    /// <param name="ownDataIo">Data operations of the caller itself that are counted in <see cref="_activeDataIo"/>.</param>
    /// <remarks>
    /// Freed clusters become reusable only when no read or write that might have mapped them
    /// before they were unreferenced is still running; otherwise they stay queued for a later flush.
    /// </remarks>
    private void FlushMetadataLocked(int ownDataIo = 0)
    {
        PersistDataAndRefcounts();
        if (_l2Cache.HasDirty)
        {
            _l2Cache.WriteBackAll();
            _file.Flush();
        }
        if (_l1DirtyEnd >= 0)
        {
            WriteTableRange(_l1Offset, _l1, _l1DirtyStart, _l1DirtyEnd);
            _l1DirtyStart = int.MaxValue;
            _l1DirtyEnd = -1;
            _file.Flush();
        }
        if (_pendingFrees.Count > 0 && Volatile.Read(ref _activeDataIo) <= ownDataIo)
        {
            // The references are gone from the disk: now the clusters may be freed and reused.
            foreach (var (cluster, count) in _pendingFrees)
                for (int i = 0; i < count; i++) AddToRefcount(cluster + i, -1);
            _pendingFrees.Clear();
            _freeGeneration++;
            PersistDataAndRefcounts();
        }
        _file.Flush();
        _dataFile?.Flush();
    }

    /// <summary>A clean close: everything written back, then the dirty bit cleared.</summary>
    private void CloseCleanly()
    {
        lock (_meta)
        {
            FlushMetadataLocked();
            if (_dirtyBitSetByUs)
            {
                _incompatible &= ~(ulong)IncompatibleFeatures.Dirty;
                Span<byte> b = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64BigEndian(b, _incompatible);
                WriteHeaderBytes(IncompatibleFeaturesOffset, b);
                _file.Flush();
                _dirtyBitSetByUs = false;
            }
        }
    }

    /// <inheritdoc/>
    public void Flush()
    {
        ThrowIfDisposed();
        if (_readOnly) return;
        lock (_meta) FlushMetadataLocked();
    }

    /// <inheritdoc/>
    public ValueTask FlushAsync(CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        Flush();
        return default;
    }
}
