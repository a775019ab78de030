using System.Globalization;
using System.Text.Json.Nodes;
using Qcow2.Volume.Operations;
using Qcow2.Volume.Tests.Infra;

namespace Qcow2.Volume.Tests.Operations;

/// <summary>Qcow2Measure reports what qemu-img measure -O qcow2 reports.</summary>
public sealed class Qcow2MeasureTests : IDisposable
{
    private readonly OperationImages _img = new();

    public void Dispose() => _img.Dispose();

    private static void AssertSame(string qemuJson, MeasureResult ours)
    {
        var q = JsonNode.Parse(qemuJson)!;
        Assert.Equal((long)q["required"]!, ours.Required);
        Assert.Equal((long)q["fully-allocated"]!, ours.FullyAllocated);
        Assert.Equal(q["bitmaps"] is null ? null : (long?)q["bitmaps"], ours.Bitmaps);
    }

    [Theory]
    [InlineData("", 1L << 30)]
    [InlineData("", 0)]
    [InlineData("cluster_size=512", 3L << 30)]
    [InlineData("cluster_size=2M,refcount_bits=64", 100L << 30)]
    [InlineData("extended_l2=on,refcount_bits=1", 12345678)]
    [InlineData("preallocation=full", 1L << 30)]
    [InlineData("preallocation=metadata", 1L << 30)]
    public void Measure_Size_EqualsQemuImg(string options, long size)
    {
        var args = new List<string> { "measure", "--output=json", "-O", "qcow2" };
        if (options.Length > 0) { args.Add("-o"); args.Add(options); }
        args.Add("--size");
        args.Add(size.ToString(CultureInfo.InvariantCulture));
        AssertSame(_img.Img(args.ToArray()), Qcow2Measure.Measure(Qcow2CreatorTests.Parse(options, size)));
    }

    [Theory]
    [InlineData("")]
    [InlineData("cluster_size=4k,refcount_bits=1")]
    [InlineData("compat=0.10")]
    [InlineData("preallocation=falloc")]
    [InlineData("backing_file=base.qcow2,backing_fmt=qcow2")]
    public void Measure_QcowChainSource_EqualsQemuImg(string options)
    {
        _img.MakeChain();
        var args = new List<string> { "measure", "--output=json", "-O", "qcow2" };
        if (options.Length > 0) { args.Add("-o"); args.Add(options); }
        args.Add("top.qcow2");
        using var src = _img.Open("top.qcow2");
        AssertSame(_img.Img(args.ToArray()), Qcow2Measure.Measure(Qcow2CreatorTests.Parse(options, 0), src));
    }

    [Fact]
    public void Measure_SparseRawSource_EqualsQemuImg()
    {
        using (var f = File.Create(_img.File("r.raw"))) f.SetLength((10 << 20) + 1000);
        _img.Io("r.raw", "raw", "write -P 1 1M 64k", "write -P 2 3000000 5000", "write -P 3 9M 1M");
        using var src = _img.Open("r.raw", "raw");
        AssertSame(_img.Img("measure", "--output=json", "-f", "raw", "-O", "qcow2", "r.raw"),
            Qcow2Measure.Measure(new Qcow2CreateOptions(), src));
    }

    [Fact]
    public void Measure_SourceWithBitmaps_EqualsQemuImg()
    {
        _img.MakeChain();
        _img.Img("bitmap", "--add", "base.qcow2", "first");
        _img.Img("bitmap", "--add", "-g", "64k", "base.qcow2", "a-longer-bitmap-name");
        using var src = _img.Open("base.qcow2");
        AssertSame(_img.Img("measure", "--output=json", "-O", "qcow2", "-o", "cluster_size=8k", "base.qcow2"),
            Qcow2Measure.Measure(new Qcow2CreateOptions { ClusterSize = 8192 }, src));
    }

    [Fact]
    public void Measure_InvalidOptions_ThrowsArgument()
    {
        Assert.Throws<ArgumentException>(() => Qcow2Measure.Measure(new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = 1000 }));
        Assert.Throws<ArgumentException>(() => Qcow2Measure.Measure(new Qcow2CreateOptions { Size = 1L << 40, ClusterSize = 512 }));
    }
}
