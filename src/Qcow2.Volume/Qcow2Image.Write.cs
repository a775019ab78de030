using System.Buffers;
using System.Buffers.Binary;
using Qcow2.Spans;
using Qcow2.Volume.Mapping;

namespace Qcow2.Volume;

// Guest writes: in place where the cluster is ours alone (COPIED), otherwise copy-on-write into a
// new or preallocated host cluster. A cluster being rewritten is reserved ("in flight") until its
// L2 entry is updated, so two writers never both allocate it; others wait for the reservation.
public sealed partial class Qcow2Image
{
    /// <summary>The largest run of clusters allocated and written as one batch.</summary>
    private const int MaxBatchBytes = 1 << 20;

    private readonly Dictionary<long, TaskCompletionSource> _inflight = [];

    private enum PlanKind : byte { InPlace, Rewrite, Wait }

    /// <summary>What one step of a write does (computed under the lock, executed outside it).</summary>
    private struct WritePlan
    {
        public PlanKind Kind;

        /// <summary>Guest bytes of the source this step covers.</summary>
        public int Length;

        /// <summary>InPlace: host offset of the first byte. Rewrite: host offset of the first cluster.</summary>
        public long HostOffset;

        /// <summary>Rewrite: first guest cluster and number of clusters.</summary>
        public long GuestCluster;
        public int Count;

        /// <summary>Rewrite: the written region, from <see cref="RegionStart"/> in the first cluster to <see cref="RegionEnd"/> in the last.</summary>
        public int RegionStart;
        public int RegionEnd;

        /// <summary>Rewrite: whether all subclusters become allocated (else only the touched ones).</summary>
        public bool FullClusters;

        /// <summary>Rewrite: whether host clusters were newly allocated (the old ones are then freed).</summary>
        public bool Allocated;

        public TaskCompletionSource? Reservation;
        public Task? WaitFor;
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the disk.</exception>
    /// <exception cref="InvalidOperationException">The image is read-only.</exception>
    /// <exception cref="Qcow2CorruptImageException">Corruption was found (the image is then marked corrupt).</exception>
    public unsafe void Write(long offset, ReadOnlySpan<byte> source)
    {
        CheckRange(offset, source.Length);
        ThrowIfNotWritable();
        if (source.IsEmpty) return;
        fixed (byte* p = source)
        {
            var m = PinnedMemory.Rent(p, source.Length);
            try
            {
                WriteCoreAsync<SyncIo>(offset, m.Memory, default).CompleteSync();
            }
            finally
            {
                PinnedMemory.Return(m);
            }
        }
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the disk.</exception>
    /// <exception cref="InvalidOperationException">The image is read-only.</exception>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default)
    {
        CheckRange(offset, source.Length);
        ThrowIfNotWritable();
        if (ct.IsCancellationRequested) return ValueTask.FromCanceled(ct);
        if (source.IsEmpty) return default;
        return WriteCoreAsync<AsyncIo>(offset, source, ct);
    }

    private void ThrowIfNotWritable()
    {
        ThrowIfDisposed();
        if (_readOnly)
            throw new InvalidOperationException(_corrupt ? "The image is marked corrupt and is read-only." : "The image is opened read-only.");
    }

    /// <summary>The one write implementation, for sync and async callers.</summary>
    private async ValueTask WriteCoreAsync<TIo>(long offset, ReadOnlyMemory<byte> source, CancellationToken ct)
        where TIo : IIoAdapter
    {
        // Counted so that freed clusters are not reused while an in-place write into them runs.
        Interlocked.Increment(ref _activeDataIo);
        try
        {
            if (_crypto is not null) await WriteEncryptedImageAsync<TIo>(offset, source, ct).ConfigureAwait(false);
            else await WritePlannedAsync<TIo>(offset, source, ct).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _activeDataIo);
        }
    }

    private async ValueTask WritePlannedAsync<TIo>(long offset, ReadOnlyMemory<byte> source, CancellationToken ct)
        where TIo : IIoAdapter
    {
        while (!source.IsEmpty)
        {
            WritePlan plan;
            lock (_meta)
            {
                if (_readOnly) ThrowIfNotWritable();
                plan = PlanWrite(offset, source.Length);
            }
            if (plan.Kind == PlanKind.Wait)
            {
                await TIo.WaitAsync(plan.WaitFor!, ct).ConfigureAwait(false);
                continue;
            }
            int n = plan.Length;
            if (plan.Kind == PlanKind.InPlace)
            {
                await WriteDataAsync<TIo>(plan.HostOffset, offset, source[..n], ct).ConfigureAwait(false);
                _dataWrittenSinceSync = true;
            }
            else
            {
                await RewriteAsync<TIo>(plan, offset, source[..n], ct).ConfigureAwait(false);
            }
            offset += n;
            source = source[n..];
        }
    }

    /// <summary>Decides how to write from <paramref name="offset"/> (caller holds the lock).</summary>
    private WritePlan PlanWrite(long offset, int length)
    {
        EnsureDirtyBitForLazyRefcounts();
        long end = offset + length;
        long gc = offset >> _clusterBits;
        if (_inflight.TryGetValue(gc, out var busy)) return new WritePlan { Kind = PlanKind.Wait, WaitFor = busy.Task };

        int inCluster = _geo.OffsetInCluster(offset);
        int n = (int)Math.Min(_clusterSize - inCluster, end - offset);
        if (TryInPlace(gc, inCluster, n, out long host))
        {
            // Extend over following clusters that are in place and host-contiguous.
            long covered = n;
            while (offset + covered < end)
            {
                long g = gc + (covered + inCluster >> _clusterBits);
                int m = (int)Math.Min(_clusterSize, end - (offset + covered));
                if (_inflight.ContainsKey(g) || !TryInPlace(g, 0, m, out long h) || h != host + covered) break;
                covered += m;
                if (covered >= MaxBatchBytes) break;
            }
            CheckNoMetadataOverlap(host, covered);
            return new WritePlan { Kind = PlanKind.InPlace, Length = (int)covered, HostOffset = host };
        }

        var plan = new WritePlan { Kind = PlanKind.Rewrite, GuestCluster = gc, Count = 1 };
        ReadEntryForWrite(gc, out ulong raw, out ulong bitmap);
        if (_geo.ExtendedL2 && (raw & L2Bits.Compressed) == 0)
        {
            // Allocated subclusters are written in place, never copied around a rewrite: an in-place
            // write to other bytes of them may be running (it holds no reservation), and a rewrite
            // would put the copy it read before over that write. So the write splits: a run of
            // allocated subclusters in place, a run of unallocated (or zero) ones rewritten.
            int allocatedRun = SubclusterRun(bitmap, inCluster, n, allocated: true);
            if (allocatedRun > 0 && TryInPlace(gc, inCluster, allocatedRun, out long runHost))
            {
                CheckNoMetadataOverlap(runHost, allocatedRun);
                return new WritePlan { Kind = PlanKind.InPlace, Length = allocatedRun, HostOffset = runHost };
            }
            if (allocatedRun == 0) n = SubclusterRun(bitmap, inCluster, n, allocated: false);
        }
        // With a data file every guest cluster has its fixed host cluster: nothing is allocated,
        // but runs are batched the same way.
        bool fixedMapping = _dataFile is not null;
        long reuseHost = fixedMapping ? -1 : ReusableHost(gc, raw);
        bool subclusterRegion = _geo.ExtendedL2 && (fixedMapping || reuseHost >= 0 || (raw & (L2Bits.OffsetMask | L2Bits.Compressed)) == 0);
        plan.FullClusters = !subclusterRegion;
        plan.RegionStart = subclusterRegion ? inCluster & ~(_geo.SubclusterSize - 1) : 0;

        if (reuseHost >= 0)
        {
            plan.HostOffset = reuseHost;
            plan.Length = n;
        }
        else
        {
            // Batch the following clusters that also need a fresh host cluster and are fully covered.
            int count = 1;
            long covered = n;
            if (inCluster + n == _clusterSize)
            {
                int maxCount = Math.Max(1, MaxBatchBytes >> _clusterBits);
                while (count < maxCount && offset + covered < end)
                {
                    long g = gc + count;
                    if (_inflight.ContainsKey(g)) break;
                    int m = (int)Math.Min(_clusterSize, end - (offset + covered));
                    if (TryInPlace(g, 0, m, out _)) break;
                    ReadEntryForWrite(g, out ulong r2, out _);
                    if (!fixedMapping && ReusableHost(g, r2) >= 0) break;
                    bool sub2 = _geo.ExtendedL2 && (fixedMapping || (r2 & (L2Bits.OffsetMask | L2Bits.Compressed)) == 0);
                    if (m < _clusterSize && sub2 != subclusterRegion) break;
                    count++;
                    covered += m;
                    if (m < _clusterSize) break;
                }
            }
            plan.Count = count;
            plan.Length = (int)covered;
            plan.Allocated = !fixedMapping;
            plan.HostOffset = fixedMapping ? gc << _clusterBits : AllocateClusters(count);
        }

        long lastEnd = (offset + plan.Length) - ((gc + plan.Count - 1) << _clusterBits);
        plan.RegionEnd = plan.FullClusters
            ? _clusterSize
            : (int)Math.Min(_clusterSize, (lastEnd + _geo.SubclusterSize - 1) & ~(long)(_geo.SubclusterSize - 1));
        long regionBytes = ((long)(plan.Count - 1) << _clusterBits) + plan.RegionEnd - plan.RegionStart;
        CheckNoMetadataOverlap(plan.HostOffset + plan.RegionStart, regionBytes);

        var reservation = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        for (int i = 0; i < plan.Count; i++) _inflight.Add(gc + i, reservation);
        plan.Reservation = reservation;
        return plan;
    }

    /// <summary>Whether [inCluster, inCluster + length) of guest cluster <paramref name="gc"/> can be overwritten in place (caller holds the lock).</summary>
    private bool TryInPlace(long gc, int inCluster, int length, out long host)
    {
        host = 0;
        long l1Index = gc >> _geo.L2Bits;
        if (l1Index >= _l1.Length) return false;
        ulong l1e = _l1[l1Index];
        long l2 = (long)(l1e & L1Entry.OffsetMask);
        if (l2 == 0 || (l1e & L1Entry.CopiedFlag) == 0) return false;
        ReadL2Entry(l2, (int)(gc & (_geo.L2Entries - 1)), out ulong raw, out ulong bitmap, out _);
        if ((raw & (L2Bits.Compressed | L2Bits.Copied)) != L2Bits.Copied) return false;
        long h = (long)(raw & L2Bits.OffsetMask);
        if (h == 0 && _dataFile is null) return false;
        if (_geo.ExtendedL2)
        {
            int first = inCluster >> _geo.SubclusterBits;
            int last = (inCluster + length - 1) >> _geo.SubclusterBits;
            uint mask = SubclusterMask(first, last);
            if (((uint)bitmap & mask) != mask) return false;
        }
        else if ((raw & L2Bits.ZeroFlag) != 0)
        {
            return false;
        }
        host = h + inCluster;
        return true;
    }

    /// <summary>
    /// Bytes from <paramref name="inCluster"/> (at most <paramref name="length"/>) whose subclusters
    /// all are (or all are not) allocated in <paramref name="bitmap"/>.
    /// </summary>
    private int SubclusterRun(ulong bitmap, int inCluster, int length, bool allocated)
    {
        int end = inCluster + length;
        int pos = inCluster;
        while (pos < end)
        {
            int sub = pos >> _geo.SubclusterBits;
            if ((((uint)bitmap >> sub) & 1) != 0 != allocated) break;
            pos = (sub + 1) << _geo.SubclusterBits;
        }
        return Math.Min(pos, end) - inCluster;
    }

    private static uint SubclusterMask(int first, int last) =>
        last - first >= 31 ? uint.MaxValue : ((1u << (last - first + 1)) - 1) << first;

    /// <summary>The L2 entry of a guest cluster, or zeros when it has no L2 table (caller holds the lock).</summary>
    private void ReadEntryForWrite(long gc, out ulong raw, out ulong bitmap)
    {
        raw = 0;
        bitmap = 0;
        long l1Index = gc >> _geo.L2Bits;
        if (l1Index >= _l1.Length) return;
        long l2 = (long)(_l1[l1Index] & L1Entry.OffsetMask);
        if (l2 == 0) return;
        ReadL2Entry(l2, (int)(gc & (_geo.L2Entries - 1)), out raw, out bitmap, out _);
    }

    /// <summary>A host cluster this write may fill in place although it is not plain data: preallocated zeros or partly allocated subclusters. -1 when a new cluster is needed.</summary>
    private long ReusableHost(long gc, ulong raw)
    {
        if ((raw & (L2Bits.Compressed | L2Bits.Copied)) != L2Bits.Copied) return -1;
        long h = (long)(raw & L2Bits.OffsetMask);
        if (h == 0) return -1;
        long l1e = (long)_l1[gc >> _geo.L2Bits];
        if ((l1e & unchecked((long)L1Entry.CopiedFlag)) == 0) return -1;
        return h;
    }

    /// <summary>Writes a reserved region (new data plus the old content around it) and then points the L2 entries at it.</summary>
    private async ValueTask RewriteAsync<TIo>(WritePlan plan, long offset, ReadOnlyMemory<byte> source, CancellationToken ct)
        where TIo : IIoAdapter
    {
        long regionGuestStart = (plan.GuestCluster << _clusterBits) + plan.RegionStart;
        long regionGuestEnd = ((plan.GuestCluster + plan.Count - 1) << _clusterBits) + plan.RegionEnd;
        int regionLength = (int)(regionGuestEnd - regionGuestStart);
        int head = (int)(offset - regionGuestStart);
        int tail = (int)(regionGuestEnd - (offset + source.Length));
        byte[]? buffer = null;
        bool committed = false;
        try
        {
            if (head == 0 && tail == 0)
            {
                await WriteDataAsync<TIo>(plan.HostOffset + plan.RegionStart, regionGuestStart, source, ct).ConfigureAwait(false);
            }
            else
            {
                buffer = ArrayPool<byte>.Shared.Rent(regionLength);
                var region = buffer.AsMemory(0, regionLength);
                // Only the parts the write does not cover are copied from the current content
                // (backing file, zeros, or the old cluster).
                if (head > 0) await ReadCoreAsync<TIo>(regionGuestStart, region[..head], ct).ConfigureAwait(false);
                source.CopyTo(region[head..]);
                if (tail > 0) await ReadCoreAsync<TIo>(offset + source.Length, region[(head + source.Length)..], ct).ConfigureAwait(false);
                EncryptOwnedBuffer(region.Span, plan.HostOffset + plan.RegionStart, regionGuestStart);
                await TIo.WriteAsync(DataStorage, plan.HostOffset + plan.RegionStart, region, ct).ConfigureAwait(false);
            }
            _dataWrittenSinceSync = true;
            lock (_meta) CommitRewrite(plan);
            committed = true;
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
            if (!committed)
            {
                // The new clusters leak (refcount 1, unreferenced) rather than risk a double use.
                lock (_meta) ReleaseReservation(plan.GuestCluster, plan.Count, plan.Reservation!);
            }
        }
    }

    private void ReleaseReservation(long gc, int count, TaskCompletionSource reservation)
    {
        for (int i = 0; i < count; i++) _inflight.Remove(gc + i);
        reservation.TrySetResult();
    }

    /// <summary>Points the L2 entries of a rewritten run at their new host clusters (caller holds the lock).</summary>
    private void CommitRewrite(in WritePlan plan)
    {
        try
        {
            for (int i = 0; i < plan.Count; i++)
            {
                long gc = plan.GuestCluster + i;
                long l2 = EnsureWritableL2Table(gc >> _geo.L2Bits);
                int index = (int)(gc & (_geo.L2Entries - 1));
                ReadL2Entry(l2, index, out ulong oldRaw, out ulong oldBitmap, out _);
                long host = plan.HostOffset + ((long)i << _clusterBits);
                ulong raw = (ulong)host | L2Bits.Copied;
                ulong bitmap = 0;
                if (_geo.ExtendedL2)
                {
                    if (plan.FullClusters)
                    {
                        bitmap = L2Bits.AllocMask;
                    }
                    else
                    {
                        int rs = i == 0 ? plan.RegionStart : 0;
                        int re = i == plan.Count - 1 ? plan.RegionEnd : _clusterSize;
                        uint touched = SubclusterMask(rs >> _geo.SubclusterBits, (re - 1) >> _geo.SubclusterBits);
                        uint alloc = (uint)oldBitmap | touched;
                        uint zero = (uint)(oldBitmap >> L2Bits.ZeroShift) & ~touched;
                        bitmap = ((ulong)zero << L2Bits.ZeroShift) | alloc;
                    }
                }
                if (plan.Allocated && _dataFile is null) QueueFreeOfEntry(oldRaw);
                WriteL2Entry(l2, index, raw, bitmap);
            }
        }
        finally
        {
            ReleaseReservation(plan.GuestCluster, plan.Count, plan.Reservation!);
        }
        if (_pendingFrees.Count > MaxPendingFrees && Volatile.Read(ref _activeDataIo) <= 1) FlushMetadataLocked(ownDataIo: 1);
    }

    /// <summary>Writes one L2 entry through the cache and marks its slice dirty (caller holds the lock).</summary>
    private void WriteL2Entry(long l2Offset, int index, ulong raw, ulong bitmap)
    {
        int es = _geo.L2EntrySize;
        long byteOffset = (long)index * es;
        int sliceSize = _l2Cache.EntrySize;
        long key = l2Offset + (byteOffset & ~(long)(sliceSize - 1));
        int slot = _l2Cache.Get(key, _file);
        var slice = _l2Cache.Entry(slot);
        int within = (int)(byteOffset & (sliceSize - 1));
        BinaryPrimitives.WriteUInt64BigEndian(slice.Slice(within, 8), raw);
        if (es == 16) BinaryPrimitives.WriteUInt64BigEndian(slice.Slice(within + 8, 8), bitmap);
        _l2Cache.MarkDirty(slot);
    }

    /// <summary>The L2 table for an L1 index, allocated or copied (when shared with a snapshot) so that it may be modified (caller holds the lock).</summary>
    private long EnsureWritableL2Table(long l1Index)
    {
        if (l1Index >= _l1.Length)
            throw new InvalidOperationException("The L1 table does not cover this offset.");
        ulong e = _l1[l1Index];
        long old = (long)(e & L1Entry.OffsetMask);
        if (old != 0 && (e & L1Entry.CopiedFlag) != 0) return old;

        long table = AllocateClusters(1);
        _l2Cache.Invalidate(table, _clusterSize);
        if (old == 0)
        {
            WriteZeroClusters(table, 1);
        }
        else
        {
            // Copy-on-write of a table shared with a snapshot: the data clusters it maps stay
            // shared (their refcounts count the paths to them), so no entry may keep COPIED.
            byte[] buffer = ArrayPool<byte>.Shared.Rent(_clusterSize);
            try
            {
                var span = buffer.AsSpan(0, _clusterSize);
                int got = _file.Read(old, span);
                if (got < span.Length) span[Math.Max(got, 0)..].Clear();
                for (int i = 0; i < _geo.L2Entries; i++)
                {
                    var entry = span.Slice(i * _geo.L2EntrySize, 8);
                    BinaryPrimitives.WriteUInt64BigEndian(entry, BinaryPrimitives.ReadUInt64BigEndian(entry) & ~L2Bits.Copied);
                }
                _file.Write(table, span);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            QueueFree(old, 1);
        }
        _metadataClusters.Add(table >> _clusterBits);
        _l1[l1Index] = (ulong)table | L1Entry.CopiedFlag;
        MarkL1Dirty(l1Index);
        return table;
    }
}
