namespace Qcow2.Property.Tests.Model;

/// <summary>
/// The reference model of a guest disk: one sparse map of bytes per layer of a backing chain.
/// Layer 0 is the image under test (the only one that changes); layer 1 is its backing file, and so
/// on. A byte reads from the first layer that holds it; past the end of a layer, and below the last
/// layer, bytes read as zero. Deliberately simple: per-byte bookkeeping in 4 KiB chunks, no cleverness.
/// </summary>
/// <remarks>
/// Discard leaves bytes whose content the format does not pin down (QEMU keeps partial clusters,
/// zeroes whole ones on v3, and may expose the backing file on v2). The model records such bytes as
/// uncertain, with the values they may take (their previous content, zero, or the backing content).
/// The first observation of an uncertain byte settles it: <see cref="Verify"/> accepts any allowed
/// value and from then on expects exactly that one.
/// </remarks>
internal sealed class ReferenceDisk
{
    internal const int ChunkSize = 4096;

    private readonly SparseLayer[] _layers;
    private readonly Dictionary<long, UncertainChunk> _uncertain;

    public ReferenceDisk(long size, IReadOnlyList<long>? backingSizes = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        var layers = new List<SparseLayer> { new(size) };
        foreach (var s in backingSizes ?? Array.Empty<long>()) layers.Add(new SparseLayer(s));
        _layers = layers.ToArray();
        _uncertain = new Dictionary<long, UncertainChunk>();
    }

    private ReferenceDisk(SparseLayer[] layers, Dictionary<long, UncertainChunk> uncertain)
    {
        _layers = layers;
        _uncertain = uncertain;
    }

    /// <summary>The guest size (the size of the top layer).</summary>
    public long Size => _layers[0].Size;

    /// <summary>Number of layers, the top one included.</summary>
    public int LayerCount => _layers.Length;

    /// <summary>Whether some byte is still uncertain (discarded and not yet observed).</summary>
    public bool HasUncertainBytes => _uncertain.Values.Any(c => c.Count > 0);

    /// <summary>A deep copy (used to remember the state at the last flush).</summary>
    public ReferenceDisk Clone()
    {
        var layers = _layers.Select(l => l.Clone()).ToArray();
        var uncertain = _uncertain.ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        return new ReferenceDisk(layers, uncertain);
    }

    /// <summary>Sets bytes of a backing layer (layer ≥ 1) when building the chain.</summary>
    public void WriteLayer(int layer, long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(_layers[layer].Size, offset, data.Length);
        for (var i = 0; i < data.Length; i++) _layers[layer].Set(offset + i, data[i]);
    }

    /// <summary>A guest write to the top layer.</summary>
    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(Size, offset, data.Length);
        for (var i = 0; i < data.Length; i++)
        {
            ClearUncertain(offset + i);
            _layers[0].Set(offset + i, data[i]);
        }
    }

    /// <summary>Write-zeroes (with or without unmap): the range reads as zero afterwards.</summary>
    public void WriteZeroes(long offset, long length)
    {
        CheckRange(Size, offset, length);
        for (long i = 0; i < length; i++)
        {
            ClearUncertain(offset + i);
            _layers[0].Set(offset + i, 0);
        }
    }

    /// <summary>Discard: each byte may afterwards read as before, as zero, or as the backing file.</summary>
    public void Discard(long offset, long length)
    {
        CheckRange(Size, offset, length);
        for (long i = 0; i < length; i++)
        {
            var o = offset + i;
            var chunk = GetUncertainChunk(o);
            var index = (int)(o % ChunkSize);
            // Already uncertain: its allowed values stay the same (zero and backing are already in).
            if (chunk.Contains(index)) continue;
            chunk.Add(index, ReadFromLayers(o, 0), ReadFromLayers(o, 1));
        }
    }

    /// <summary>
    /// Compares bytes read from the image with the model. Uncertain bytes accept any allowed value and
    /// are then settled to it. Returns null when everything matches, else a description of the first
    /// mismatch (offset, expected and actual values).
    /// </summary>
    public string? Verify(long offset, ReadOnlySpan<byte> observed, Func<long, bool>? ignore = null)
    {
        CheckRange(Size, offset, observed.Length);
        for (var i = 0; i < observed.Length; i++)
        {
            var o = offset + i;
            if (ignore is not null && ignore(o)) continue;
            if (TryGetUncertain(o, out var chunk, out var index))
            {
                var (prior, below) = chunk.Get(index);
                var actual = observed[i];
                if (actual != prior && actual != below && actual != 0)
                {
                    return Describe(o, observed, i, $"one of 0x{prior:x2} (before the discard), 0x00, 0x{below:x2} (backing)");
                }
                chunk.Remove(index);
                _layers[0].Set(o, actual);
                continue;
            }
            var expected = ReadFromLayers(o, 0);
            if (observed[i] != expected)
            {
                return Describe(o, observed, i, $"0x{expected:x2}");
            }
        }
        return null;
    }

    /// <summary>The settled content of a range; throws when a byte is still uncertain.</summary>
    public void ReadExpected(long offset, Span<byte> destination)
    {
        CheckRange(Size, offset, destination.Length);
        for (var i = 0; i < destination.Length; i++)
        {
            var o = offset + i;
            if (TryGetUncertain(o, out _, out _))
                throw new InvalidOperationException($"model byte at 0x{o:x} is still uncertain; verify the range through the image first");
            destination[i] = ReadFromLayers(o, 0);
        }
    }

    /// <summary>The value a byte must have, reading through the chain from <paramref name="firstLayer"/>.</summary>
    private byte ReadFromLayers(long offset, int firstLayer)
    {
        for (var l = firstLayer; l < _layers.Length; l++)
        {
            var layer = _layers[l];
            if (offset >= layer.Size) return 0;
            if (layer.TryGet(offset, out var value)) return value;
        }
        return 0;
    }

    private string Describe(long offset, ReadOnlySpan<byte> observed, int index, string expected)
    {
        var start = Math.Max(0, index - 8);
        var end = Math.Min(observed.Length, index + 8);
        var context = Convert.ToHexString(observed[start..end]).ToLowerInvariant();
        return $"guest byte 0x{offset:x}: expected {expected}, read 0x{observed[index]:x2} (read bytes 0x{offset - (index - start):x}..: {context})";
    }

    private void ClearUncertain(long offset)
    {
        if (TryGetUncertain(offset, out var chunk, out var index)) chunk.Remove(index);
    }

    private bool TryGetUncertain(long offset, out UncertainChunk chunk, out int index)
    {
        index = (int)(offset % ChunkSize);
        if (_uncertain.TryGetValue(offset / ChunkSize, out chunk!) && chunk.Contains(index)) return true;
        return false;
    }

    private UncertainChunk GetUncertainChunk(long offset)
    {
        var key = offset / ChunkSize;
        if (!_uncertain.TryGetValue(key, out var chunk))
        {
            chunk = new UncertainChunk();
            _uncertain[key] = chunk;
        }
        return chunk;
    }

    private static void CheckRange(long size, long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > size || length > size - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"range 0x{offset:x}+0x{length:x} outside the disk of 0x{size:x} bytes");
    }

    /// <summary>One layer: bytes that this layer holds, in 4 KiB chunks with a presence bitmap.</summary>
    private sealed class SparseLayer
    {
        private readonly Dictionary<long, Chunk> _chunks = new();

        public SparseLayer(long size) => Size = size;

        public long Size { get; }

        public SparseLayer Clone()
        {
            var copy = new SparseLayer(Size);
            foreach (var (key, chunk) in _chunks) copy._chunks[key] = chunk.Clone();
            return copy;
        }

        public void Set(long offset, byte value)
        {
            var key = offset / ChunkSize;
            if (!_chunks.TryGetValue(key, out var chunk))
            {
                chunk = new Chunk();
                _chunks[key] = chunk;
            }
            var i = (int)(offset % ChunkSize);
            chunk.Data[i] = value;
            chunk.Present[i >> 6] |= 1UL << (i & 63);
        }

        public bool TryGet(long offset, out byte value)
        {
            value = 0;
            if (!_chunks.TryGetValue(offset / ChunkSize, out var chunk)) return false;
            var i = (int)(offset % ChunkSize);
            if ((chunk.Present[i >> 6] & (1UL << (i & 63))) == 0) return false;
            value = chunk.Data[i];
            return true;
        }

        private sealed class Chunk
        {
            public byte[] Data = new byte[ChunkSize];
            public ulong[] Present = new ulong[ChunkSize / 64];

            public Chunk Clone() => new() { Data = (byte[])Data.Clone(), Present = (ulong[])Present.Clone() };
        }
    }

    /// <summary>Bytes of one chunk that are uncertain, with their two non-zero alternatives.</summary>
    private sealed class UncertainChunk
    {
        private byte[] _prior = new byte[ChunkSize];
        private byte[] _below = new byte[ChunkSize];
        private ulong[] _mask = new ulong[ChunkSize / 64];

        public int Count { get; private set; }

        public UncertainChunk Clone() => new()
        {
            _prior = (byte[])_prior.Clone(),
            _below = (byte[])_below.Clone(),
            _mask = (ulong[])_mask.Clone(),
            Count = Count,
        };

        public bool Contains(int i) => (_mask[i >> 6] & (1UL << (i & 63))) != 0;

        public void Add(int i, byte prior, byte below)
        {
            _prior[i] = prior;
            _below[i] = below;
            _mask[i >> 6] |= 1UL << (i & 63);
            Count++;
        }

        public (byte Prior, byte Below) Get(int i) => (_prior[i], _below[i]);

        public void Remove(int i)
        {
            if (!Contains(i)) return;
            _mask[i >> 6] &= ~(1UL << (i & 63));
            Count--;
        }
    }
}
