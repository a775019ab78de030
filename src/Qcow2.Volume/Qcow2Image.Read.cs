using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Qcow2.Spans;
using Qcow2.Volume.Mapping;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume;

public sealed partial class Qcow2Image
{
    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the disk.</exception>
    /// <exception cref="Qcow2CorruptImageException">Metadata met on the way is malformed.</exception>
    public unsafe void Read(long offset, Span<byte> destination)
    {
        CheckRange(offset, destination.Length);
        ThrowIfDisposed();
        if (destination.IsEmpty) return;
        ThrowIfEncrypted();
        fixed (byte* p = destination)
        {
            var m = PinnedMemory.Rent(p, destination.Length);
            try
            {
                ReadCoreAsync<SyncIo>(offset, m.Memory, default).CompleteSync();
            }
            finally
            {
                PinnedMemory.Return(m);
            }
        }
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the disk.</exception>
    /// <exception cref="Qcow2CorruptImageException">Metadata met on the way is malformed.</exception>
    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        CheckRange(offset, destination.Length);
        ThrowIfDisposed();
        if (ct.IsCancellationRequested) return ValueTask.FromCanceled(ct);
        if (destination.IsEmpty) return default;
        ThrowIfEncrypted();
        return ReadCoreAsync<AsyncIo>(offset, destination, ct);
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || length > Size - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"The range [{offset}, +{length}) is outside the disk of {Size} bytes.");
    }

    /// <summary>The storage holding guest data clusters: the external data file, or the image file.</summary>
    private IStorage DataStorage => _dataFile ?? _file;

    /// <summary>The one read implementation, for sync and async callers.</summary>
    internal async ValueTask ReadCoreAsync<TIo>(long offset, Memory<byte> destination, CancellationToken ct)
        where TIo : IIoAdapter
    {
        // Counted so that freed clusters are not reused while a read that mapped them runs.
        Interlocked.Increment(ref _activeDataIo);
        try
        {
            await ReadMappedAsync<TIo>(offset, destination, ct).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _activeDataIo);
        }
    }

    private async ValueTask ReadMappedAsync<TIo>(long offset, Memory<byte> destination, CancellationToken ct)
        where TIo : IIoAdapter
    {
        while (!destination.IsEmpty)
        {
            var ext = MapExtent(offset, destination.Length, forStatus: false);
            int n = (int)ext.Length;
            var part = destination[..n];
            switch (ext.Kind)
            {
                case ExtentKind.Data:
                    if (_crypto is not null)
                    {
                        await ReadDecryptedAsync<TIo>(ext.HostOffset, offset, part, ct).ConfigureAwait(false);
                        break;
                    }
                    int got = await TIo.ReadAsync(DataStorage, ext.HostOffset, part, ct).ConfigureAwait(false);
                    // Host data past the end of the file (a sparse tail) reads as zeros.
                    if (got < n) part.Span[Math.Max(got, 0)..].Clear();
                    break;
                case ExtentKind.ZeroPlain:
                case ExtentKind.ZeroAllocated:
                    part.Span.Clear();
                    break;
                case ExtentKind.Unallocated:
                    await ReadBackingAsync<TIo>(offset, part, ct).ConfigureAwait(false);
                    break;
                case ExtentKind.Compressed:
                    await ReadCompressedAsync<TIo>(ext.Descriptor, _geo.OffsetInCluster(offset), part, ct).ConfigureAwait(false);
                    break;
            }
            offset += n;
            destination = destination[n..];
        }
    }

    private async ValueTask ReadBackingAsync<TIo>(long offset, Memory<byte> destination, CancellationToken ct)
        where TIo : IIoAdapter
    {
        var backing = _backing;
        long backingSize = backing?.Size ?? 0;
        if (backing is null || offset >= backingSize)
        {
            destination.Span.Clear();
            return;
        }
        int n = (int)Math.Min(destination.Length, backingSize - offset);
        if (backing is Qcow2Image q)
        {
            // An encrypted backing file opened without its secret must not hand out its ciphertext.
            q.ThrowIfEncrypted();
            await q.ReadCoreAsync<TIo>(offset, destination[..n], ct).ConfigureAwait(false);
        }
        else
            await TIo.ReadImageAsync(backing, offset, destination[..n], ct).ConfigureAwait(false);
        if (n < destination.Length) destination.Span[n..].Clear();
    }

    // The last decompressed cluster, for reads smaller than a cluster (QEMU keeps one too). Keyed
    // by the raw descriptor and the free generation: once clusters are freed, a new compressed
    // cluster may reuse the same bytes and descriptor.
    private readonly object _decompressedLock = new();
    private byte[]? _decompressed;
    private ulong _decompressedEntry;
    private long _decompressedGeneration = -1;

    private async ValueTask ReadCompressedAsync<TIo>(ulong rawEntry, int offsetInCluster, Memory<byte> destination, CancellationToken ct)
        where TIo : IIoAdapter
    {
        var codec = _codec ?? throw new Qcow2UnsupportedImageException("compression_type",
            $"The image holds {_compressionType} compressed clusters but the native library for it is not available.");
        bool whole = destination.Length == _clusterSize;
        long generation = Volatile.Read(ref _freeGeneration);
        if (!whole && TryReadDecompressed(rawEntry, generation, offsetInCluster, destination.Span)) return;

        var d = CompressedDescriptor.Decode(rawEntry, _clusterBits);
        int hostLength = d.HostLength;
        byte[] compressed = ArrayPool<byte>.Shared.Rent(hostLength);
        byte[]? cluster = null;
        try
        {
            int got = await TIo.ReadAsync(_file, d.HostOffset, compressed.AsMemory(0, hostLength), ct).ConfigureAwait(false);
            // The last sector may extend past the end of the file: decompression stops at a full cluster.
            int available = Math.Max(got, 0);
            if (whole)
            {
                codec.Decompress(compressed.AsSpan(0, available), destination.Span);
            }
            else
            {
                cluster = ArrayPool<byte>.Shared.Rent(_clusterSize);
                codec.Decompress(compressed.AsSpan(0, available), cluster.AsSpan(0, _clusterSize));
                cluster.AsSpan(offsetInCluster, destination.Length).CopyTo(destination.Span);
                KeepDecompressed(rawEntry, generation, cluster.AsSpan(0, _clusterSize));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(compressed);
            if (cluster is not null) ArrayPool<byte>.Shared.Return(cluster);
        }
    }

    private bool TryReadDecompressed(ulong rawEntry, long generation, int offsetInCluster, Span<byte> destination)
    {
        lock (_decompressedLock)
        {
            if (_decompressed is null || _decompressedEntry != rawEntry || _decompressedGeneration != generation) return false;
            _decompressed.AsSpan(offsetInCluster, destination.Length).CopyTo(destination);
            return true;
        }
    }

    private void KeepDecompressed(ulong rawEntry, long generation, ReadOnlySpan<byte> cluster)
    {
        lock (_decompressedLock)
        {
            // Decompressed before clusters were freed: the bytes may already belong to another cluster.
            if (generation != Volatile.Read(ref _freeGeneration)) return;
            _decompressed ??= new byte[_clusterSize];
            cluster.CopyTo(_decompressed);
            _decompressedEntry = rawEntry;
            _decompressedGeneration = generation;
        }
    }

    /// <summary>Clusters (or subcluster runs) merged into one extent at most.</summary>
    private const int MaxPiecesPerExtent = 8192;

    /// <summary>
    /// Maps the longest run starting at <paramref name="offset"/> (at most <paramref name="maxLength"/>
    /// bytes) that has one kind and, for data, contiguous host bytes, so one positional read serves it.
    /// Compressed clusters are returned one at a time for reads, merged for block status.
    /// </summary>
    private MappedExtent MapExtent(long offset, long maxLength, bool forStatus)
    {
        long end = offset + maxLength;
        lock (_meta)
        {
            var ext = MapPiece(offset, end);
            long pos = offset + ext.Length;
            if (ext.Kind == ExtentKind.Compressed && !forStatus) return ext;
            // Bounded so that the lock is never held for long; callers continue where this ends.
            for (int pieces = 1; pos < end && pieces < MaxPiecesPerExtent; pieces++)
            {
                var next = MapPiece(pos, end);
                if (next.Kind != ext.Kind || next.UnallocatedWithHost != ext.UnallocatedWithHost) break;
                bool hostMatters = ext.Kind is ExtentKind.Data or ExtentKind.ZeroAllocated || ext.UnallocatedWithHost;
                if (hostMatters && next.HostOffset != ext.HostOffset + ext.Length) break;
                ext.Length += next.Length;
                pos += next.Length;
            }
            return ext;
        }
    }

    /// <summary>Maps from <paramref name="pos"/> to the end of its cluster, subcluster run, or unmapped L2 range (caller holds the lock).</summary>
    private MappedExtent MapPiece(long pos, long end)
    {
        long l1Index = _geo.L1Index(pos);
        ulong l2Offset = l1Index < _l1.Length ? _l1[l1Index] & L1Entry.OffsetMask : 0;
        if (l2Offset == 0)
        {
            long tableEnd = (l1Index + 1) << _geo.L1Shift;
            return new MappedExtent { Kind = ExtentKind.Unallocated, Length = Math.Min(end, tableEnd) - pos };
        }

        int inCluster = _geo.OffsetInCluster(pos);
        long len = Math.Min(_clusterSize - inCluster, end - pos);
        ReadL2Entry((long)l2Offset, _geo.L2Index(pos), out ulong raw, out ulong bitmap, out long entryOffset);
        if ((raw & L2Bits.Compressed) != 0)
        {
            if (_dataFile is not null || (_geo.ExtendedL2 && bitmap != 0))
                throw new Qcow2CorruptImageException("L2 entry", entryOffset, raw, "A compressed cluster is not allowed here (external data file, or a subcluster bitmap set).");
            return new MappedExtent { Kind = ExtentKind.Compressed, Length = len, Descriptor = raw };
        }

        ulong host = raw & L2Bits.OffsetMask;
        ulong reserved = raw & (_geo.ExtendedL2 || _version < 3 ? L2Bits.StandardReservedMask | L2Bits.ZeroFlag : L2Bits.StandardReservedMask);
        if (reserved != 0)
            throw new Qcow2CorruptImageException("L2 entry", entryOffset, raw, "Reserved bits are set in a standard cluster descriptor.");
        if ((host & (ulong)(_clusterSize - 1)) != 0)
            throw new Qcow2CorruptImageException("L2 entry", entryOffset, raw, "The host cluster offset is not cluster aligned.");
        bool hasHost = host != 0 || (_dataFile is not null && (raw & L2Bits.Copied) != 0);

        if (!_geo.ExtendedL2)
        {
            if ((raw & L2Bits.ZeroFlag) != 0)
                return new MappedExtent { Kind = host != 0 ? ExtentKind.ZeroAllocated : ExtentKind.ZeroPlain, Length = len, HostOffset = (long)host + inCluster };
            if (!hasHost) return new MappedExtent { Kind = ExtentKind.Unallocated, Length = len };
            return new MappedExtent { Kind = ExtentKind.Data, Length = len, HostOffset = (long)host + inCluster };
        }

        uint alloc = (uint)(bitmap & L2Bits.AllocMask);
        uint zero = (uint)(bitmap >> L2Bits.ZeroShift);
        if ((alloc & zero) != 0)
            throw new Qcow2CorruptImageException("L2 entry bitmap", entryOffset + 8, bitmap, "A subcluster is marked both allocated and zero.");
        if (alloc != 0 && !hasHost)
            throw new Qcow2CorruptImageException("L2 entry", entryOffset, raw, "Subclusters are allocated but the cluster has no host offset.");
        int sc = _geo.SubclusterIndex(pos);
        int state = SubclusterState(alloc, zero, sc);
        int last = sc;
        while (last + 1 < 32 && SubclusterState(alloc, zero, last + 1) == state) last++;
        long runEnd = (long)(last + 1) << _geo.SubclusterBits;
        len = Math.Min(runEnd - inCluster, end - pos);
        return state switch
        {
            1 => new MappedExtent { Kind = ExtentKind.Data, Length = len, HostOffset = (long)host + inCluster },
            2 => new MappedExtent { Kind = host != 0 ? ExtentKind.ZeroAllocated : ExtentKind.ZeroPlain, Length = len, HostOffset = host != 0 ? (long)host + inCluster : 0 },
            // QEMU reports the host offset of an unallocated subcluster of an allocated cluster.
            _ => host != 0
                ? new MappedExtent { Kind = ExtentKind.Unallocated, Length = len, HostOffset = (long)host + inCluster, UnallocatedWithHost = true }
                : new MappedExtent { Kind = ExtentKind.Unallocated, Length = len },
        };
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int SubclusterState(uint alloc, uint zero, int index) =>
        ((alloc >> index) & 1) != 0 ? 1 : ((zero >> index) & 1) != 0 ? 2 : 0;

    /// <summary>Reads one L2 entry through the slice cache (caller holds the lock).</summary>
    private void ReadL2Entry(long l2Offset, int index, out ulong raw, out ulong bitmap, out long entryOffset)
    {
        int es = _geo.L2EntrySize;
        long byteOffset = (long)index * es;
        int sliceSize = _l2Cache.EntrySize;
        long key = l2Offset + (byteOffset & ~(long)(sliceSize - 1));
        int slot = _l2Cache.Get(key, _file);
        var slice = _l2Cache.Entry(slot);
        int within = (int)(byteOffset & (sliceSize - 1));
        raw = BinaryPrimitives.ReadUInt64BigEndian(slice.Slice(within, 8));
        bitmap = es == 16 ? BinaryPrimitives.ReadUInt64BigEndian(slice.Slice(within + 8, 8)) : 0;
        entryOffset = l2Offset + byteOffset;
    }

    /// <summary>The number of images in the chain from this one down.</summary>
    internal int ChainLength => 1 + (_backing is Qcow2Image q ? q.ChainLength : _backing is null ? 0 : 1);

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The offset is outside the disk or the length is not positive.</exception>
    public BlockStatus GetBlockStatus(long offset, long maxLength)
    {
        if (offset < 0 || offset >= Size) throw new ArgumentOutOfRangeException(nameof(offset));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLength);
        ThrowIfDisposed();
        long len = Math.Min(maxLength, Size - offset);
        var ext = MapExtent(offset, len, forStatus: true);
        // Encrypted images' host bytes are not the guest's: like QEMU, report no host offset or file for them.
        bool encrypted = _encryption != CryptMethod.None;
        if (encrypted) ext.HostOffset = -1;
        string? dataFileName = encrypted ? null : DataStorage.Name;
        switch (ext.Kind)
        {
            case ExtentKind.Data:
                return new BlockStatus(offset, ext.Length, BlockStatusFlags.Data | BlockStatusFlags.Allocated, 0, ext.HostOffset, dataFileName);
            case ExtentKind.Compressed:
                return new BlockStatus(offset, ext.Length, BlockStatusFlags.Data | BlockStatusFlags.Allocated | BlockStatusFlags.Compressed, 0, -1, encrypted ? null : _file.Name);
            case ExtentKind.ZeroAllocated:
                return new BlockStatus(offset, ext.Length, BlockStatusFlags.Zero | BlockStatusFlags.Allocated, 0, ext.HostOffset, dataFileName);
            case ExtentKind.ZeroPlain:
                return new BlockStatus(offset, ext.Length, BlockStatusFlags.Zero | BlockStatusFlags.Allocated, 0, -1, null);
        }
        var backing = _backing;
        if (backing is null || offset >= backing.Size)
        {
            return ext.UnallocatedWithHost
                ? new BlockStatus(offset, ext.Length, BlockStatusFlags.None, ChainLength, ext.HostOffset, dataFileName)
                : new BlockStatus(offset, ext.Length, BlockStatusFlags.None, ChainLength, -1, null);
        }
        var inner = backing.GetBlockStatus(offset, Math.Min(ext.Length, backing.Size - offset));
        return inner with { Depth = inner.Flags == BlockStatusFlags.None ? ChainLength : inner.Depth + 1 };
    }
}
