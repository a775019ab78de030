using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Caching;

/// <summary>Writes one dirty cache entry back to storage; the owner decides what must reach the disk first.</summary>
internal delegate void CacheWriteBack(long key, ReadOnlySpan<byte> data);

/// <summary>
/// A fixed-capacity cache of equally sized slices of on-disk metadata tables (L2 tables or refcount
/// blocks), keyed by the slice's host offset, with CLOCK (second-chance, an O(1) approximation of
/// least-recently-used) eviction and dirty tracking.
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
    private readonly bool[] _referenced;
    private readonly bool[] _dirty;
    private readonly Dictionary<long, int> _index;
    private readonly CacheWriteBack _writeBack;
    private int _hand;
    private readonly int[] _freeSlots;
    private int _freeCount;
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
        _referenced = new bool[capacityEntries];
        _freeSlots = new int[capacityEntries];
        for (int i = 0; i < capacityEntries; i++) _freeSlots[i] = capacityEntries - 1 - i;
        _freeCount = capacityEntries;
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
            _referenced[slot] = true;
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
        _referenced[slot] = true;
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
        bool small = _dirtyCount <= 256;
        Span<int> order = small ? stackalloc int[_dirtyCount] : new int[_dirtyCount];
        Span<long> keys = small ? stackalloc long[_dirtyCount] : new long[_dirtyCount];
        int n = 0;
        for (int i = 0; i < _keys.Length && n < order.Length; i++)
        {
            if (!_dirty[i]) continue;
            order[n] = i;
            keys[n++] = _keys[i];
        }
        order = order[..n];
        // In host-offset order, so that the writes are sequential.
        keys[..n].Sort(order);
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
        _referenced[slot] = false;
        if (_dirty[slot])
        {
            _dirty[slot] = false;
            _dirtyCount--;
        }
        _freeSlots[_freeCount++] = slot;
        _used--;
    }

    private int TakeSlot(long key)
    {
        int slot;
        if (_freeCount > 0)
        {
            slot = _freeSlots[--_freeCount];
            _used++;
        }
        else
        {
            // Second chance: skip (and clear) recently referenced entries.
            while (_referenced[_hand])
            {
                _referenced[_hand] = false;
                _hand = (_hand + 1) % Capacity;
            }
            slot = _hand;
            _hand = (_hand + 1) % Capacity;
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
        _referenced[slot] = true;
        return slot;
    }
}
