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
    private Dictionary<long, UncertainChunk> _uncertain;
    private readonly Dictionary<string, ReferenceDisk> _snapshots = new(StringComparer.Ordinal);

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

    /// <summary>A deep copy (used to remember the state at the last flush), snapshots included.</summary>
    public ReferenceDisk Clone()
    {
        var copy = CloneContent();
        foreach (var (name, snapshot) in _snapshots) copy._snapshots[name] = snapshot.CloneContent();
        return copy;
    }

    private ReferenceDisk CloneContent()
    {
        var layers = _layers.Select(l => l.Clone()).ToArray();
        var uncertain = _uncertain.ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        return new ReferenceDisk(layers, uncertain);
    }

    /// <summary>Names of the internal snapshots the model holds.</summary>
    public IReadOnlyCollection<string> SnapshotNames => _snapshots.Keys;

    /// <summary>Takes an internal snapshot: a frozen copy of the guest view (uncertain bytes stay uncertain in it).</summary>
    public void TakeSnapshot(string name)
    {
        if (_snapshots.ContainsKey(name)) throw new ArgumentException($"snapshot '{name}' exists", nameof(name));
        _snapshots[name] = CloneContent();
    }

    /// <summary>The model of a snapshot's content (verify reads of the snapshot against it).</summary>
    public ReferenceDisk Snapshot(string name) => _snapshots[name];

    /// <summary>Deletes a snapshot; the guest view does not change.</summary>
    public void DeleteSnapshot(string name)
    {
        if (!_snapshots.Remove(name)) throw new ArgumentException($"no snapshot '{name}'", nameof(name));
    }

    /// <summary>Reverts the guest view to a snapshot (qemu-img snapshot -a); the snapshot stays.</summary>
    public void RevertToSnapshot(string name)
    {
        var snapshot = _snapshots[name];
        if (snapshot.Size != Size) throw new InvalidOperationException("reverting across a resize is not modelled");
        _layers[0] = snapshot._layers[0].Clone();
        _uncertain = snapshot._uncertain.ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
    }

    /// <summary>Sets bytes of a backing layer (layer ≥ 1) when building the chain.</summary>
    public void WriteLayer(int layer, long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(_layers[layer].Size, offset, data.Length);
        _layers[layer].SetRange(offset, data);
    }

    /// <summary>A guest write to the top layer.</summary>
    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(Size, offset, data.Length);
        ClearUncertain(offset, data.Length);
        _layers[0].SetRange(offset, data);
    }

    /// <summary>Write-zeroes (with or without unmap): the range reads as zero afterwards.</summary>
    public void WriteZeroes(long offset, long length)
    {
        CheckRange(Size, offset, length);
        ClearUncertain(offset, length);
        var zeros = new byte[ChunkSize];
        for (long done = 0; done < length;)
        {
            var n = (int)Math.Min(ChunkSize, length - done);
            _layers[0].SetRange(offset + done, zeros.AsSpan(0, n));
            done += n;
        }
    }

    /// <summary>Discard: each byte may afterwards read as before, as zero, or as the backing file.</summary>
    public void Discard(long offset, long length)
    {
        CheckRange(Size, offset, length);
        for (long done = 0; done < length;)
        {
            var o = offset + done;
            var key = o / ChunkSize;
            var start = (int)(o % ChunkSize);
            var n = (int)Math.Min(length - done, ChunkSize - start);
            var chunk = GetUncertainChunk(o);
            for (var i = start; i < start + n; i++)
            {
                // Already uncertain: its allowed values stay the same (zero and backing are already in).
                if (chunk.Contains(i)) continue;
                var at = key * ChunkSize + i;
                chunk.Add(i, ReadFromLayers(at, 0, key, i), ReadFromLayers(at, 1, key, i));
            }
            done += n;
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
        var expected = new byte[Math.Min(observed.Length, ChunkSize)];
        for (var done = 0; done < observed.Length;)
        {
            // One chunk at a time: the layers' chunks are looked up once, not per byte.
            var o = offset + done;
            var n = (int)Math.Min(observed.Length - done, ChunkSize - o % ChunkSize);
            var part = observed.Slice(done, n);
            _uncertain.TryGetValue(o / ChunkSize, out var uncertain);
            if (uncertain is { Count: 0 }) uncertain = null;
            ReadChunkPart(o, expected.AsSpan(0, n), 0);
            if (uncertain is null && part.SequenceEqual(expected.AsSpan(0, n)))
            {
                done += n;
                continue;
            }
            for (var i = 0; i < n; i++)
            {
                var at = o + i;
                if (ignore is not null && ignore(at)) continue;
                var index = (int)(at % ChunkSize);
                if (uncertain is not null && uncertain.Contains(index))
                {
                    var (prior, below) = uncertain.Get(index);
                    var actual = part[i];
                    if (actual != prior && actual != below && actual != 0)
                        return Describe(at, observed, done + i, $"one of 0x{prior:x2} (before the discard), 0x00, 0x{below:x2} (backing)");
                    uncertain.Remove(index);
                    _layers[0].Set(at, actual);
                    continue;
                }
                if (part[i] != expected[i]) return Describe(at, observed, done + i, $"0x{expected[i]:x2}");
            }
            done += n;
        }
        return null;
    }

    /// <summary>Fills <paramref name="destination"/> (inside one chunk) with what reads through the chain from <paramref name="firstLayer"/>.</summary>
    private void ReadChunkPart(long offset, Span<byte> destination, int firstLayer)
    {
        // Overlay the layers bottom-up: a layer's bytes hide those below; past a layer's end the
        // chain reads zero whatever lies below.
        var key = offset / ChunkSize;
        var start = (int)(offset % ChunkSize);
        destination.Clear();
        for (var l = _layers.Length - 1; l >= firstLayer; l--)
        {
            var layer = _layers[l];
            var inside = (int)Math.Clamp(layer.Size - offset, 0, destination.Length);
            destination[inside..].Clear();
            layer.Overlay(key, start, destination[..inside]);
        }
    }

    /// <summary>The settled content of a range; throws when a byte is still uncertain.</summary>
    public void ReadExpected(long offset, Span<byte> destination)
    {
        CheckRange(Size, offset, destination.Length);
        for (var done = 0; done < destination.Length;)
        {
            var o = offset + done;
            var n = (int)Math.Min(destination.Length - done, ChunkSize - o % ChunkSize);
            if (_uncertain.TryGetValue(o / ChunkSize, out var uncertain) && uncertain.Count > 0)
            {
                for (var i = 0; i < n; i++)
                {
                    if (uncertain.Contains((int)((o + i) % ChunkSize)))
                        throw new InvalidOperationException($"model byte at 0x{o + i:x} is still uncertain; verify the range through the image first");
                }
            }
            ReadChunkPart(o, destination.Slice(done, n), 0);
            done += n;
        }
    }

    /// <summary>
    /// What each byte of a range may read as, without settling anything: <paramref name="values"/>
    /// gets the settled value (for an uncertain byte, its value before the discard);
    /// <paramref name="uncertain"/> marks the uncertain bytes, which may also read as zero or as
    /// their backing value, put in <paramref name="below"/> (zero elsewhere).
    /// </summary>
    public void ReadPossible(long offset, Span<byte> values, Span<byte> below, Span<bool> uncertain)
    {
        CheckRange(Size, offset, values.Length);
        if (below.Length != values.Length || uncertain.Length != values.Length) throw new ArgumentException("the spans differ in length", nameof(below));
        below.Clear();
        uncertain.Clear();
        for (var done = 0; done < values.Length;)
        {
            var o = offset + done;
            var n = (int)Math.Min(values.Length - done, ChunkSize - o % ChunkSize);
            ReadChunkPart(o, values.Slice(done, n), 0);
            if (_uncertain.TryGetValue(o / ChunkSize, out var chunk) && chunk.Count > 0)
            {
                for (var i = 0; i < n; i++)
                {
                    var index = (int)((o + i) % ChunkSize);
                    if (!chunk.Contains(index)) continue;
                    var (prior, backing) = chunk.Get(index);
                    values[done + i] = prior;
                    below[done + i] = backing;
                    uncertain[done + i] = true;
                }
            }
            done += n;
        }
    }

    /// <summary>The value a byte must have, reading through the chain from <paramref name="firstLayer"/>.</summary>
    private byte ReadFromLayers(long offset, int firstLayer) =>
        ReadFromLayers(offset, firstLayer, offset / ChunkSize, (int)(offset % ChunkSize));

    private byte ReadFromLayers(long offset, int firstLayer, long key, int index)
    {
        for (var l = firstLayer; l < _layers.Length; l++)
        {
            var layer = _layers[l];
            if (offset >= layer.Size) return 0;
            if (layer.TryGet(key, index, out var value)) return value;
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

    private void ClearUncertain(long offset, long length)
    {
        if (_uncertain.Count == 0) return;
        for (var key = offset / ChunkSize; key <= (offset + length - 1) / ChunkSize; key++)
        {
            if (!_uncertain.TryGetValue(key, out var chunk) || chunk.Count == 0) continue;
            var from = Math.Max(offset, key * ChunkSize);
            var to = Math.Min(offset + length, (key + 1) * ChunkSize);
            for (var o = from; o < to; o++) chunk.Remove((int)(o % ChunkSize));
        }
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

        public void SetRange(long offset, ReadOnlySpan<byte> data)
        {
            for (var done = 0; done < data.Length;)
            {
                var o = offset + done;
                var key = o / ChunkSize;
                var start = (int)(o % ChunkSize);
                var n = Math.Min(data.Length - done, ChunkSize - start);
                if (!_chunks.TryGetValue(key, out var chunk))
                {
                    chunk = new Chunk();
                    _chunks[key] = chunk;
                    if (key == _lastKey) _lastKey = -1;
                }
                data.Slice(done, n).CopyTo(chunk.Data.AsSpan(start));
                for (var i = start; i < start + n; i++) chunk.Present[i >> 6] |= 1UL << (i & 63);
                done += n;
            }
        }

        /// <summary>Copies the bytes this layer holds over <paramref name="destination"/> (chunk <paramref name="key"/> from <paramref name="start"/>).</summary>
        public void Overlay(long key, int start, Span<byte> destination)
        {
            if (destination.IsEmpty || !_chunks.TryGetValue(key, out var chunk)) return;
            for (var i = 0; i < destination.Length;)
            {
                var bit = start + i;
                var word = chunk.Present[bit >> 6];
                if ((bit & 63) == 0 && word == ulong.MaxValue && destination.Length - i >= 64)
                {
                    chunk.Data.AsSpan(bit, 64).CopyTo(destination[i..]);
                    i += 64;
                    continue;
                }
                if ((word & (1UL << (bit & 63))) != 0) destination[i] = chunk.Data[bit];
                i++;
            }
        }

        public void Set(long offset, byte value)
        {
            var key = offset / ChunkSize;
            if (!_chunks.TryGetValue(key, out var chunk))
            {
                chunk = new Chunk();
                _chunks[key] = chunk;
                if (key == _lastKey) _lastKey = -1;
            }
            var i = (int)(offset % ChunkSize);
            chunk.Data[i] = value;
            chunk.Present[i >> 6] |= 1UL << (i & 63);
        }

        public bool TryGet(long key, int i, out byte value)
        {
            value = 0;
            // The last chunk looked up is remembered: reads walk chunks in order.
            if (key != _lastKey)
            {
                _chunks.TryGetValue(key, out _lastChunk);
                _lastKey = key;
            }
            var chunk = _lastChunk;
            if (chunk is null || (chunk.Present[i >> 6] & (1UL << (i & 63))) == 0) return false;
            value = chunk.Data[i];
            return true;
        }

        private long _lastKey = -1;
        private Chunk? _lastChunk;

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
