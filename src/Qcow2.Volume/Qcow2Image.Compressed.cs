using System.Buffers;
using Qcow2.Spans;
using Qcow2.Volume.Mapping;

namespace Qcow2.Volume;

// Compressed writes of whole clusters. Compressed data is packed as QEMU packs it: each compressed
// cluster starts where the previous one ended, crossing into the next host cluster when it is free.
public sealed partial class Qcow2Image
{
    /// <summary>Host offset where the next compressed cluster may be packed, or 0.</summary>
    private long _compressedTail;

    /// <summary>Changes whenever refcount decrements are applied (a packed cluster may then have been freed).</summary>
    private long _compressedTailGeneration = -1;
    private long _freeGeneration;

    /// <summary>
    /// Writes whole clusters compressed. <paramref name="offset"/> must be cluster aligned and the
    /// length a multiple of the cluster size, except that the last cluster of the disk may be short.
    /// A cluster that does not shrink is written uncompressed.
    /// </summary>
    /// <exception cref="ArgumentException">The range is not made of whole clusters.</exception>
    /// <exception cref="InvalidOperationException">The image is read-only or has an external data file.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The compression library is not available.</exception>
    public unsafe void WriteCompressed(long offset, ReadOnlySpan<byte> data)
    {
        CheckCompressedArguments(offset, data.Length);
        if (data.IsEmpty) return;
        fixed (byte* p = data)
        {
            var m = PinnedMemory.Rent(p, data.Length);
            try
            {
                WriteCompressedCoreAsync<SyncIo>(offset, m.Memory, default).CompleteSync();
            }
            finally
            {
                PinnedMemory.Return(m);
            }
        }
    }

    /// <inheritdoc cref="WriteCompressed"/>
    public ValueTask WriteCompressedAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        CheckCompressedArguments(offset, data.Length);
        if (ct.IsCancellationRequested) return ValueTask.FromCanceled(ct);
        if (data.IsEmpty) return default;
        return WriteCompressedCoreAsync<AsyncIo>(offset, data, ct);
    }

    private void CheckCompressedArguments(long offset, int length)
    {
        CheckRange(offset, length);
        ThrowIfNotWritable();
        if (!_geo.IsClusterAligned(offset) || (length % _clusterSize != 0 && offset + length != Size))
            throw new ArgumentException("Compressed writes cover whole clusters (the last cluster of the disk may be short).", nameof(offset));
        if (_dataFile is not null)
            throw new InvalidOperationException("Images with an external data file cannot hold compressed clusters.");
        if (_encryption != CryptMethod.None)
            throw new Qcow2UnsupportedImageException("encryption",
                "Compressed writes to encrypted images are refused: the compressed clusters would be stored unencrypted (QEMU 7.2 does store them so).");
        if (_codec is null)
            throw new Qcow2UnsupportedImageException("compression_type", $"The native library for {_compressionType} compression is not available.");
    }

    private async ValueTask WriteCompressedCoreAsync<TIo>(long offset, ReadOnlyMemory<byte> data, CancellationToken ct)
        where TIo : IIoAdapter
    {
        byte[] input = ArrayPool<byte>.Shared.Rent(_clusterSize);
        byte[] output = ArrayPool<byte>.Shared.Rent(_clusterSize);
        try
        {
            while (!data.IsEmpty)
            {
                int n = Math.Min(_clusterSize, data.Length);
                var cluster = input.AsSpan(0, _clusterSize);
                data.Span[..n].CopyTo(cluster);
                cluster[n..].Clear();
                int packed = _codec!.Compress(cluster, output.AsSpan(0, _clusterSize - 1));
                if (packed <= 0)
                {
                    await WriteCoreAsync<TIo>(offset, data[..n], ct).ConfigureAwait(false);
                }
                else
                {
                    await WriteOneCompressedAsync<TIo>(offset, output.AsMemory(0, packed), ct).ConfigureAwait(false);
                }
                offset += n;
                data = data[n..];
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(input);
            ArrayPool<byte>.Shared.Return(output);
        }
    }

    private async ValueTask WriteOneCompressedAsync<TIo>(long offset, ReadOnlyMemory<byte> compressed, CancellationToken ct)
        where TIo : IIoAdapter
    {
        long gc = offset >> _clusterBits;
        TaskCompletionSource reservation;
        long host;
        while (true)
        {
            Task? wait = null;
            lock (_meta)
            {
                if (_readOnly) ThrowIfNotWritable();
                if (_inflight.TryGetValue(gc, out var busy))
                {
                    wait = busy.Task;
                }
                else
                {
                    EnsureDirtyBitForLazyRefcounts();
                    host = AllocateCompressedSpace(compressed.Length);
                    CheckNoMetadataOverlap(host, compressed.Length);
                    reservation = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    _inflight.Add(gc, reservation);
                    break;
                }
            }
            await TIo.WaitAsync(wait, ct).ConfigureAwait(false);
        }

        bool committed = false;
        try
        {
            await TIo.WriteAsync(_file, host, compressed, ct).ConfigureAwait(false);
            _dataWrittenSinceSync = true;
            lock (_meta)
            {
                long l2 = EnsureWritableL2Table(gc >> _geo.L2Bits);
                int index = (int)(gc & (_geo.L2Entries - 1));
                ReadL2Entry(l2, index, out ulong oldRaw, out ulong oldBitmap, out _);
                QueueFreeOfEntry(oldRaw);
                var d = CompressedDescriptor.Encode(host, compressed.Length, _clusterBits);
                WriteL2Entry(l2, index, d.Raw | L2Bits.Compressed, 0);
                committed = true;
                ReleaseReservation(gc, 1, reservation);
            }
        }
        finally
        {
            if (!committed)
                lock (_meta) ReleaseReservation(gc, 1, reservation);
        }
    }

    /// <summary>
    /// Host bytes for compressed data (caller holds the lock). Like QEMU, compressed clusters are
    /// packed contiguously: the data goes right after the previous compressed cluster, continuing
    /// into the next host cluster when that one is free (the descriptor's sector count then spans
    /// both, and each host cluster touched gets a reference); otherwise a fresh run starts in a
    /// newly allocated cluster.
    /// </summary>
    private long AllocateCompressedSpace(int length)
    {
        long tail = _compressedTail;
        if (tail != 0 && _compressedTailGeneration == _freeGeneration && GetRefcount(tail >> _clusterBits) < _rc.MaxValue)
        {
            long clusterEnd = (tail | (long)(_clusterSize - 1)) + 1;
            // length < cluster size, so the data needs at most the one host cluster after the tail's.
            if (clusterEnd - tail >= length || TryAllocateClusterAt(clusterEnd >> _clusterBits))
            {
                AddToRefcount(tail >> _clusterBits, 1);
                long end = tail + length;
                _compressedTail = (end & (_clusterSize - 1)) == 0 ? 0 : end;
                return tail;
            }
        }
        long host = AllocateClusters(1);
        _compressedTail = length == _clusterSize ? 0 : host + length;
        _compressedTailGeneration = _freeGeneration;
        return host;
    }

    /// <summary>
    /// Allocates host cluster <paramref name="cluster"/> (refcount 1) when it is free, for a
    /// compressed run continuing into it (caller holds the lock).
    /// </summary>
    private bool TryAllocateClusterAt(long cluster)
    {
        if (cluster <= 0) return false;
        if (GetRefcount(cluster) != 0 || _metadataClusters.Contains(cluster)) return false;
        // Creating its refcount block may place the new block in this very cluster.
        EnsureRefcountBlock(cluster);
        if (GetRefcount(cluster) != 0 || _metadataClusters.Contains(cluster)) return false;
        AddToRefcount(cluster, 1);
        if (cluster == _freeClusterHint) _freeClusterHint = cluster + 1;
        _allocatedEnd = Math.Max(_allocatedEnd, cluster + 1);
        return true;
    }
}
