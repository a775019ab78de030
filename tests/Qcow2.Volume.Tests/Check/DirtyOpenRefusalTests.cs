using System.Buffers.Binary;
using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Check;

/// <summary>
/// A read-write open of a dirty image (lazy refcounts, writer killed) repairs the refcounts first.
/// When that repair cannot be done the open is refused and the file is left as it was, so it still
/// opens read-only and a later repair still knows it has work to do.
/// </summary>
public sealed class DirtyOpenRefusalTests : IDisposable
{
    private const string RefusalStart = "Could not repair dirty image: ";
    private const string RefusalEnd = ". Open it read-only, or repair it with a check.";
    private const int DirtyByte = 79;   // low byte of incompatible_features (bytes 72-79); bit 0 is dirty

    private static readonly Qcow2OpenOptions ReadWrite = new() { ExternalFilePolicy = ExternalFilePolicy.AllowAll };
    private static readonly Qcow2OpenOptions ReadOnly = new() { ReadOnly = true, ExternalFilePolicy = ExternalFilePolicy.AllowAll };

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A lazy-refcount image whose writer qemu-io killed after writing 0x44 over the first MiB: dirty bit set, refcounts stale.</summary>
    private string MakeCrashedDirtyImage()
    {
        string image = _dir.File("crashed.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", image, "4M");
        var (code, _, _) = QemuTools.Run(QemuTools.QemuIo, "-f", "qcow2", "-c", "write -P 0x44 0 1M", "-c", "sigraise 9", image);
        Assert.NotEqual(0, code);
        Assert.Equal(1, File.ReadAllBytes(image)[DirtyByte] & 1);
        return image;
    }

    /// <summary>The read-only view still reads what the crashed writer wrote (all but <paramref name="skipCluster"/>, a damaged one).</summary>
    private static void AssertReadOnlyOpenReadsTheData(string image, int skipCluster = -1)
    {
        using var img = Qcow2Image.Open(image, ReadOnly);
        Assert.True(img.Info.Dirty);
        var cluster = new byte[65536];
        for (int c = 0; c < 32; c++)
        {
            if (c == skipCluster) continue;
            img.Read(c * 65536L, cluster);
            byte expected = c < 16 ? (byte)0x44 : (byte)0;
            Assert.True(Array.TrueForAll(cluster, b => b == expected), $"cluster {c}");
        }
    }

    [Fact]
    public void Open_DirtyImageWithReservedBitsInL2Entry_RefusedAndFileUnchanged()
    {
        string image = MakeCrashedDirtyImage();
        // Reserved bits in the L2 entry of guest cluster 3: a corruption the repair does not touch,
        // found after it has rebuilt the stale refcounts the crash left.
        using (var p = new ImagePatcher(image))
            p.SetL2(0, 3, p.L2(0, 3) | (1UL << 57));
        var before = File.ReadAllBytes(image);

        var e = Assert.Throws<Qcow2CorruptImageException>(() => Qcow2Image.Open(image, ReadWrite).Dispose());

        Assert.StartsWith(RefusalStart, e.Reason);
        Assert.Contains("1 corruption(s)", e.Reason);
        Assert.EndsWith(RefusalEnd, e.Reason);
        Assert.Equal(before, File.ReadAllBytes(image));
        AssertReadOnlyOpenReadsTheData(image, skipCluster: 3);
    }

    [Fact]
    public void Open_DirtyImageOnStorageWhoseWritesFail_RefusedAndFileUnchanged()
    {
        string image = MakeCrashedDirtyImage();
        var before = File.ReadAllBytes(image);

        using (var storage = new WriteFailingStorage(FileStorage.Open(image, writable: true), writesBeforeFailure: 0))
        {
            var e = Assert.Throws<IOException>(() => Qcow2Image.Open(storage, ReadWrite).Dispose());
            Assert.StartsWith(RefusalStart, e.Message);
            Assert.EndsWith(RefusalEnd, e.Message);
            Assert.IsType<IOException>(e.InnerException);
            Assert.Equal(WriteFailingStorage.InjectedMessage, e.InnerException!.Message);
            Assert.True(storage.FailedWrites > 0);
        }

        Assert.Equal(before, File.ReadAllBytes(image));
        AssertReadOnlyOpenReadsTheData(image);
    }

    /// <summary>Every write of a successful repair, counted once, so each can be made the one that fails.</summary>
    private int CountRepairWrites(string image)
    {
        string copy = _dir.File("count.qcow2");
        File.Copy(image, copy, overwrite: true);
        using var storage = new WriteFailingStorage(FileStorage.Open(copy, writable: true), int.MaxValue);
        using var img = Qcow2Image.Open(storage, ReadWrite);
        return storage.Writes;
    }

    [Fact]
    public void Open_DirtyImageWhoseRepairWriteFailsPartway_RefusedStaysDirtyAndALaterOpenRepairs()
    {
        string image = MakeCrashedDirtyImage();
        int writes = CountRepairWrites(image);
        Assert.True(writes >= 2, $"the repair wrote {writes} times");
        string work = _dir.File("work.qcow2");
        // Fail the first write, one in the middle, and the last (the header write clearing the dirty bit).
        foreach (int ok in new[] { 0, writes / 2, writes - 1 })
        {
            File.Copy(image, work, overwrite: true);
            using (var storage = new WriteFailingStorage(FileStorage.Open(work, writable: true), ok))
            {
                var e = Assert.Throws<IOException>(() => Qcow2Image.Open(storage, ReadWrite).Dispose());
                Assert.StartsWith(RefusalStart, e.Message);
                Assert.Equal(1, storage.FailedWrites);
            }
            // Still marked as needing a repair, whatever part of the repair reached the file.
            Assert.Equal(1, File.ReadAllBytes(work)[DirtyByte] & 1);
            AssertReadOnlyOpenReadsTheData(work);

            // A later read-write open on working storage repairs it.
            Qcow2Image.Open(work, ReadWrite).Dispose();
            var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "check", work);
            Assert.True(code == 0, $"failing write {ok + 1} of {writes}: {stdout}{stderr}");
            Assert.Equal(0, File.ReadAllBytes(work)[DirtyByte] & 1);
        }
    }

    [Fact]
    public void Open_DirtyImageRepairedWhileReadingAhead_SameBytesAsARepairOfACopy()
    {
        // 65 L2 tables (one per 512 MiB of guest) and their data: more than the checker reads in one
        // batch, so it reads the next batch on another thread while it drops the bad entries of this one.
        const int tables = 65;
        string image = _dir.File("wide.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", image, $"{tables * 512}M");
        var args = new List<string> { "-f", "qcow2" };
        for (int t = 0; t < tables; t++) { args.Add("-c"); args.Add($"write -P {t + 1} {t * 512}M 4k"); }
        args.Add("-c"); args.Add("sigraise 9");
        args.Add(image);
        var (code, _, _) = QemuTools.Run(QemuTools.QemuIo, args.ToArray());
        Assert.NotEqual(0, code);
        using (var p = new ImagePatcher(image))
        {
            Assert.Equal(1, (int)(p.U64(72) & 1));
            // In every table, guest cluster 1 points into the middle of cluster 0's data: dropped by the repair.
            for (int t = 0; t < tables; t++)
                p.SetL2(t, 1, p.L2(t, 0) + 0x200);
        }
        string copy = _dir.File("copy.qcow2");
        File.Copy(image, copy);

        using (var storage = FileStorage.Open(copy, writable: true))
        {
            var result = Qcow2Checker.Check(storage, new CheckOptions { Repair = RepairMode.All });
            Assert.True(result.IsClean, $"{result.Corruptions} corruptions, {result.CorruptionsFixed} fixed");
            Assert.True(result.CorruptionsFixed >= tables);
        }
        Qcow2Image.Open(image, ReadWrite).Dispose();

        Assert.Equal(File.ReadAllBytes(copy), File.ReadAllBytes(image));
        var (checkCode, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "check", image);
        Assert.True(checkCode == 0, stdout + stderr);
    }

    /// <summary>A file whose writes (and length changes) fail with <see cref="IOException"/> after the first few succeed.</summary>
    private sealed class WriteFailingStorage(IStorage inner, int writesBeforeFailure) : IStorage
    {
        public const string InjectedMessage = "Injected write failure";

        public int Writes { get; private set; }

        public int FailedWrites { get; private set; }

        public long Length => inner.Length;

        public bool CanWrite => true;

        public string Name => inner.Name;

        private void CountWrite()
        {
            if (Writes >= writesBeforeFailure)
            {
                FailedWrites++;
                throw new IOException(InjectedMessage);
            }
            Writes++;
        }

        public int Read(long offset, Span<byte> destination) => inner.Read(offset, destination);

        public ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default) =>
            inner.ReadAsync(offset, destination, cancellationToken);

        public void Write(long offset, ReadOnlySpan<byte> source)
        {
            CountWrite();
            inner.Write(offset, source);
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            CountWrite();
            return inner.WriteAsync(offset, source, cancellationToken);
        }

        public void Flush() => inner.Flush();

        public ValueTask FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

        public void SetLength(long length)
        {
            CountWrite();
            inner.SetLength(length);
        }

        public void Dispose() => inner.Dispose();

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
