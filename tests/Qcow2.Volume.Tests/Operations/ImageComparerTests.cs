using Qcow2.Volume.Operations;

namespace Qcow2.Volume.Tests.Operations;

/// <summary>ImageComparer agrees with qemu-img compare: the same exit code and the same message.</summary>
public sealed class ImageComparerTests : IDisposable
{
    private readonly OperationImages _img = new();

    public void Dispose() => _img.Dispose();

    private void AssertSameAsQemu(string a, string b, bool strict = false, string? fa = null, string? fb = null)
    {
        var args = new List<string> { "compare" };
        if (strict) args.Add("-s");
        if (fa is not null) { args.Add("-f"); args.Add(fa); }
        if (fb is not null) { args.Add("-F"); args.Add(fb); }
        args.Add(a);
        args.Add(b);
        var (code, stdout, _) = _img.ImgRaw(args.ToArray());
        using var ia = _img.Open(a, fa);
        using var ib = _img.Open(b, fb);
        var result = ImageComparer.Compare(ia, ib, new CompareOptions { Strict = strict });
        Assert.Equal(code, result.ExitCode);
        Assert.Equal(stdout, result.Message);
    }

    private void Raw(string name, long size, params string[] io)
    {
        using (var f = File.Create(_img.File(name))) f.SetLength(size);
        if (io.Length > 0) _img.Io(name, "raw", io);
    }

    [Fact]
    public void Compare_IdenticalContentDifferentFormats_Identical()
    {
        _img.MakeChain();
        _img.Img("convert", "-O", "raw", "top.qcow2", "top.raw");
        AssertSameAsQemu("top.qcow2", "top.raw", fb: "raw");
        AssertSameAsQemu("top.raw", "top.qcow2", fa: "raw");
    }

    [Theory]
    [InlineData("write -P 2 1536 1024")]
    [InlineData("write -P 9 0 1024")]
    [InlineData("write -P 1 0 1024;write -P 9 100 1")]
    [InlineData("write -P 1 0 4M;write -P 9 3000000 1")]
    public void Compare_ContentDiffers_ReportsQemuImgsOffset(string change)
    {
        Raw("a.raw", 4 << 20, "write -P 1 0 4M");
        Raw("b.raw", 4 << 20, ["write -P 1 0 4M", .. change.Split(';')]);
        AssertSameAsQemu("a.raw", "b.raw", fa: "raw", fb: "raw");
    }

    [Fact]
    public void Compare_DataAgainstUnallocated_ReportsFirstNonZeroSector()
    {
        Raw("c.raw", 4 << 20, "write -P 1 4096 512");
        _img.Img("create", "-q", "-f", "qcow2", "d.qcow2", "4M");
        AssertSameAsQemu("c.raw", "d.qcow2", fa: "raw");
        AssertSameAsQemu("d.qcow2", "c.raw", fb: "raw");
    }

    [Fact]
    public void Compare_DifferentSizes_TailDecides()
    {
        _img.Img("create", "-q", "-f", "qcow2", "small.qcow2", "4M");
        _img.Img("create", "-q", "-f", "qcow2", "big.qcow2", "6M");
        _img.Io("big.qcow2", "qcow2", "write -P 0 5M 4k");
        AssertSameAsQemu("small.qcow2", "big.qcow2");
        AssertSameAsQemu("small.qcow2", "big.qcow2", strict: true);
        _img.Io("big.qcow2", "qcow2", "write -P 3 5M 4k");
        AssertSameAsQemu("small.qcow2", "big.qcow2");
        AssertSameAsQemu("big.qcow2", "small.qcow2");
    }

    [Fact]
    public void Compare_StrictAllocationDiffers_ReportsBlockStatusMismatch()
    {
        _img.Img("create", "-q", "-f", "qcow2", "e.qcow2", "4M");
        _img.Img("create", "-q", "-f", "qcow2", "f.qcow2", "4M");
        _img.Io("f.qcow2", "qcow2", "write -P 0 1M 64k");
        AssertSameAsQemu("e.qcow2", "f.qcow2");
        AssertSameAsQemu("e.qcow2", "f.qcow2", strict: true);
    }

    [Fact]
    public void Compare_StrictOnVariousPairs_SameAsQemuImg()
    {
        _img.MakeChain();
        _img.Img("convert", "-O", "qcow2", "top.qcow2", "flat.qcow2");
        _img.Img("convert", "-O", "qcow2", "top.qcow2", "flat2.qcow2");
        _img.Img("convert", "-O", "raw", "top.qcow2", "flat.raw");
        AssertSameAsQemu("flat.qcow2", "flat2.qcow2", strict: true);
        AssertSameAsQemu("top.qcow2", "flat.qcow2", strict: true);
        AssertSameAsQemu("flat.qcow2", "flat.raw", strict: true, fb: "raw");
        AssertSameAsQemu("flat.raw", "flat.raw", strict: true, fa: "raw", fb: "raw");
    }

    [Fact]
    public void Compare_BackingChainAgainstItsFlattenedCopy_Identical()
    {
        _img.MakeChain();
        _img.Img("convert", "-O", "qcow2", "top.qcow2", "flat.qcow2");
        AssertSameAsQemu("top.qcow2", "flat.qcow2");
        _img.Io("flat.qcow2", "qcow2", "write -P 4 7M 512");
        AssertSameAsQemu("top.qcow2", "flat.qcow2");
    }

    [Fact]
    public void Compare_Progress_ReachesOne()
    {
        Raw("a.raw", 4 << 20, "write -P 1 0 4M");
        Raw("b.raw", 4 << 20, "write -P 1 0 4M");
        using var a = _img.Open("a.raw", "raw");
        using var b = _img.Open("b.raw", "raw");
        double last = -1;
        var progress = new SyncProgress(v => { Assert.True(v >= last); last = v; });
        Assert.True(ImageComparer.Compare(a, b, new CompareOptions { Progress = progress }).Identical);
        Assert.Equal(1.0, last);
    }

    private sealed class SyncProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
