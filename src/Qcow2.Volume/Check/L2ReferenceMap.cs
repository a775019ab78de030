namespace Qcow2.Volume.Check;

/// <summary>
/// L2 table offset → (total, active) reference weights: an open-addressing hash map on plain
/// arrays. It replaces a <c>Dictionary&lt;long, (long, long)&gt;</c> whose value-type generic code
/// ReadyToRun cannot precompile, so every check paid to JIT it; this class is precompiled.
/// Keys are non-negative file offsets; -1 marks an empty slot.
/// </summary>
internal sealed class L2ReferenceMap
{
    private long[] _keys = NewKeys(16);
    private long[] _total = new long[16];
    private long[] _active = new long[16];

    public int Count { get; private set; }

    private static long[] NewKeys(int capacity)
    {
        var keys = new long[capacity];
        for (int i = 0; i < keys.Length; i++) keys[i] = -1;   // a loop, not Fill<long>: no generic JIT
        return keys;
    }

    private static int Slot(long key, int mask)
    {
        ulong h = (ulong)key * 0x9E3779B97F4A7C15UL;
        return (int)(h >> 32) & mask;
    }

    /// <summary>Adds the weights to the key's entry, creating it at (0, 0) first.</summary>
    public void Add(long key, long total, long active)
    {
        if ((Count + 1) * 2 > _keys.Length) Grow();
        int mask = _keys.Length - 1;
        int i = Slot(key, mask);
        while (_keys[i] != -1 && _keys[i] != key) i = (i + 1) & mask;
        if (_keys[i] == -1)
        {
            _keys[i] = key;
            Count++;
        }
        _total[i] += total;
        _active[i] += active;
    }

    /// <summary>The weights of a key that is present.</summary>
    public (long Total, long Active) Get(long key)
    {
        int mask = _keys.Length - 1;
        int i = Slot(key, mask);
        while (_keys[i] != key)
        {
            if (_keys[i] == -1) return (0, 0);
            i = (i + 1) & mask;
        }
        return (_total[i], _active[i]);
    }

    /// <summary>The keys, in no particular order.</summary>
    public long[] Keys()
    {
        var result = new long[Count];
        int n = 0;
        foreach (long k in _keys)
            if (k != -1) result[n++] = k;
        return result;
    }

    public void Clear()
    {
        if (Count == 0) return;
        for (int i = 0; i < _keys.Length; i++) _keys[i] = -1;
        Array.Clear(_total);
        Array.Clear(_active);
        Count = 0;
    }

    private void Grow()
    {
        long[] oldKeys = _keys, oldTotal = _total, oldActive = _active;
        int capacity = oldKeys.Length * 2;
        _keys = NewKeys(capacity);
        _total = new long[capacity];
        _active = new long[capacity];
        Count = 0;
        for (int i = 0; i < oldKeys.Length; i++)
            if (oldKeys[i] != -1) Add(oldKeys[i], oldTotal[i], oldActive[i]);
    }
}
