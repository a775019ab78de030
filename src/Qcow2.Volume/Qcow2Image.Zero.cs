using System.Buffers;
using Qcow2.Spans;
using Qcow2.Volume.Mapping;

namespace Qcow2.Volume;

// WriteZeroes and Discard: metadata-only for whole clusters (whole subclusters with extended L2),
// explicit zeros for the partial edges of WriteZeroes.
public sealed partial class Qcow2Image
{
    private enum ClusterOp : byte { Zero, ZeroUnmap, Discard }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the disk.</exception>
    /// <exception cref="InvalidOperationException">The image is read-only.</exception>
    public void WriteZeroes(long offset, long length, bool unmap = false)
    {
        CheckRange(offset, length);
        ThrowIfNotWritable();
        if (length == 0) return;
        int granule = _geo.ExtendedL2 ? _geo.SubclusterSize : _clusterSize;
        bool metadataZero = _version >= 3 && !(_dataFile is not null && _dataFileRaw);
        if (!metadataZero && (_version >= 3 || _backing is not null || _backingName is not null))
        {
            // v2 with a backing file, or a raw data file that must stay a consistent raw image.
            WriteExplicitZeroes(offset, length);
            return;
        }
        long alignedStart = (offset + granule - 1) & ~(long)(granule - 1);
        long alignedEnd = (offset + length) & ~(long)(granule - 1);
        // The last granule of an image whose size is not aligned may be covered up to the end.
        if (offset + length == Size) alignedEnd = (offset + length + granule - 1) & ~(long)(granule - 1);
        if (alignedStart >= alignedEnd)
        {
            WriteExplicitZeroes(offset, length);
            return;
        }
        if (alignedStart > offset) WriteExplicitZeroes(offset, alignedStart - offset);
        // v2 without backing: unallocated clusters read as zeros.
        ClusterRangeOp(alignedStart, alignedEnd, _version >= 3 ? (unmap ? ClusterOp.ZeroUnmap : ClusterOp.Zero) : ClusterOp.Discard);
        long tailStart = Math.Min(alignedEnd, offset + length);
        if (tailStart < offset + length) WriteExplicitZeroes(tailStart, offset + length - tailStart);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Only whole clusters (subclusters with extended L2) are released. With a backing file (v3)
    /// they then read as zeros, as QEMU does; in v2 the backing file shows through.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the disk.</exception>
    /// <exception cref="InvalidOperationException">The image is read-only.</exception>
    public void Discard(long offset, long length)
    {
        CheckRange(offset, length);
        ThrowIfNotWritable();
        if (length == 0 || (_dataFile is not null && _dataFileRaw)) return;
        int granule = _geo.ExtendedL2 ? _geo.SubclusterSize : _clusterSize;
        long alignedStart = (offset + granule - 1) & ~(long)(granule - 1);
        long alignedEnd = (offset + length) & ~(long)(granule - 1);
        if (offset + length == Size) alignedEnd = (offset + length + granule - 1) & ~(long)(granule - 1);
        if (alignedStart >= alignedEnd) return;
        ClusterRangeOp(alignedStart, alignedEnd, ClusterOp.Discard);
    }

    /// <inheritdoc cref="WriteZeroes"/>
    /// <remarks>Mostly a metadata update done under the metadata lock; it completes synchronously.</remarks>
    public ValueTask WriteZeroesAsync(long offset, long length, bool unmap = false, CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        WriteZeroes(offset, length, unmap);
        return default;
    }

    /// <inheritdoc cref="Discard"/>
    /// <remarks>A metadata update done under the metadata lock; it completes synchronously.</remarks>
    public ValueTask DiscardAsync(long offset, long length, CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        Discard(offset, length);
        return default;
    }

    private void WriteExplicitZeroes(long offset, long length)
    {
        int chunk = (int)Math.Min(length, Math.Max(_clusterSize, 1 << 16));
        byte[] zeros = ArrayPool<byte>.Shared.Rent(chunk);
        try
        {
            Array.Clear(zeros, 0, chunk);
            while (length > 0)
            {
                int n = (int)Math.Min(length, chunk);
                Write(offset, zeros.AsSpan(0, n));
                offset += n;
                length -= n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeros);
        }
    }

    /// <summary>Applies a metadata-only operation to granule-aligned [start, end).</summary>
    private void ClusterRangeOp(long start, long end, ClusterOp op)
    {
        long pos = start;
        while (pos < end)
        {
            long gc = pos >> _clusterBits;
            long clusterStart = gc << _clusterBits;
            int from = (int)(pos - clusterStart);
            int to = (int)Math.Min(_clusterSize, end - clusterStart);
            Task? wait = null;
            lock (_meta)
            {
                if (_readOnly) ThrowIfNotWritable();
                if (_inflight.TryGetValue(gc, out var busy)) wait = busy.Task;
                else
                {
                    EnsureDirtyBitForLazyRefcounts();
                    ApplyClusterOp(gc, from, to, op);
                }
            }
            if (wait is not null)
            {
                wait.Wait();
                continue;
            }
            pos = clusterStart + to;
        }
        lock (_meta)
        {
            if (_pendingFrees.Count > MaxPendingFrees && Volatile.Read(ref _activeDataIo) == 0) FlushMetadataLocked();
        }
    }

    /// <summary>
    /// Makes guest cluster <paramref name="gc"/> a plain cluster of this image by writing [from, to)
    /// of it with its current content, released from the lock (caller holds it; it is held again on
    /// return). The write path copies the rest of the cluster under its reservation, so writes to
    /// other bytes of the cluster running meanwhile are kept; rewriting the whole cluster from a copy
    /// read before would put stale bytes over them. Bytes of [from, to) that a concurrent write
    /// changes meanwhile may be written back stale, which is allowed: the caller then zeroes or
    /// discards that very range.
    /// </summary>
    private void RewriteRangeUnlocked(long gc, int from, int to)
    {
        long start = (gc << _clusterBits) + from;
        int length = (int)(Math.Min((gc << _clusterBits) + to, Size) - start);
        Monitor.Exit(_meta);
        try
        {
            byte[] buf = ArrayPool<byte>.Shared.Rent(length);
            try
            {
                Read(start, buf.AsSpan(0, length));
                Write(start, buf.AsSpan(0, length));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buf);
            }
        }
        finally
        {
            Monitor.Enter(_meta);
        }
    }

    /// <summary>Zeroes or discards [from, to) of one cluster in its L2 entry (caller holds the lock).</summary>
    private void ApplyClusterOp(long gc, int from, int to, ClusterOp op)
    {
        ReadEntryForWrite(gc, out ulong raw, out ulong bitmap);
        bool hasBacking = _backing is not null || _backingName is not null;
        bool whole = from == 0 && to >= _clusterSize;
        // Nothing to do: already unallocated (and reading zeros) with no backing file to hide.
        if (raw == 0 && bitmap == 0 && !hasBacking && (_dataFile is null || op == ClusterOp.Discard)) return;

        long l2 = EnsureWritableL2Table(gc >> _geo.L2Bits);
        int index = (int)(gc & (_geo.L2Entries - 1));
        ReadL2Entry(l2, index, out raw, out bitmap, out _);
        long host = (long)(raw & L2Bits.OffsetMask);
        bool compressed = (raw & L2Bits.Compressed) != 0;
        bool ours = !compressed && (raw & L2Bits.Copied) != 0 && (host != 0 || _dataFile is not null);
        bool zeroReads = op != ClusterOp.Discard || (hasBacking && _version >= 3);

        if (!_geo.ExtendedL2)
        {
            ulong newRaw;
            if (op == ClusterOp.Zero && ours)
                newRaw = (raw & (L2Bits.OffsetMask | L2Bits.Copied)) | L2Bits.ZeroFlag;   // keep the preallocation
            else if (_dataFile is not null)
                newRaw = zeroReads ? ((ulong)(gc << _clusterBits) | L2Bits.Copied | L2Bits.ZeroFlag) : 0;
            else
                newRaw = zeroReads ? L2Bits.ZeroFlag : 0;
            if (_dataFile is null && (compressed || host != 0) && (newRaw & L2Bits.OffsetMask) == 0) QueueFreeOfEntry(raw);
            WriteL2Entry(l2, index, newRaw, 0);
            return;
        }

        uint mask = SubclusterMask(from >> _geo.SubclusterBits, (to - 1) >> _geo.SubclusterBits);
        uint alloc = (uint)bitmap;
        uint zero = (uint)(bitmap >> L2Bits.ZeroShift);
        if (compressed)
        {
            // A compressed cluster has no subclusters: a partial operation decompresses it first.
            if (!whole)
            {
                RewriteRangeUnlocked(gc, from, to);
                ApplyClusterOp(gc, from, to, op);
                return;
            }
            QueueFreeOfEntry(raw);
            raw = 0;
            alloc = 0;
            zero = 0;
            host = 0;
            ours = false;
        }
        if (!ours && host != 0 && !whole)
        {
            // A shared cluster: subclusters cannot be released one by one without copying.
            RewriteRangeUnlocked(gc, from, to);
            ApplyClusterOp(gc, from, to, op);
            return;
        }
        alloc &= ~mask;
        if (zeroReads) zero |= mask;
        else zero &= ~mask;
        ulong keepHost = raw & (L2Bits.OffsetMask | L2Bits.Copied);
        bool dropHost = _dataFile is null && host != 0 && alloc == 0 && (op != ClusterOp.Zero || !ours);
        if (dropHost)
        {
            QueueFree(host, 1);
            keepHost = 0;
        }
        else if (host == 0 && _dataFile is null)
        {
            keepHost = 0;
        }
        if (keepHost == 0 && alloc == 0 && zero == 0) WriteL2Entry(l2, index, 0, 0);
        else WriteL2Entry(l2, index, keepHost, ((ulong)zero << L2Bits.ZeroShift) | alloc);
    }
}
