using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Caching;

/// <summary>Writes one dirty cache entry back to storage; the owner decides what must reach the disk first.</summary>
internal delegate void CacheWriteBack(long key, ReadOnlySpan<byte> data);

/// <summary>
/// A fixed-capacity cache of equally sized slices of on-disk metadata tables (L2 tables or refcount
/// blocks), keyed by the slice's host offset, with least-recently-used eviction and dirty tracking.
/// All slices live in one array allocated at open, so lookups after warm-up allocate nothing.
/// </summary>
/// <remarks>
/// Not thread-safe: the owning image calls it under its metadata lock. A dirty entry is written
/// back through the owner's <see cref="CacheWriteBack"/> on eviction, so the owner can enforce the
/// crash-safe order (for L2 slices: data and refcount blocks on disk first).
/// </remarks>
internal sealed class MetadataCache
{
    private const long EmptyKey = -1;

    private readonly byte[] _buffer;
    private readonly long[] _keys;
    private readonly long[] _lastUse;
    private readonly bool[] _dirty;
    private readonly Dictionary<long, int> _index;
    private readonly CacheWriteBack _writeBack;
    private long _clock;
    private int _used;
    private int _dirtyCount;
    private long _hits;
    private long _misses;
    private long _evictions;

    public MetadataCache(int entrySize, int capacityEntries, CacheWriteBack writeBack)
    {
        EntrySize = entrySize;
        Capacity = capacityEntries;
        _buffer = GC.AllocateUninitializedArray<byte>(checked(entrySize * capacityEntries));
        _keys = new long[capacityEntries];
        Array.Fill(_keys, EmptyKey);
        _lastUse = new long[capacityEntries];
        _dirty = new bool[capacityEntries];
        _index = new Dictionary<long, int>(capacityEntries);
        _writeBack = writeBack;
    }

    public int EntrySize { get; }

    public int Capacity { get; }

    public bool HasDirty => _dirtyCount > 0;

    public CacheStatistics Statistics => new(
        Volatile.Read(ref _hits), Volatile.Read(ref _misses), Volatile.Read(ref _evictions),
        (long)EntrySize * Capacity, (long)EntrySize * Volatile.Read(ref _used));

    /// <summary>The slot holding <paramref name="key"/>, loading it from <paramref name="storage"/> on a miss (bytes past the end read as zeros).</summary>
    public int Get(long key, IStorage storage)
    {
        if (_index.TryGetValue(key, out int slot))
        {
            _hits++;
            _lastUse[slot] = ++_clock;
            return slot;
        }

        _misses++;
        slot = TakeSlot(key);
        var span = Entry(slot);
        int read = storage.Read(key, span);
        if (read < span.Length) span[Math.Max(read, 0)..].Clear();
        return slot;
    }

    /// <summary>A slot for <paramref name="key"/> filled with zeros (a freshly allocated table), marked dirty.</summary>
    public int InsertZeroed(long key)
    {
        if (!_index.TryGetValue(key, out int slot)) slot = TakeSlot(key);
        Entry(slot).Clear();
        MarkDirty(slot);
        _lastUse[slot] = ++_clock;
        return slot;
    }

    /// <summary>Whether <paramref name="key"/> is cached, without counting a hit or miss.</summary>
    public bool TryPeek(long key, out int slot) => _index.TryGetValue(key, out slot);

    public Span<byte> Entry(int slot) => _buffer.AsSpan(slot * EntrySize, EntrySize);

    public void MarkDirty(int slot)
    {
        if (!_dirty[slot])
        {
            _dirty[slot] = true;
            _dirtyCount++;
        }
    }

    /// <summary>Writes every dirty entry back (in host-offset order) and marks them clean.</summary>
    public void WriteBackAll()
    {
        if (_dirtyCount == 0) return;
        Span<int> order = _dirtyCount <= 256 ? stackalloc int[_dirtyCount] : new int[_dirtyCount];
        int n = 0;
        for (int i = 0; i < _keys.Length && n < order.Length; i++)
            if (_dirty[i]) order[n++] = i;
        order = order[..n];
        // Sort by key so that the writes are sequential (insertion sort: few dirty entries).
        for (int i = 1; i < order.Length; i++)
        {
            int v = order[i];
            int j = i - 1;
            while (j >= 0 && _keys[order[j]] > _keys[v]) { order[j + 1] = order[j]; j--; }
            order[j + 1] = v;
        }
        foreach (int slot in order)
        {
            _writeBack(_keys[slot], Entry(slot));
            _dirty[slot] = false;
            _dirtyCount--;
        }
    }

    /// <summary>Drops every entry whose key lies in [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>) without writing it.</summary>
    public void Invalidate(long start, long length)
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            long k = _keys[i];
            if (k != EmptyKey && (ulong)(k - start) < (ulong)length) Drop(i);
        }
    }

    private void Drop(int slot)
    {
        _index.Remove(_keys[slot]);
        _keys[slot] = EmptyKey;
        if (_dirty[slot])
        {
            _dirty[slot] = false;
            _dirtyCount--;
        }
        _used--;
    }

    private int TakeSlot(long key)
    {
        int slot;
        if (_used < Capacity)
        {
            slot = Array.IndexOf(_keys, EmptyKey);
            _used++;
        }
        else
        {
            slot = 0;
            long oldest = long.MaxValue;
            for (int i = 0; i < _lastUse.Length; i++)
            {
                if (_lastUse[i] < oldest) { oldest = _lastUse[i]; slot = i; }
            }
            if (_dirty[slot])
            {
                _writeBack(_keys[slot], Entry(slot));
                _dirty[slot] = false;
                _dirtyCount--;
            }
            _index.Remove(_keys[slot]);
            _evictions++;
        }
        _keys[slot] = key;
        _index[key] = slot;
        _lastUse[slot] = ++_clock;
        return slot;
    }
}
