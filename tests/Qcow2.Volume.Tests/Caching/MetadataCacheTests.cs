using Qcow2.Volume.Caching;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Caching;

public sealed class MetadataCacheTests
{
    private static MemoryStorage Storage()
    {
        var bytes = new byte[8 * 512];
        for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i / 512 + 1);
        return new MemoryStorage(bytes);
    }

    [Fact]
    public void Get_Miss_LoadsFromStorageAndCountsMissThenHit()
    {
        var written = new List<long>();
        var cache = new MetadataCache(512, 2, (k, _) => written.Add(k));
        var storage = Storage();
        int slot = cache.Get(1024, storage);
        Assert.Equal(3, cache.Entry(slot)[0]);
        cache.Get(1024, storage);
        var stats = cache.Statistics;
        Assert.Equal((1L, 1L, 0L, 1024L, 512L), (stats.Hits, stats.Misses, stats.Evictions, stats.CapacityBytes, stats.UsedBytes));
        Assert.Empty(written);
    }

    [Fact]
    public void Get_Full_EvictsLeastRecentlyUsedAndWritesBackOnlyDirty()
    {
        var written = new List<(long Key, byte First)>();
        var cache = new MetadataCache(512, 2, (k, d) => written.Add((k, d[0])));
        var storage = Storage();
        int a = cache.Get(0, storage);
        cache.Get(512, storage);
        cache.Entry(a)[0] = 0xaa;
        cache.MarkDirty(a);
        cache.Get(512, storage);          // 0 is now the least recently used
        cache.Get(1024, storage);         // evicts 0, which is dirty
        Assert.Equal([(0L, (byte)0xaa)], written);
        cache.Get(1536, storage);         // evicts 512, clean: nothing written
        Assert.Single(written);
        Assert.Equal(2, cache.Statistics.Evictions);
        Assert.False(cache.TryPeek(0, out _));
    }

    [Fact]
    public void WriteBackAll_DirtyEntries_WrittenInKeyOrderOnce()
    {
        var written = new List<long>();
        var cache = new MetadataCache(512, 4, (k, _) => written.Add(k));
        var storage = Storage();
        foreach (long key in new long[] { 2048, 0, 1024 }) cache.MarkDirty(cache.Get(key, storage));
        cache.Get(512, storage);
        Assert.True(cache.HasDirty);
        cache.WriteBackAll();
        cache.WriteBackAll();
        Assert.Equal([0L, 1024L, 2048L], written);
        Assert.False(cache.HasDirty);
    }

    [Fact]
    public void InsertZeroedAndInvalidate_DropWithoutWriting()
    {
        var written = new List<long>();
        var cache = new MetadataCache(512, 4, (k, _) => written.Add(k));
        int slot = cache.InsertZeroed(4096);
        Assert.True(cache.Entry(slot).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(cache.HasDirty);
        cache.Invalidate(4096, 512);
        Assert.False(cache.HasDirty);
        Assert.False(cache.TryPeek(4096, out _));
        cache.WriteBackAll();
        Assert.Empty(written);
        Assert.Equal(0, cache.Statistics.UsedBytes);
    }
}
