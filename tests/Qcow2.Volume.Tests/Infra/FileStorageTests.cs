using Qcow2.Tests.Shared;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Infra;

public sealed class FileStorageTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Open_ReadOnly_RefusesWritesAndSetLength()
    {
        var path = _dir.File("ro.bin");
        File.WriteAllBytes(path, new byte[] { 1, 2, 3, 4 });
        using var s = FileStorage.Open(path, writable: false);
        Assert.False(s.CanWrite);
        Assert.Equal(4, s.Length);
        Assert.Throws<NotSupportedException>(() => s.Write(0, new byte[1]));
        Assert.Throws<NotSupportedException>(() => s.SetLength(0));
        var buf = new byte[4];
        Assert.Equal(4, s.Read(0, buf));
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, buf);
    }

    [Fact]
    public void Open_MissingFile_ThrowsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => FileStorage.Open(_dir.File("nope.bin")));
    }

    [Fact]
    public void Create_NoOverwriteOnExistingFile_ThrowsIOException()
    {
        var path = _dir.File("x.bin");
        File.WriteAllBytes(path, new byte[1]);
        Assert.Throws<IOException>(() => FileStorage.Create(path, overwrite: false));
    }

    [Fact]
    public void Write_ThenFlushAndDispose_BytesAreInTheFile()
    {
        var path = _dir.File("w.bin");
        var data = StorageContractTests.Pattern(5000, 4);
        using (var s = FileStorage.Create(path))
        {
            s.Write(100, data);
            s.Flush();
        }
        var onDisk = File.ReadAllBytes(path);
        Assert.Equal(5100, onDisk.Length);
        Assert.Equal(data, onDisk.AsSpan(100).ToArray());
    }

    [Fact]
    public async Task Flush_WithoutFlushToDisk_SucceedsAndBytesAreInTheFile()
    {
        var created = _dir.File("u1.bin");
        var opened = _dir.File("u2.bin");
        File.WriteAllBytes(opened, new byte[8]);
        var data = StorageContractTests.Pattern(3000, 7);
        using (var a = FileStorage.Create(created, overwrite: true, flushToDisk: false))
        using (var b = FileStorage.Open(opened, writable: true, flushToDisk: false))
        {
            foreach (var s in new[] { a, b })
            {
                s.Write(8, data);
                s.Flush();
                await s.FlushAsync();
            }
        }
        foreach (var path in new[] { created, opened })
        {
            var onDisk = File.ReadAllBytes(path);
            Assert.Equal(3008, onDisk.Length);
            Assert.Equal(data, onDisk.AsSpan(8).ToArray());
        }
    }

    [Fact]
    public void Length_AfterOtherProcessGrowsFile_RefreshLengthSeesIt()
    {
        var path = _dir.File("g.bin");
        File.WriteAllBytes(path, new byte[10]);
        using var s = FileStorage.Open(path);
        using (var other = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            other.SetLength(50);
        Assert.Equal(10, s.Length);
        Assert.Equal(50, s.RefreshLength());
        Assert.Equal(50, s.Length);
    }

    [Fact]
    public void Allocate_PastTheEnd_GrowsFileWithZerosAndKeepsContent()
    {
        var path = _dir.File("a.bin");
        using var s = FileStorage.Create(path);
        s.Write(0, new byte[] { 9, 9, 9 });
        s.Allocate(0, 1 << 20);
        Assert.Equal(1 << 20, s.Length);
        Assert.Equal(1 << 20, new FileInfo(path).Length);
        var buf = new byte[1 << 20];
        s.Read(0, buf);
        Assert.Equal(new byte[] { 9, 9, 9 }, buf[..3]);
        Assert.All(buf[3..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void Dispose_Twice_DoesNotThrowAndLaterUseThrowsObjectDisposed()
    {
        var s = FileStorage.Create(_dir.File("d.bin"));
        s.Dispose();
        s.Dispose();
        Assert.Throws<ObjectDisposedException>(() => s.Read(0, new byte[1]));
    }
}
