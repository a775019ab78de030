using Qcow2.Volume.Operations;

namespace Qcow2.Volume.Tests.Operations;

/// <summary>ImageMapper's output equals qemu-img map's, JSON byte for byte, on images qemu made.</summary>
public sealed class ImageMapperTests : IDisposable
{
    private readonly OperationImages _img = new();

    public void Dispose() => _img.Dispose();

    private string OurJson(string name, string? format = null, long start = 0, long length = -1)
    {
        using var image = _img.Open(name, format);
        var w = new StringWriter();
        ImageMapper.WriteJson(ImageMapper.Map(image, start, length), w);
        return w.ToString();
    }

    [Fact]
    public void Map_BackingChainWithZeroClusters_EqualsQemuImgJson()
    {
        _img.MakeChain();
        Assert.Equal(_img.Img("map", "--output=json", "top.qcow2"), OurJson("top.qcow2"));
        Assert.Equal(_img.Img("map", "--output=json", "base.qcow2"), OurJson("base.qcow2"));
    }

    [Fact]
    public void Map_EmptyImageOrStartPastTheEnd_EqualsQemuImgJson()
    {
        _img.Img("create", "-q", "-f", "qcow2", "empty.qcow2", "0");
        Assert.Equal(_img.Img("map", "--output=json", "empty.qcow2"), OurJson("empty.qcow2"));
        _img.Img("create", "-q", "-f", "qcow2", "one.qcow2", "1M");
        Assert.Equal(_img.Img("map", "--output=json", "--start-offset=2M", "one.qcow2"), OurJson("one.qcow2", start: 2 << 20));
    }

    [Fact]
    public void Map_StartAndLength_EqualsQemuImgJson()
    {
        _img.MakeChain();
        Assert.Equal(_img.Img("map", "--output=json", "--start-offset=600000", "--max-length=3000000", "top.qcow2"),
            OurJson("top.qcow2", start: 600000, length: 3000000));
    }

    [Fact]
    public void Map_BackingChain_HumanOutputEqualsQemuImg()
    {
        _img.MakeChain();
        using var image = _img.Open("top.qcow2");
        var w = new StringWriter();
        ImageMapper.WriteHuman(ImageMapper.Map(image), w, f => Path.GetFileName(f!));
        Assert.Equal(_img.Img("map", "top.qcow2"), w.ToString());
    }

    [Fact]
    public void Map_CompressedImage_JsonEqualsQemuImgAndHumanRefuses()
    {
        _img.MakeChain();
        _img.Img("convert", "-c", "-O", "qcow2", "top.qcow2", "c.qcow2");
        Assert.Equal(_img.Img("map", "--output=json", "c.qcow2"), OurJson("c.qcow2"));
        using var image = _img.Open("c.qcow2");
        Assert.Throws<NotSupportedException>(() => ImageMapper.WriteHuman(ImageMapper.Map(image), new StringWriter()));
        Assert.Contains(ImageMapper.NoOffsetMessage, _img.ImgRaw("map", "c.qcow2").StdErr);
    }

    [Theory]
    [InlineData("preallocation=metadata")]
    [InlineData("preallocation=falloc")]
    [InlineData("cluster_size=4096")]
    public void Map_QemuImgImageWithWrites_EqualsQemuImgJson(string options)
    {
        _img.Img("create", "-q", "-f", "qcow2", "-o", options, "p.qcow2", "3M");
        _img.Io("p.qcow2", "qcow2", "write -P 5 100k 10k", "write -z 1M 128k", "write -P 6 2M 4k");
        Assert.Equal(_img.Img("map", "--output=json", "p.qcow2"), OurJson("p.qcow2"));
    }

    [Fact]
    public void Map_ExternalDataFile_EqualsQemuImgJson()
    {
        _img.Img("create", "-q", "-f", "qcow2", "-o", "data_file=d.raw", "x.qcow2", "2M");
        _img.Io("x.qcow2", "qcow2", "write -P 5 64k 64k", "write -z 1M 64k");
        Assert.Equal(_img.Img("map", "--output=json", "x.qcow2"), OurJson("x.qcow2"));
    }

    [Fact]
    public void Map_SparseRawWithUnalignedSize_EqualsQemuImgJson()
    {
        using (var f = File.Create(_img.File("r.raw"))) f.SetLength((5 << 20) + 1000);
        _img.Io("r.raw", "raw", "write -P 1 1M 64k");
        Assert.Equal(_img.Img("map", "--output=json", "-f", "raw", "r.raw"), OurJson("r.raw", "raw"));
    }

    [Fact]
    public void Map_RawBackingFile_EqualsQemuImgJson()
    {
        using (var f = File.Create(_img.File("b.raw"))) f.SetLength(2 << 20);
        _img.Io("b.raw", "raw", "write -P 1 64k 64k");
        _img.Img("create", "-q", "-f", "qcow2", "-b", "b.raw", "-F", "raw", "o.qcow2", "4M");
        _img.Io("o.qcow2", "qcow2", "write -P 2 1M 64k");
        Assert.Equal(_img.Img("map", "--output=json", "o.qcow2"), OurJson("o.qcow2"));
    }
}
