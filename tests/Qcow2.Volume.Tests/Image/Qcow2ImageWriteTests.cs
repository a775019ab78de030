using System.Buffers.Binary;
using Qcow2.Spans;
using Qcow2.Tests.Shared;
using static Qcow2.Volume.Tests.Image.ImageTestKit;

namespace Qcow2.Volume.Tests.Image;

/// <summary>
/// Writes checked against a byte model, then by qemu-img: <c>check</c> reports nothing and
/// <c>compare</c> finds the model's content; then qemu-io writes into our image and we read its result.
/// </summary>
public sealed class Qcow2ImageWriteTests
{
    public static TheoryData<string, long> WriteMatrix() => new()
    {
        { "cluster_size=65536", 8 << 20 },
        { "cluster_size=512", 2 << 20 },
        { "cluster_size=4096,refcount_bits=1", 4 << 20 },
        { "cluster_size=8192,refcount_bits=64", 4 << 20 },
        { "compat=0.10", 4 << 20 },
        { "compat=0.10,cluster_size=4096", 4 << 20 },
        { "extended_l2=on", 8 << 20 },
        { "extended_l2=on,cluster_size=16384", 4 << 20 },
        { "compression_type=zstd", 4 << 20 },
        { "lazy_refcounts=on", 4 << 20 },
        { "cluster_size=2097152", 12 << 20 },
        { "preallocation=metadata", 4 << 20 },
        { "preallocation=falloc,cluster_size=4096", 2 << 20 },
    };

    [Theory]
    [MemberData(nameof(WriteMatrix))]
    public void Write_RandomOperations_QemuCheckCleanAndContentMatches(string options, long size)
    {
        using var dir = new TempDir();
        string image = dir.File("w.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", options, image, Inv(size));
        var model = new byte[size];
        int clusterSize;
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            clusterSize = img.Info.ClusterSize;
            RandomOperations(img, model, new Random(Seed), 250, compressed: true);
            AssertSameBytes(model, ReadAll(img), "before close");
        }
        AssertQemuCheckClean(image);
        AssertQemuCompareEqual(dir, image, model);

        // qemu-io writes into our image; we read its result.
        QemuTools.Io(image, "qcow2", "write -P 0x99 12345 100000", "write -z 300000 70000", "discard 0 " + Inv(clusterSize));
        using var reopened = Qcow2Image.Open(image, TrustedReadOnly);
        AssertSameBytes(QemuRaw(dir, image), ReadAll(reopened), "after qemu-io");
    }

    /// <summary>Random writes of every size and alignment, zeroes (with and without unmap), discards, compressed clusters, flushes.</summary>
    internal static void RandomOperations(Qcow2Image img, byte[] model, Random rng, int count, bool compressed, byte[]? discardReads = null)
    {
        int cs = img.Info.ClusterSize;
        long size = img.Size;
        for (int i = 0; i < count; i++)
        {
            int op = rng.Next(100);
            long offset = RandomOffset(rng, size, cs);
            int maxLen = (int)Math.Min(size - offset, rng.Next(3) == 0 ? 4 * cs + 1000 : Math.Max(2, cs / 2 + 700));
            int len = rng.Next(1, Math.Max(2, maxLen + 1));
            if (op < 60)
            {
                var data = new byte[len];
                if (rng.Next(4) == 0) data.AsSpan().Fill((byte)rng.Next(256));
                else rng.NextBytes(data);
                if (rng.Next(2) == 0) img.Write(offset, data);
                else img.WriteAsync(offset, data).AsTask().GetAwaiter().GetResult();
                data.CopyTo(model, offset);
            }
            else if (op < 75)
            {
                img.WriteZeroes(offset, len, unmap: rng.Next(2) == 0);
                model.AsSpan((int)offset, len).Clear();
            }
            else if (op < 87)
            {
                img.Discard(offset, len);
                // Only whole clusters (subclusters) are released; they then read as zeros or as the backing file.
                int granule = img.Info.ExtendedL2 ? cs / 32 : cs;
                long start = (offset + granule - 1) / granule * granule;
                long end = offset + len == size ? size : (offset + len) / granule * granule;
                if (end > start)
                {
                    if (discardReads is null) model.AsSpan((int)start, (int)(end - start)).Clear();
                    else discardReads.AsSpan((int)start, (int)(end - start)).CopyTo(model.AsSpan((int)start));
                }
            }
            else if (op < 95 && compressed)
            {
                long c = rng.NextInt64(size / cs) * cs;
                int n = (int)Math.Min(size - c, cs * (long)rng.Next(1, 3));
                var data = new byte[n];
                data.AsSpan().Fill((byte)rng.Next(256));
                if (rng.Next(2) == 0) rng.NextBytes(data.AsSpan(0, n / 4));   // partly incompressible
                img.WriteCompressed(c, data);
                data.CopyTo(model, c);
            }
            else
            {
                img.Flush();
            }
        }
    }

    private static long RandomOffset(Random rng, long size, int cs) => rng.Next(3) switch
    {
        0 => rng.NextInt64(size / cs) * cs,                         // cluster aligned
        1 => rng.NextInt64(size / 512) * 512,                       // sector aligned
        _ => rng.NextInt64(size - 1),                               // anywhere
    };

    [Fact]
    public void Write_ManyClustersWithSmallRefcountBlocks_GrowsRefcountTable()
    {
        using var dir = new TempDir();
        string image = dir.File("grow.qcow2");
        // 512-byte clusters with 64-bit refcounts: one block covers 64 clusters, the table 4096 clusters (2 MiB).
        QemuTools.Img("create", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", image, "6M");
        var model = new byte[6 << 20];
        new Random(Seed).NextBytes(model);
        uint tableClustersBefore = BinaryPrimitives.ReadUInt32BigEndian(File.ReadAllBytes(image).AsSpan(56));
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            for (int off = 0; off < model.Length; off += 96 * 1024)
                img.Write(off, model.AsSpan(off, Math.Min(96 * 1024, model.Length - off)));
        }
        uint tableClustersAfter = BinaryPrimitives.ReadUInt32BigEndian(File.ReadAllBytes(image).AsSpan(56));
        Assert.True(tableClustersAfter > tableClustersBefore, $"refcount table clusters {tableClustersBefore} -> {tableClustersAfter}");
        AssertQemuCheckClean(image);
        AssertQemuCompareEqual(dir, image, model);
    }

    [Theory]
    [InlineData("compat=1.1")]
    [InlineData("compat=0.10")]
    [InlineData("extended_l2=on")]
    public void Write_OverBackingChain_CopiesOnWriteFromBacking(string options)
    {
        using var dir = new TempDir();
        string baseImage = dir.File("base.qcow2");
        QemuTools.Img("create", "-f", "qcow2", baseImage, "3M");
        QemuTools.Io(baseImage, "qcow2", "write -P 0x5b 0 3M", "write -P 0x5c 100000 200000");
        var baseContent = QemuRaw(dir, baseImage);
        string top = dir.File("top.qcow2");
        // An overlay larger than its backing file: the tail reads as zeros.
        QemuTools.Img("create", "-f", "qcow2", "-o", options, "-b", "base.qcow2", "-F", "qcow2", top, "4M");
        var model = new byte[4 << 20];
        baseContent.CopyTo(model, 0);
        // v3 discards read as zeros (zero flag); v2 ones as the backing file.
        byte[]? discardReads = options == "compat=0.10" ? (byte[])model.Clone() : null;
        using (var img = Qcow2Image.Open(top, Trusted))
        {
            RandomOperations(img, model, new Random(Seed + 1), 150, compressed: true, discardReads);
            AssertSameBytes(model, ReadAll(img), "overlay");
        }
        AssertQemuCheckClean(top);
        AssertQemuCompareEqual(dir, top, model);
        AssertSameBytes(baseContent, QemuRaw(dir, baseImage), "base untouched");
    }

    [Theory]
    [InlineData("cluster_size=65536")]
    [InlineData("extended_l2=on")]
    public void Write_ClustersSharedWithSnapshot_CopiesOnWriteAndKeepsSnapshot(string options)
    {
        using var dir = new TempDir();
        string image = dir.File("snap.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", options, image, "4M");
        QemuTools.Io(image, "qcow2", "write -c -P 0x22 1048576 131072", "write -P 0x21 0 1M", "write -P 0x21 2M 2M");
        QemuTools.Img("snapshot", "-c", "before", image);
        var snapshotContent = QemuRaw(dir, image, snapshot: "before");
        var model = (byte[])snapshotContent.Clone();
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            RandomOperations(img, model, new Random(Seed + 2), 150, compressed: true);
            AssertSameBytes(model, ReadAll(img), "active");
            using var snap = img.OpenSnapshot("before");
            AssertSameBytes(snapshotContent, ReadAll(snap), "snapshot while open");
        }
        AssertQemuCheckClean(image);
        AssertQemuCompareEqual(dir, image, model);
        AssertSameBytes(snapshotContent, QemuRaw(dir, image, snapshot: "before"), "snapshot after close");
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Write_ExternalDataFile_QemuReadsIt(bool raw, bool extendedL2)
    {
        using var dir = new TempDir();
        string image = dir.File("d.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", $"data_file={dir.File("d.data")},data_file_raw={(raw ? "on" : "off")},extended_l2={(extendedL2 ? "on" : "off")}", image, "4M");
        var model = new byte[4 << 20];
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            RandomOperations(img, model, new Random(Seed + 3), 150, compressed: false, discardReads: raw ? model : null);
            AssertSameBytes(model, ReadAll(img), "data file image");
        }
        AssertQemuCheckClean(image);
        AssertQemuCompareEqual(dir, image, model);
        if (raw) AssertSameBytes(model, File.ReadAllBytes(dir.File("d.data")), "raw data file");
    }

    [Fact]
    public void Create_ThenWrite_QemuCheckClean()
    {
        using var dir = new TempDir();
        string image = dir.File("ours.qcow2");
        var model = new byte[3 << 20];
        using (var img = Qcow2Image.Create(image, new Qcow2CreateOptions { Size = model.Length, ClusterSize = 4096, ExtendedL2 = false }))
        {
            RandomOperations(img, model, new Random(Seed + 4), 150, compressed: true);
        }
        AssertQemuCheckClean(image);
        AssertQemuCompareEqual(dir, image, model);
    }

    [Fact]
    public void Write_ImageWithPersistentBitmaps_MarksTrackingBitmapsInUseOnly()
    {
        using var dir = new TempDir();
        string image = dir.File("bm.qcow2");
        QemuTools.Img("create", "-f", "qcow2", image, "2M");
        QemuTools.Img("bitmap", "--add", image, "tracking");
        QemuTools.Img("bitmap", "--add", "--disable", image, "frozen");
        var model = new byte[2 << 20];
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            // We cannot keep an enabled ('auto') bitmap in sync, so it is flagged in_use (inconsistent).
            Assert.True(img.Bitmaps.Single(b => b.Name == "tracking").InUse);
            Assert.False(img.Bitmaps.Single(b => b.Name == "frozen").InUse);
            RandomOperations(img, model, new Random(Seed + 5), 60, compressed: true);
        }
        AssertQemuCheckClean(image);
        AssertQemuCompareEqual(dir, image, model);
        string info = QemuTools.Img("info", "--output=json", image);
        Assert.Contains("in-use", info);
        using var reopened = Qcow2Image.Open(image, TrustedReadOnly);
        Assert.True(reopened.Bitmaps.Single(b => b.Name == "tracking").InUse);
        Assert.False(reopened.Bitmaps.Single(b => b.Name == "frozen").InUse);
    }

    [Theory]
    [InlineData("cluster_size=4096", 64L << 20)]
    [InlineData("cluster_size=512,extended_l2=off", 300L << 20)]
    [InlineData("extended_l2=on,cluster_size=16384", 3L << 30)]
    public void Resize_BeyondL1Coverage_GrowsL1AndQemuAgrees(string options, long newSize)
    {
        using var dir = new TempDir();
        string image = dir.File("r.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", options, image, "1M");
        QemuTools.Io(image, "qcow2", "write -P 0x17 0 1M");
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            img.Resize(newSize);
            Assert.Equal(newSize, img.Size);
            img.Write(newSize - 70000, new byte[] { 1, 2, 3, 4 });
            img.Write(500, new byte[] { 5 });
        }
        AssertQemuCheckClean(image);
        Assert.Contains($"\"virtual-size\": {newSize}", QemuTools.Img("info", "--output=json", image));
        var (code, stdout, _) = QemuTools.Run(QemuTools.QemuIo, "-f", "qcow2", "-c", $"read -P 0x17 0 500", "-c", $"read -P 5 500 1", "-c", $"read -P 0 1M {Math.Min(newSize - 70000 - (1 << 20), 64 << 20)}", image);
        Assert.True(code == 0 && !stdout.Contains("fail", StringComparison.OrdinalIgnoreCase), stdout);
        using var reopened = Qcow2Image.Open(image, TrustedReadOnly);
        var tail = new byte[4];
        reopened.Read(newSize - 70000, tail);
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, tail);
    }

    /// <summary>Text-like bytes (words from a small vocabulary): compress to roughly a third, with varying sizes.</summary>
    private static byte[] TextLike(int length, int seed)
    {
        var rng = new Random(seed);
        var words = new string[500];
        for (int i = 0; i < words.Length; i++)
            words[i] = new string(Enumerable.Range(0, rng.Next(2, 10)).Select(_ => (char)('a' + rng.Next(26))).ToArray());
        var sb = new System.Text.StringBuilder(length + 16);
        while (sb.Length < length) sb.Append(words[rng.Next(words.Length)]).Append(rng.Next(12) == 0 ? '\n' : ' ');
        return System.Text.Encoding.ASCII.GetBytes(sb.ToString(0, length));
    }

    /// <summary>Compressed L2 entries of the active image whose sectors span two host clusters.</summary>
    private static int CountCompressedCrossingClusters(byte[] file)
    {
        int cb = (int)BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(20));
        int l1Size = (int)BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(36));
        long l1 = BinaryPrimitives.ReadInt64BigEndian(file.AsSpan(40));
        int x = cb - 8;
        int crossing = 0;
        for (int i = 0; i < l1Size; i++)
        {
            long l2 = BinaryPrimitives.ReadInt64BigEndian(file.AsSpan((int)(l1 + i * 8L))) & 0x00ff_ffff_ffff_fe00;
            if (l2 == 0) continue;
            for (int j = 0; j < (1 << cb) / 8; j++)
            {
                ulong e = BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan((int)(l2 + j * 8L)));
                if ((e & (1UL << 62)) == 0) continue;
                long host = (long)(e & ((1UL << (62 - x)) - 1));
                long sectors = (long)((e >> (62 - x)) & ((1UL << x) - 1));
                long lastByte = ((host >> 9) + sectors + 1) * 512 - 1;
                if (host >> cb != lastByte >> cb) crossing++;
            }
        }
        return crossing;
    }

    [Theory]
    [InlineData(4096, "zlib")]
    [InlineData(65536, "zlib")]
    [InlineData(65536, "zstd")]
    [InlineData(2 << 20, "zstd")]
    public void WriteCompressed_ManyClusters_PackedAcrossHostClustersLikeQemu(int clusterSize, string compression)
    {
        using var dir = new TempDir();
        int clusters = clusterSize == 2 << 20 ? 8 : 96;
        long size = (long)clusters * clusterSize;
        var model = TextLike((int)size, Seed + clusterSize);
        string raw = dir.File("src.raw");
        File.WriteAllBytes(raw, model);
        string image = dir.File("packed.qcow2");
        string options = $"cluster_size={clusterSize},compression_type={compression}";
        QemuTools.Img("create", "-f", "qcow2", "-o", options, image, Inv(size));
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            for (long c = 0; c < size; c += clusterSize) img.WriteCompressed(c, model.AsSpan((int)c, clusterSize));
        }
        AssertQemuCheckClean(image);
        AssertQemuCompareEqual(dir, image, model);
        Assert.True(CountCompressedCrossingClusters(File.ReadAllBytes(image)) > 0, "no compressed cluster crosses a host cluster boundary");

        // The same data through qemu-img convert -c: our file is within a few percent of its size.
        string qemu = dir.File("qemu.qcow2");
        QemuTools.Img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", options, raw, qemu);
        long ours = new FileInfo(image).Length, theirs = new FileInfo(qemu).Length;
        Assert.True(Math.Abs(ours - theirs) <= theirs * 0.03 + 2 * clusterSize, $"ours {ours} bytes, qemu-img {theirs} bytes");

        // Overwrite a third of the clusters compressed again (freed runs are reused), then qemu-io
        // writes compressed clusters into our image and we read its result.
        var rng = new Random(Seed);
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            for (int k = 0; k < clusters / 3 + 1; k++)
            {
                long c = rng.Next(clusters) * (long)clusterSize;
                var data = TextLike(clusterSize, rng.Next());
                img.WriteCompressed(c, data);
                data.CopyTo(model, c);
                if (k % 5 == 4) img.Flush();
            }
            // qemu-io writes compressed clusters only where nothing is allocated.
            img.Discard(0, clusterSize);
            img.Discard(size - clusterSize, clusterSize);
            model.AsSpan(0, clusterSize).Clear();
            model.AsSpan((int)(size - clusterSize), clusterSize).Clear();
        }
        AssertQemuCheckClean(image);
        AssertQemuCompareEqual(dir, image, model);
        QemuTools.Io(image, "qcow2", $"write -c -P 0x5a 0 {Inv(clusterSize)}", $"write -c -P 0x5b {Inv(size - clusterSize)} {Inv(clusterSize)}");
        model.AsSpan(0, clusterSize).Fill(0x5a);
        model.AsSpan((int)(size - clusterSize), clusterSize).Fill(0x5b);
        using (var img = Qcow2Image.Open(image, TrustedReadOnly))
            AssertSameBytes(model, ReadAll(img), "compressed image after qemu-io's compressed writes");
    }

    [Fact]
    public void ReadSmallPieces_CompressedClusterFreedAndItsBytesReused_ReadsNewData()
    {
        using var dir = new TempDir();
        string image = dir.File("cc.qcow2");
        QemuTools.Img("create", "-f", "qcow2", image, "1M");
        using var img = Qcow2Image.Open(image, Trusted);
        var cluster = new byte[65536];
        cluster.AsSpan().Fill(0x11);
        img.WriteCompressed(0, cluster);
        var piece = new byte[4096];
        img.Read(8192, piece);
        Assert.All(piece, b => Assert.Equal(0x11, b));
        img.Discard(0, 65536);
        img.Flush();
        // Same length, and the freed host bytes come first: the same descriptor, other content.
        cluster.AsSpan().Fill(0x22);
        img.WriteCompressed(65536, cluster);
        img.Read(65536 + 8192, piece);
        Assert.All(piece, b => Assert.Equal(0x22, b));
        img.Read(8192, piece);
        Assert.All(piece, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task AsyncOperations_CancelledToken_ThrowWithoutSideEffects()
    {
        using var dir = new TempDir();
        string image = dir.File("x.qcow2");
        QemuTools.Img("create", "-f", "qcow2", image, "1M");
        using var img = Qcow2Image.Open(image, Trusted);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var buffer = new byte[65536];
        buffer.AsSpan().Fill(7);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => img.ReadAsync(0, buffer, cts.Token).AsTask());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => img.WriteAsync(0, buffer, cts.Token).AsTask());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => img.WriteCompressedAsync(0, buffer, cts.Token).AsTask());
        Assert.Equal(BlockStatusFlags.None, img.GetBlockStatus(0, 65536).Flags);
    }

    [Fact]
    public void Write_LazyRefcounts_DirtyWhileOpenCleanAfterClose()
    {
        using var dir = new TempDir();
        string image = dir.File("lazy.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", "lazy_refcounts=on", image, "1M");
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            img.Write(1000, new byte[] { 1, 2, 3 });
            img.Flush();
            Assert.Equal(1, ReadIncompatible(image) & 1);
        }
        Assert.Equal(0, ReadIncompatible(image) & 1);
        AssertQemuCheckClean(image);
    }

    private static int ReadIncompatible(string image)
    {
        using var fs = new FileStream(image, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var b = new byte[8];
        fs.Position = 72;
        fs.ReadExactly(b);
        return (int)BinaryPrimitives.ReadUInt64BigEndian(b);
    }

    [Fact]
    public void Write_L2EntryPointingAtMetadata_RefusedAndImageMarkedCorrupt()
    {
        using var dir = new TempDir();
        string image = dir.File("o.qcow2");
        QemuTools.Img("create", "-f", "qcow2", image, "1M");
        QemuTools.Io(image, "qcow2", "write -P 1 0 64k");
        var bytes = File.ReadAllBytes(image);
        long l1 = (long)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(40));
        long l2 = (long)(BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)l1)) & L1Entry.OffsetMask);
        // Point guest cluster 0 at the L1 table's cluster, COPIED: an in-place write would destroy it.
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)l2), (ulong)l1 | (1UL << 63));
        File.WriteAllBytes(image, bytes);
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            Assert.Throws<Qcow2CorruptImageException>(() => img.Write(0, new byte[512]));
            Assert.True(img.IsReadOnly);
            Assert.Throws<InvalidOperationException>(() => img.Write(0, new byte[512]));
        }
        Assert.Throws<Qcow2CorruptImageException>(() => Qcow2Image.Open(image, Trusted));
        Assert.Equal(l1, (long)(BinaryPrimitives.ReadUInt64BigEndian(File.ReadAllBytes(image).AsSpan((int)l2)) & L1Entry.OffsetMask));
    }

    [Fact]
    public void AsStream_WriteThenRead_RoundTrips()
    {
        using var dir = new TempDir();
        string image = dir.File("s.qcow2");
        QemuTools.Img("create", "-f", "qcow2", image, "1M");
        var data = new byte[300_000];
        new Random(Seed).NextBytes(data);
        using (var img = Qcow2Image.Open(image, Trusted))
        using (var stream = img.AsStream())
        {
            stream.Position = 12345;
            stream.Write(data);
            stream.Position = 12345;
            var back = new byte[data.Length];
            stream.ReadExactly(back);
            Assert.Equal(data, back);
            Assert.Throws<IOException>(() => stream.Write(new byte[(1 << 20) - 12345 - data.Length + 1]));
        }
        var expected = new byte[1 << 20];
        data.CopyTo(expected, 12345);
        AssertQemuCompareEqual(dir, image, expected);
    }

    [Fact]
    public void ReadAndWrite_AllocatedClustersAfterWarmUp_AllocateNothing()
    {
        using var dir = new TempDir();
        string image = dir.File("a.qcow2");
        QemuTools.Img("create", "-f", "qcow2", image, "4M");
        QemuTools.Io(image, "qcow2", "write -P 7 0 4M");
        using var img = Qcow2Image.Open(image, Trusted);
        var buffer = new byte[200_000];
        for (int i = 0; i < 3; i++)
        {
            img.Read(i * 100_000, buffer);
            img.Write(i * 100_000 + 7, buffer);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) img.Read(i * 150_000 % 3_000_000, buffer);
        long readAllocated = GC.GetAllocatedBytesForCurrentThread() - before;
        before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) img.Write(i * 170_000 % 3_000_000 + 3, buffer.AsSpan(0, 100_000));
        long writeAllocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal((0L, 0L), (readAllocated, writeAllocated));
    }
}
