using System.Text.Json.Nodes;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Infra;

public sealed class RawImageTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Size_FileNotSectorAligned_RoundsUpLikeQemuImg()
    {
        var path = _dir.File("small.raw");
        File.WriteAllBytes(path, new byte[1000]);
        using var img = RawImage.Open(path, readOnly: true);
        var info = JsonNode.Parse(QemuTools.Img("info", "--output=json", "-f", "raw", path))!;
        Assert.Equal((long)info["virtual-size"]!, img.Size);
        var tail = new byte[24];
        tail.AsSpan().Fill(0xEE);
        img.Read(1000, tail);
        Assert.All(tail, b => Assert.Equal(0, b));
    }

    [Fact]
    public void GetBlockStatus_SparseFile_MatchesQemuImgMap()
    {
        var path = _dir.File("sparse.raw");
        using (var f = File.Create(path)) f.SetLength(10 << 20);
        QemuTools.Io(path, "raw", "write -P 1 1M 64k", "write -P 2 5M 1M");
        var expected = JsonNode.Parse(QemuTools.Img("map", "--output=json", "-f", "raw", path))!.AsArray();

        using var img = RawImage.Open(path, readOnly: true);
        var ours = new List<BlockStatus>();
        for (long pos = 0; pos < img.Size;)
        {
            var s = img.GetBlockStatus(pos, img.Size - pos);
            Assert.Equal(pos, s.Offset);
            Assert.True(s.Length > 0);
            if (ours.Count > 0 && ours[^1].Flags == s.Flags)
                ours[^1] = ours[^1] with { Length = ours[^1].Length + s.Length };
            else
                ours.Add(s);
            pos += s.Length;
        }
        Assert.Equal(expected.Count, ours.Count);
        for (int i = 0; i < ours.Count; i++)
        {
            Assert.Equal((long)expected[i]!["start"]!, ours[i].Offset);
            Assert.Equal((long)expected[i]!["length"]!, ours[i].Length);
            Assert.Equal((bool)expected[i]!["data"]!, ours[i].Flags.HasFlag(BlockStatusFlags.Data));
            Assert.Equal((bool)expected[i]!["zero"]!, ours[i].Flags.HasFlag(BlockStatusFlags.Zero));
            Assert.True(ours[i].Flags.HasFlag(BlockStatusFlags.Allocated));
            Assert.Equal((long)expected[i]!["offset"]!, ours[i].HostOffset);
        }
    }

    [Fact]
    public void WriteZeroesWithUnmap_OnAFile_PunchesAHoleThatReadsZero()
    {
        var path = _dir.File("p.raw");
        using var img = RawImage.Create(path, 4 << 20, Preallocation.Full);
        var ones = new byte[1 << 20];
        ones.AsSpan().Fill(1);
        img.Write(1 << 20, ones);
        img.WriteZeroes(1 << 20, 512 << 10, unmap: true);
        var back = new byte[1 << 20];
        img.Read(1 << 20, back);
        Assert.All(back[..(512 << 10)], b => Assert.Equal(0, b));
        Assert.All(back[(512 << 10)..], b => Assert.Equal(1, b));
        var s = img.GetBlockStatus(1 << 20, 4 << 20);
        Assert.Equal(BlockStatusFlags.Zero | BlockStatusFlags.Allocated, s.Flags);
        Assert.Equal(512 << 10, s.Length);
    }

    [Fact]
    public void WriteZeroes_WithoutUnmapOnMemory_ZerosTheRange()
    {
        var mem = new MemoryStorage();
        using var img = RawImage.Create(mem, 3 << 20);
        var data = StorageContractTests.Pattern(3 << 20, 1);
        img.Write(0, data);
        img.WriteZeroes(100, 2 << 20);
        var back = new byte[3 << 20];
        img.Read(0, back);
        Assert.Equal(data[..100], back[..100]);
        Assert.All(back[100..((2 << 20) + 100)], b => Assert.Equal(0, b));
        Assert.Equal(data[((2 << 20) + 100)..], back[((2 << 20) + 100)..]);
    }

    [Theory]
    [InlineData(Preallocation.Off)]
    [InlineData(Preallocation.Falloc)]
    [InlineData(Preallocation.Full)]
    public void Create_Preallocation_SizesTheFileAndAllocatesAsAsked(Preallocation mode)
    {
        var path = _dir.File($"c-{mode}.raw");
        using (var img = RawImage.Create(path, 8 << 20, mode))
            Assert.Equal(8 << 20, img.Size);
        Assert.Equal(8 << 20, new FileInfo(path).Length);
        var info = JsonNode.Parse(QemuTools.Img("info", "--output=json", "-f", "raw", path))!;
        long actual = (long)info["actual-size"]!;
        if (mode == Preallocation.Off) Assert.True(actual < 1 << 20, $"actual-size {actual}");
        else Assert.True(actual >= 8 << 20, $"actual-size {actual}");
    }

    [Fact]
    public void Create_MetadataPreallocation_ThrowsArgument()
    {
        Assert.Throws<ArgumentException>(() => RawImage.Create(_dir.File("m.raw"), 1 << 20, Preallocation.Metadata));
    }

    [Fact]
    public void Write_ReadOnlyOrOutOfRange_Throws()
    {
        var path = _dir.File("ro.raw");
        File.WriteAllBytes(path, new byte[4096]);
        using (var ro = RawImage.Open(path, readOnly: true))
            Assert.Throws<InvalidOperationException>(() => ro.Write(0, new byte[1]));
        using var rw = RawImage.Open(path);
        Assert.Throws<ArgumentOutOfRangeException>(() => rw.Write(4000, new byte[200]));
        Assert.Throws<ArgumentOutOfRangeException>(() => rw.Read(-1, new byte[1]));
    }

    [Fact]
    public void DiskImageOpen_ProbesQcow2ByMagicElseRaw()
    {
        var q = _dir.File("a.qcow2");
        var r = _dir.File("a.img");
        QemuTools.Img("create", "-q", "-f", "qcow2", q, "1M");
        File.WriteAllBytes(r, new byte[] { 0x51, 0x46, 0x49 }); // a prefix of the magic is still raw
        Assert.Equal("qcow2", DiskImage.Probe(q));
        Assert.Equal("raw", DiskImage.Probe(r));
        using (var img = DiskImage.Open(q, options: new DiskOpenOptions { ReadOnly = true }))
        {
            Assert.Equal("qcow2", img.Format);
            Assert.Equal(1 << 20, img.Size);
            Assert.True(img.IsReadOnly);
        }
        using (var img = DiskImage.Open(q, "raw", new DiskOpenOptions { ReadOnly = true }))
            Assert.Equal("raw", img.Format);
        Assert.Throws<ArgumentException>(() => DiskImage.Open(q, "vmdk"));
    }

    [Fact]
    public void DiskImageCreate_BothFormats_QemuImgReadsThem()
    {
        var q = _dir.File("n.qcow2");
        var r = _dir.File("n.raw");
        using (var img = DiskImage.Create(q, "qcow2", 2 << 20, qcow2Options: new Qcow2CreateOptions { ClusterSize = 4096 }))
            Assert.Equal("qcow2", img.Format);
        using (var img = DiskImage.Create(r, "raw", 2 << 20))
            Assert.Equal("raw", img.Format);
        var qi = JsonNode.Parse(QemuTools.Img("info", "--output=json", q))!;
        Assert.Equal("qcow2", (string)qi["format"]!);
        Assert.Equal(4096, (int)qi["cluster-size"]!);
        Assert.Equal(2 << 20, (long)JsonNode.Parse(QemuTools.Img("info", "--output=json", "-f", "raw", r))!["virtual-size"]!);
    }
}
