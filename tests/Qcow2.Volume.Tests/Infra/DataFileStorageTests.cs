using Qcow2.Tests.Shared;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;
using static Qcow2.Volume.Tests.Image.ImageTestKit;

namespace Qcow2.Volume.Tests.Infra;

/// <summary>
/// <see cref="Qcow2OpenOptions.DataFileStorage"/>: the caller hands the image the storage of its
/// external data file instead of the image opening the file it names.
/// </summary>
public sealed class DataFileStorageTests
{
    private const int ClusterSize = 4096;

    /// <summary>An image in memory whose options name data file "d.data", held by <paramref name="data"/>.</summary>
    private static MemoryStorage CreateInMemory(MemoryStorage data, bool raw, long size = 256 * 1024)
    {
        var image = new MemoryStorage("image");
        Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = size, ClusterSize = ClusterSize, DataFile = "d.data", DataFileRaw = raw }, data);
        return image;
    }

    private static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Write_DataFileIsMemoryStorage_LandsAtTheGuestOffsetInThatStorageAndReadsBack(bool raw)
    {
        var data = new MemoryStorage("data");
        var imageStorage = CreateInMemory(data, raw);
        // Unaligned, cluster-crossing and whole-cluster writes.
        (long Offset, byte[] Bytes)[] writes =
        [
            (1000, Pattern(70_000, 1)),
            (20 * ClusterSize, Pattern(ClusterSize, 2)),
            (200_000 - 7, Pattern(9, 3)),
        ];
        // The default policy denies every named file: the handed-over storage needs no policy check.
        var options = new Qcow2OpenOptions { DataFileStorage = data };
        using (var image = Qcow2Image.Open(imageStorage, options))
        {
            Assert.Equal("d.data", image.Info.DataFile);
            Assert.Equal(raw, image.Info.DataFileRaw);
            foreach (var (offset, bytes) in writes) image.Write(offset, bytes);
            image.Flush();
        }

        // The spec fixes the host offset of a data-file cluster to its guest offset.
        foreach (var (offset, bytes) in writes)
        {
            var stored = new byte[bytes.Length];
            Assert.Equal(bytes.Length, data.Read(offset, stored));
            AssertSameBytes(bytes, stored, $"data storage at 0x{offset:x}");
        }
        // Nothing of the guest data went into the image file.
        var imageBytes = imageStorage.ToArray();
        foreach (var (_, bytes) in writes)
            Assert.True(imageBytes.AsSpan().IndexOf(bytes.AsSpan(0, Math.Min(bytes.Length, 64))) < 0, "guest data found in the image file");

        using (var reopened = Qcow2Image.Open(imageStorage, new Qcow2OpenOptions { DataFileStorage = data, ReadOnly = true }))
        {
            var expected = new byte[reopened.Size];
            foreach (var (offset, bytes) in writes) bytes.CopyTo(expected, offset);
            AssertSameBytes(expected, ReadAll(reopened), "read back through the data file storage");
        }
        GeometryCheckClean(imageStorage);
    }

    [Fact]
    public void Dispose_DataFileStorageGiven_LeavesItOpenForTheCaller()
    {
        var data = new DisposeCountingStorage(new MemoryStorage("data"));
        var imageStorage = new MemoryStorage("image");
        Qcow2Creator.Create(imageStorage, new Qcow2CreateOptions { Size = 64 * 1024, ClusterSize = ClusterSize, DataFile = "d.data" }, data);
        int flushesAtCreate = data.Flushes;
        using (var image = Qcow2Image.Open(imageStorage, new Qcow2OpenOptions { DataFileStorage = data }))
            image.Write(0, new byte[] { 7, 8, 9 });
        Assert.Equal(0, data.Disposals);
        Assert.True(data.Flushes > flushesAtCreate, "closing the image did not flush the data file storage");
        Assert.Equal([7, 8, 9], ReadStorage(data, 0, 3));
    }

    [Fact]
    public void Open_DataFileStorageForImageWithoutDataFile_ThrowsArgumentException()
    {
        var imageStorage = new MemoryStorage("image");
        Qcow2Creator.Create(imageStorage, new Qcow2CreateOptions { Size = 64 * 1024 });
        Assert.Throws<ArgumentException>(() => Qcow2Image.Open(imageStorage, new Qcow2OpenOptions { DataFileStorage = new MemoryStorage() }));
    }

    [Fact]
    public void Open_ReadOnlyDataFileStorageForWritableOpen_ThrowsArgumentException()
    {
        var data = new MemoryStorage("data");
        var imageStorage = CreateInMemory(data, raw: false);
        var readOnlyData = new MemoryStorage(data.ToArray(), writable: false, "data-ro");
        Assert.Throws<ArgumentException>(() => Qcow2Image.Open(imageStorage, new Qcow2OpenOptions { DataFileStorage = readOnlyData }));
        using var image = Qcow2Image.Open(imageStorage, new Qcow2OpenOptions { DataFileStorage = readOnlyData, ReadOnly = true });
        Assert.True(image.IsReadOnly);
    }

    [Fact]
    public void Open_DataFileStorageWithBackingFile_BackingOpensWithoutIt()
    {
        // The backing image has no data file: had the option been passed down, its open would throw.
        using var dir = new TempDir();
        string backing = dir.File("base.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", backing, "64K");
        QemuTools.Io(backing, "qcow2", "write -P 0x5c 0 64K");
        var data = new MemoryStorage("data");
        var imageStorage = new MemoryStorage("image");
        Qcow2Creator.Create(imageStorage, new Qcow2CreateOptions
        {
            Size = 64 * 1024, ClusterSize = ClusterSize, DataFile = "d.data", BackingFile = backing, BackingFormat = "qcow2",
        }, data);
        using var image = Qcow2Image.Open(imageStorage, new Qcow2OpenOptions { DataFileStorage = data, ExternalFilePolicy = ExternalFilePolicy.AllowUnder(dir.Path) });
        image.Write(ClusterSize + 10, new byte[] { 1, 2 });
        var read = new byte[ClusterSize * 2];
        image.Read(0, read);
        Assert.All(read.AsSpan(0, ClusterSize + 10).ToArray(), b => Assert.Equal(0x5c, b));
        Assert.Equal([1, 2], read.AsSpan(ClusterSize + 10, 2).ToArray());
        Assert.Equal(0x5c, read[ClusterSize + 12]);
        Assert.Equal([1, 2], ReadStorage(data, ClusterSize + 10, 2));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Read_QemuImageWithDataFile_SameThroughStorageAsThroughPath(bool raw)
    {
        using var dir = new TempDir();
        string image = dir.File("q.qcow2");
        string dataPath = dir.File("q.data");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size=65536,data_file={dataPath},data_file_raw={(raw ? "on" : "off")}", image, "4M");
        Image.Qcow2ImageReadInteropTests.Populate(image, 65536, 4 << 20, compressed: false);

        byte[] viaPath;
        using (var byPath = Qcow2Image.Open(image, TrustedReadOnly)) viaPath = ReadAll(byPath);
        byte[] viaStorage;
        using (var imageFile = FileStorage.Open(image, writable: false))
        using (var dataFile = FileStorage.Open(dataPath, writable: false))
        using (var byStorage = Qcow2Image.Open(imageFile, new Qcow2OpenOptions { ReadOnly = true, DataFileStorage = dataFile }))
        {
            Assert.Equal(dataPath, byStorage.Info.DataFile);
            viaStorage = ReadAll(byStorage);
        }
        AssertSameBytes(viaPath, viaStorage, "through the data file storage");
        AssertSameBytes(QemuRaw(dir, image), viaStorage, "qemu-img convert");
    }

    [Fact]
    public void Write_ThroughDataFileStorageOnQemuImage_QemuReadsTheWrittenData()
    {
        using var dir = new TempDir();
        string image = dir.File("w.qcow2");
        string dataPath = dir.File("w.data");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size=16384,extended_l2=on,data_file={dataPath}", image, "1M");
        var expected = new byte[1 << 20];
        using (var imageFile = FileStorage.Open(image, writable: true))
        using (var dataFile = FileStorage.Open(dataPath, writable: true))
        using (var img = Qcow2Image.Open(imageFile, new Qcow2OpenOptions { DataFileStorage = dataFile }))
        {
            var a = Pattern(40_000, 11);
            var b = Pattern(512, 12);
            img.Write(5000, a);
            img.Write(700_000, b);
            img.WriteZeroes(10_000, 3000);
            a.CopyTo(expected, 5000);
            b.CopyTo(expected, 700_000);
            Array.Clear(expected, 10_000, 3000);
        }
        AssertQemuCheckClean(image);
        AssertSameBytes(expected, QemuRaw(dir, image), "qemu-img convert after our writes");
    }

    private static void GeometryCheckClean(IStorage imageStorage)
    {
        var result = Qcow2Checker.Check(imageStorage, CheckOptions.ReadOnly);
        Assert.True(result.IsClean, $"check: {result.Corruptions} corruptions, {result.Leaks} leaks, {result.CheckErrors} errors");
    }

    private static byte[] ReadStorage(IStorage storage, long offset, int length)
    {
        var bytes = new byte[length];
        Assert.Equal(length, storage.Read(offset, bytes));
        return bytes;
    }

    /// <summary>Passes everything through and counts disposals and flushes.</summary>
    private sealed class DisposeCountingStorage(IStorage inner) : IStorage
    {
        public int Disposals { get; private set; }
        public int Flushes { get; private set; }
        public long Length => inner.Length;
        public bool CanWrite => inner.CanWrite;
        public string Name => inner.Name;
        public int Read(long offset, Span<byte> destination) => inner.Read(offset, destination);
        public ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default) => inner.ReadAsync(offset, destination, cancellationToken);
        public void Write(long offset, ReadOnlySpan<byte> source) => inner.Write(offset, source);
        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default) => inner.WriteAsync(offset, source, cancellationToken);
        public void Flush()
        {
            Flushes++;
            inner.Flush();
        }
        public ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            Flush();
            return ValueTask.CompletedTask;
        }
        public void SetLength(long length) => inner.SetLength(length);
        public void Dispose() => Disposals++;
        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
