using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Infra;

public sealed class MemoryStorageTests
{
    [Fact]
    public void Write_AtHugeOffset_AllocatesOneChunkOnly()
    {
        var s = new MemoryStorage();
        long offset = 1L << 50;
        s.Write(offset, new byte[] { 42 });
        Assert.Equal(offset + 1, s.Length);
        Assert.Equal(MemoryStorage.ChunkSize, s.AllocatedBytes);
        var buf = new byte[2];
        Assert.Equal(1, s.Read(offset, buf));
        Assert.Equal(42, buf[0]);
    }

    [Fact]
    public void Write_SpanningChunkBoundary_ReadsBackAcrossIt()
    {
        var s = new MemoryStorage();
        var data = StorageContractTests.Pattern(3 * MemoryStorage.ChunkSize + 17, 5);
        s.Write(MemoryStorage.ChunkSize - 5, data);
        var back = new byte[data.Length];
        s.Read(MemoryStorage.ChunkSize - 5, back);
        Assert.Equal(data, back);
        Assert.Equal(5 * MemoryStorage.ChunkSize, s.AllocatedBytes);
    }

    [Fact]
    public void Constructor_WithContentsReadOnly_RefusesWritesAndReadsContents()
    {
        var s = new MemoryStorage(new byte[] { 1, 2, 3 }, writable: false);
        Assert.False(s.CanWrite);
        Assert.Equal(new byte[] { 1, 2, 3 }, s.ToArray());
        Assert.Throws<NotSupportedException>(() => s.Write(0, new byte[1]));
    }

    [Fact]
    public void Dispose_KeepsContents_SoTheStorageCanBeReopened()
    {
        var s = new MemoryStorage();
        s.Write(0, new byte[] { 7 });
        s.Dispose();
        Assert.Equal(new byte[] { 7 }, s.ToArray());
    }

    [Fact]
    public void Clone_IsIndependentOfTheOriginal()
    {
        var s = new MemoryStorage();
        s.Write(0, new byte[] { 1, 2 });
        var c = s.Clone();
        s.Write(0, new byte[] { 9 });
        Assert.Equal(new byte[] { 1, 2 }, c.ToArray());
        Assert.Equal(new byte[] { 9, 2 }, s.ToArray());
    }

    [Fact]
    public void SetLength_ToZero_DropsAllChunks()
    {
        var s = new MemoryStorage();
        s.Write(0, new byte[3 * MemoryStorage.ChunkSize]);
        s.SetLength(0);
        Assert.Equal(0, s.Length);
        Assert.Equal(0, s.AllocatedBytes);
    }
}
