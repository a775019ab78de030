using System.Text.Json.Nodes;
using Qcow2.Spans;
using Qcow2.Volume.Operations;
using Qcow2.Volume.Tests.Infra;

namespace Qcow2.Volume.Tests.Operations;

/// <summary>ImageConverter's targets hold the sources' contents (qemu-img compare), pass qemu-img check, and are as sparse as asked.</summary>
public sealed class ImageConverterTests : IDisposable
{
    private readonly OperationImages _img = new();

    public void Dispose() => _img.Dispose();

    private void AssertIdentical(string a, string b, string? fa = null, string? fb = null)
    {
        var args = new List<string> { "compare" };
        if (fa is not null) { args.Add("-f"); args.Add(fa); }
        if (fb is not null) { args.Add("-F"); args.Add(fb); }
        args.Add(a);
        args.Add(b);
        var (code, stdout, stderr) = _img.ImgRaw(args.ToArray());
        Assert.True(code == 0, $"qemu-img compare {a} {b}: {stdout}{stderr}");
    }

    private void AssertClean(string name) => Assert.Contains("No errors were found on the image.", _img.Img("check", name));

    private JsonArray Map(string name, string? format = null) =>
        JsonNode.Parse(format is null ? _img.Img("map", "--output=json", name) : _img.Img("map", "--output=json", "-f", format, name))!.AsArray();

    private static ConvertResult Convert(IDiskImage source, IDiskImage target, ConvertOptions? o = null) =>
        ImageConverter.Convert([source], target, o ?? new ConvertOptions { TargetIsZero = true });

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public void Convert_ChainToNewQcow2_SameContentCleanAndSparse(int parallelism)
    {
        _img.MakeChain();
        using (var src = _img.Open("top.qcow2"))
        using (var dst = Qcow2Image.Create(_img.File("out.qcow2"), new Qcow2CreateOptions { Size = src.Size }))
        {
            var r = Convert(src, dst, new ConvertOptions { TargetIsZero = true, Parallelism = parallelism, ChunkSize = 256 << 10 });
            Assert.True(r.SkippedBytes > 0);
        }
        AssertIdentical("top.qcow2", "out.qcow2");
        AssertClean("out.qcow2");
        // Zero ranges were skipped: the target holds no more data than the flattened source.
        _img.Img("convert", "-O", "qcow2", "top.qcow2", "ref.qcow2");
        long Data(string n) => Map(n).Where(e => (bool)e!["data"]!).Sum(e => (long)e!["length"]!);
        Assert.Equal(Data("ref.qcow2"), Data("out.qcow2"));
    }

    [Theory]
    [InlineData("extended_l2=on,cluster_size=32K", "qcow2")]
    [InlineData("extended_l2=on,cluster_size=32K", "raw")]
    [InlineData("data_file=src.data", "qcow2")]
    [InlineData("preallocation=metadata,cluster_size=4K", "qcow2")]
    [InlineData("compression_type=zstd", "raw")]
    [InlineData("refcount_bits=1,cluster_size=512", "qcow2")]
    public void Convert_QemuMadeSources_TargetEqualsSource(string sourceOptions, string targetFormat)
    {
        _img.Img("create", "-q", "-f", "qcow2", "-o", sourceOptions, "src.qcow2", "3M");
        _img.Io("src.qcow2", "qcow2", "write -P 5 100k 10k", "write -z 1M 128k", "write -P 6 2M 4k", "write -P 7 2100k 300k");
        if (sourceOptions.Contains("zstd", StringComparison.Ordinal))
        {
            _img.Img("convert", "-c", "-O", "qcow2", "-o", sourceOptions, "src.qcow2", "srcc.qcow2");
            File.Move(_img.File("srcc.qcow2"), _img.File("src.qcow2"), overwrite: true);
        }
        string dstName = "dst." + targetFormat;
        using (var src = _img.Open("src.qcow2"))
        using (var dst = DiskImage.Create(_img.File(dstName), targetFormat, src.Size))
            Convert(src, dst);
        AssertIdentical("src.qcow2", dstName, fb: targetFormat);
        if (targetFormat == "qcow2") AssertClean(dstName);
    }

    [Fact]
    public void Convert_HugeSparseImage_CopiesTheFewClustersAndSkipsTheRest()
    {
        _img.Img("create", "-q", "-f", "qcow2", "huge.qcow2", "1T");
        _img.Io("huge.qcow2", "qcow2", "write -P 9 0 64k", "write -P 8 700G 64k", "write -z 900G 1G");
        foreach (bool compress in new[] { false, true })
        {
            string name = compress ? "huge-c.qcow2" : "huge-out.qcow2";
            ConvertResult r;
            using (var src = _img.Open("huge.qcow2"))
            using (var dst = Qcow2Image.Create(_img.File(name), new Qcow2CreateOptions { Size = src.Size }))
                r = Convert(src, dst, new ConvertOptions { TargetIsZero = true, Compress = compress });
            Assert.Equal(compress ? 2 : 0, r.CompressedClusters);
            Assert.Equal(128 << 10, r.DataBytesWritten);
            Assert.Equal((1L << 40) - (128 << 10), r.SkippedBytes);
            Assert.True(r.BytesRead < 8 << 20, $"read {r.BytesRead} bytes");
            AssertIdentical("huge.qcow2", name);
            AssertClean(name);
        }
    }

    [Fact]
    public void Convert_SparseRawToRaw_SameContentAndHolesKept()
    {
        using (var f = File.Create(_img.File("src.raw"))) f.SetLength(16 << 20);
        _img.Io("src.raw", "raw", "write -P 1 1M 64k", "write -P 2 7M 2M", "write -P 0 12M 1M");
        using (var src = _img.Open("src.raw", "raw"))
        using (var dst = RawImage.Create(_img.File("dst.raw"), src.Size))
            Convert(src, dst);
        AssertIdentical("src.raw", "dst.raw", "raw", "raw");
        var info = JsonNode.Parse(_img.Img("info", "--output=json", "-f", "raw", "dst.raw"))!;
        Assert.InRange((long)info["actual-size"]!, 1, 4 << 20); // 64k + 2M of data, the zeros written at 12M were not
    }

    [Fact]
    public void Convert_SparseSizeZero_WritesEverything()
    {
        using (var f = File.Create(_img.File("src.raw"))) f.SetLength(4 << 20);
        _img.Io("src.raw", "raw", "write -P 1 1M 64k");
        using (var src = _img.Open("src.raw", "raw"))
        using (var dst = RawImage.Create(_img.File("full.raw"), src.Size))
        {
            var r = Convert(src, dst, new ConvertOptions { TargetIsZero = true, SparseSize = 0 });
            Assert.Equal(4 << 20, r.DataBytesWritten);
        }
        AssertIdentical("src.raw", "full.raw", "raw", "raw");
        var info = JsonNode.Parse(_img.Img("info", "--output=json", "-f", "raw", "full.raw"))!;
        Assert.True((long)info["actual-size"]! >= 4 << 20);
    }

    [Fact]
    public void Convert_ZeroRunInsideData_IsNotAllocatedInTarget()
    {
        using (var f = File.Create(_img.File("z.raw"))) f.SetLength(1 << 20);
        // Fully written: the zero run in the middle is data for block status, zeros for the scan.
        _img.Io("z.raw", "raw", "write -P 1 0 1M", "write -P 0 256k 128k");
        using (var src = _img.Open("z.raw", "raw"))
        using (var dst = Qcow2Image.Create(_img.File("z.qcow2"), new Qcow2CreateOptions { Size = src.Size, ClusterSize = 4096 }))
            Convert(src, dst);
        AssertIdentical("z.raw", "z.qcow2", fa: "raw");
        var hole = Map("z.qcow2").Single(e => (long)e!["start"]! == 256 << 10);
        Assert.False((bool)hole!["data"]!);
        Assert.Equal(128 << 10, (long)hole["length"]!);
    }

    [Theory]
    [InlineData(CompressionType.Zlib)]
    [InlineData(CompressionType.Zstd)]
    public void Convert_Compressed_ClustersCompressedContentSameClean(CompressionType type)
    {
        _img.MakeChain();
        using (var src = _img.Open("top.qcow2"))
        using (var dst = Qcow2Image.Create(_img.File("c.qcow2"), new Qcow2CreateOptions { Size = src.Size, CompressionType = type }))
        {
            var r = Convert(src, dst, new ConvertOptions { TargetIsZero = true, Compress = true, Parallelism = 3 });
            Assert.True(r.CompressedClusters > 0);
        }
        AssertIdentical("top.qcow2", "c.qcow2");
        AssertClean("c.qcow2");
        // Compressed data has no host offset in qemu-img map.
        Assert.Contains(Map("c.qcow2"), e => (bool)e!["data"]! && e["offset"] is null);
    }

    [Fact]
    public void Convert_CompressedWithUnalignedSize_LastShortClusterHandled()
    {
        using (var f = File.Create(_img.File("u.raw"))) f.SetLength(200_000 + 512 * 3);
        _img.Io("u.raw", "raw", "write -P 6 0 201536");
        using (var src = _img.Open("u.raw", "raw"))
        using (var dst = Qcow2Image.Create(_img.File("u.qcow2"), new Qcow2CreateOptions { Size = src.Size, ClusterSize = 65536 }))
            Convert(src, dst, new ConvertOptions { TargetIsZero = true, Compress = true });
        AssertIdentical("u.raw", "u.qcow2", fa: "raw");
        AssertClean("u.qcow2");
    }

    [Fact]
    public void Convert_SeveralSources_AreConcatenated()
    {
        using (var f = File.Create(_img.File("s1.raw"))) f.SetLength((1 << 20) + 512);
        using (var f = File.Create(_img.File("s2.raw"))) f.SetLength(3 << 20);
        _img.Io("s1.raw", "raw", "write -P 1 0 1049088");
        _img.Io("s2.raw", "raw", "write -P 2 0 64k", "write -P 3 2M 1M");
        _img.Img("convert", "-f", "raw", "-O", "raw", "s1.raw", "s2.raw", "expected.raw");
        foreach (bool compress in new[] { false, true })
        {
            string name = compress ? "cat-c.qcow2" : "cat.qcow2";
            using (var s1 = _img.Open("s1.raw", "raw"))
            using (var s2 = _img.Open("s2.raw", "raw"))
            using (var dst = Qcow2Image.Create(_img.File(name), new Qcow2CreateOptions { Size = s1.Size + s2.Size }))
                ImageConverter.Convert([s1, s2], dst, new ConvertOptions { TargetIsZero = true, Compress = compress });
            AssertIdentical("expected.raw", name, fa: "raw");
            AssertClean(name);
        }
    }

    [Fact]
    public void Convert_TargetNotZero_ZeroRangesAreWritten()
    {
        _img.MakeChain();
        using (var src = _img.Open("top.qcow2"))
        using (var dst = RawImage.Create(_img.File("dirty.raw"), src.Size))
        {
            var ones = new byte[src.Size];
            ones.AsSpan().Fill(0xFF);
            dst.Write(0, ones);
            var r = Convert(src, dst, new ConvertOptions { TargetIsZero = false });
            Assert.True(r.ZeroBytesWritten > 0);
        }
        AssertIdentical("top.qcow2", "dirty.raw", fb: "raw");
    }

    [Fact]
    public void Convert_TargetHasBacking_CopiesOnlyTheTopLayer()
    {
        _img.MakeChain();
        using (var src = _img.Open("top.qcow2"))
        using (var dst = Qcow2Image.Create(_img.File("ov.qcow2"), new Qcow2CreateOptions
        {
            Size = src.Size,
            BackingFile = "base.qcow2",
            BackingFormat = "qcow2",
        }))
        {
            Convert(src, dst, new ConvertOptions { TargetHasBacking = true });
        }
        AssertIdentical("top.qcow2", "ov.qcow2");
        AssertClean("ov.qcow2");
        // Nothing from the base was copied: every depth-0 data extent of the target is one of the top's.
        var top = Map("top.qcow2").Where(e => (long)e!["depth"]! == 0 && (bool)e["data"]!).Sum(e => (long)e!["length"]!);
        var ov = Map("ov.qcow2").Where(e => (long)e!["depth"]! == 0 && (bool)e["data"]!).Sum(e => (long)e!["length"]!);
        Assert.Equal(top, ov);
    }

    [Fact]
    public void Convert_Cancelled_ThrowsOperationCanceled()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        using var src = new RawImage(new Storage.MemoryStorage(new byte[1 << 20]));
        using var dst = RawImage.Create(new Storage.MemoryStorage(), 1 << 20);
        Assert.ThrowsAny<OperationCanceledException>(() => Convert(src, dst, new ConvertOptions { CancellationToken = cts.Token }));
    }

    [Fact]
    public void Convert_BadArguments_Throw()
    {
        using var src = new RawImage(new Storage.MemoryStorage(new byte[4096]));
        using var small = RawImage.Create(new Storage.MemoryStorage(), 512);
        Assert.Throws<ArgumentException>(() => Convert(src, small));
        using var dst = RawImage.Create(new Storage.MemoryStorage(), 4096);
        Assert.Throws<ArgumentException>(() => Convert(src, dst, new ConvertOptions { Compress = true }));
        Assert.Throws<ArgumentException>(() => ImageConverter.Convert([], dst));
    }

    [Fact]
    public void Convert_InMemory_ProgressReachesOneAndContentMatches()
    {
        var data = StorageContractTests.Pattern(3 << 20, 5);
        data.AsSpan(1 << 20, 1 << 20).Clear();
        using var src = new RawImage(new Storage.MemoryStorage(data));
        var target = new Storage.MemoryStorage();
        using var dst = RawImage.Create(target, data.Length);
        double last = 0;
        var progress = new SyncProgress(v => last = Math.Max(last, v));
        var r = Convert(src, dst, new ConvertOptions { TargetIsZero = true, Progress = progress, Parallelism = 2 });
        Assert.Equal(1.0, last);
        Assert.Equal(data, target.ToArray());
        Assert.Equal(1 << 20, r.SkippedBytes);
    }

    private sealed class SyncProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
