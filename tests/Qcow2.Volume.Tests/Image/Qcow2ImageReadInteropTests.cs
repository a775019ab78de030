using Qcow2.Spans;
using Qcow2.Tests.Shared;
using static Qcow2.Volume.Tests.Image.ImageTestKit;

namespace Qcow2.Volume.Tests.Image;

/// <summary>
/// Images made by qemu-img and filled by qemu-io across the create option matrix: what we read
/// must equal <c>qemu-img convert -O raw</c> byte for byte.
/// </summary>
public sealed class Qcow2ImageReadInteropTests
{
    /// <summary>Create options (besides cluster_size) keyed by a readable case name.</summary>
    public static TheoryData<string, int, string> Matrix() => new()
    {
        { "v3-512", 512, "refcount_bits=16" },
        { "v3-4k-refcount1", 4096, "refcount_bits=1" },
        { "v3-8k-refcount2", 8192, "refcount_bits=2" },
        { "v3-16k-refcount4", 16384, "refcount_bits=4" },
        { "v3-32k-refcount8", 32768, "refcount_bits=8" },
        { "v3-64k-refcount32", 65536, "refcount_bits=32" },
        { "v3-64k-refcount64", 65536, "refcount_bits=64" },
        { "v3-2m", 2 << 20, "refcount_bits=16" },
        { "v2-64k", 65536, "compat=0.10" },
        { "v2-4k", 4096, "compat=0.10,refcount_bits=16" },
        { "extl2-64k", 65536, "extended_l2=on" },
        { "extl2-16k", 16384, "extended_l2=on" },
        { "extl2-2m", 2 << 20, "extended_l2=on" },
        { "zstd-64k", 65536, "compression_type=zstd" },
        { "zstd-extl2-32k", 32768, "compression_type=zstd,extended_l2=on" },
        { "lazy-64k", 65536, "lazy_refcounts=on" },
        { "prealloc-metadata", 65536, "preallocation=metadata" },
        { "prealloc-falloc", 65536, "preallocation=falloc" },
        { "prealloc-full", 65536, "preallocation=full" },
        { "prealloc-metadata-extl2", 65536, "preallocation=metadata,extended_l2=on" },
    };

    [Theory]
    [MemberData(nameof(Matrix))]
    public void Read_QemuImageOptionMatrix_EqualsQemuConvert(string name, int clusterSize, string options)
    {
        using var dir = new TempDir();
        string image = dir.File(name + ".qcow2");
        long size = Math.Max(4L << 20, 4L * clusterSize);
        QemuTools.Img("create", "-f", "qcow2", "-o", $"cluster_size={clusterSize},{options}", image, Inv(size));
        // qemu-io writes compressed clusters only where nothing is allocated yet.
        Populate(image, clusterSize, size, compressed: !options.Contains("preallocation", StringComparison.Ordinal));

        var expected = QemuRaw(dir, image);
        using var img = Qcow2Image.Open(image, TrustedReadOnly);
        Assert.Equal(size, img.Size);
        Assert.Equal(clusterSize, img.Info.ClusterSize);
        AssertSameBytes(expected, ReadAll(img), name);
    }

    /// <summary>Unaligned writes, zeroes with and without unmap, a discard, compressed clusters.</summary>
    internal static void Populate(string image, int clusterSize, long size, bool compressed, string format = "qcow2")
    {
        var cmds = new List<string>
        {
            "write -P 0x11 1000 70000",
            "write -P 0x22 1048576 4096",
            "write -P 0x23 1060000 300000",
            "write -z 1100000 150000",
            "write -z -u 2097152 262144",
            "write -P 0x44 2500000 5000",
            "discard 2490368 65536",
            "write -P 0x55 3000001 1",
        };
        if (compressed)
        {
            long c = size - 2L * clusterSize;
            cmds.Add($"write -c -P 0x33 {c} {2 * clusterSize}");
        }
        QemuTools.Io(image, format, cmds.ToArray());
    }

    [Theory]
    [InlineData("zlib")]
    [InlineData("zstd")]
    public void Read_ImageConvertedWithCompression_EqualsSource(string type)
    {
        using var dir = new TempDir();
        string source = dir.File("src.qcow2");
        string target = dir.File("c.qcow2");
        QemuTools.Img("create", "-f", "qcow2", source, "3M");
        QemuTools.Io(source, "qcow2", "write -P 0x5a 0 1M", "write -P 0x17 1500000 700000");
        // Some incompressible data too: those clusters stay uncompressed.
        var noise = new byte[200_000];
        new Random(Seed).NextBytes(noise);
        using (var img = Qcow2Image.Open(source, Trusted)) img.Write(2_300_000, noise);
        QemuTools.Img("convert", "-c", "-O", "qcow2", "-o", "compression_type=" + type, source, target);

        using var opened = Qcow2Image.Open(target, TrustedReadOnly);
        Assert.Equal(type == "zstd" ? CompressionType.Zstd : CompressionType.Zlib, opened.Info.CompressionType);
        AssertSameBytes(QemuRaw(dir, target), ReadAll(opened), "compressed " + type);
        var status = opened.GetBlockStatus(0, 1 << 20);
        Assert.True((status.Flags & BlockStatusFlags.Compressed) != 0, $"expected compressed clusters, got {status}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Read_ExternalDataFile_EqualsQemuConvert(bool raw)
    {
        using var dir = new TempDir();
        string image = dir.File("d.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", $"data_file={dir.File("d.data")},data_file_raw={(raw ? "on" : "off")}", image, "4M");
        Populate(image, 65536, 4 << 20, compressed: false);
        using var img = Qcow2Image.Open(image, TrustedReadOnly);
        Assert.Equal(dir.File("d.data"), img.Info.DataFile);
        Assert.Equal(raw, img.Info.DataFileRaw);
        AssertSameBytes(QemuRaw(dir, image), ReadAll(img), "data file");
        var status = img.GetBlockStatus(1000, 100);
        Assert.Equal(dir.File("d.data"), status.HostFile);
    }

    [Fact]
    public void Read_ImageWithPersistentBitmaps_EqualsQemuConvert()
    {
        using var dir = new TempDir();
        string image = dir.File("b.qcow2");
        QemuTools.Img("create", "-f", "qcow2", image, "4M");
        QemuTools.Img("bitmap", "--add", image, "b0");
        QemuTools.Img("bitmap", "--add", "-g", "128K", "--disable", image, "b1");
        Populate(image, 65536, 4 << 20, compressed: true);
        using var img = Qcow2Image.Open(image, TrustedReadOnly);
        Assert.Equal(["b0", "b1"], img.Bitmaps.Select(b => b.Name).ToArray());
        Assert.True(img.Bitmaps[0].Auto);
        Assert.False(img.Bitmaps[1].Auto);
        Assert.Equal(128 * 1024, img.Bitmaps[1].Granularity);
        AssertSameBytes(QemuRaw(dir, image), ReadAll(img), "bitmaps");
    }

    [Theory]
    [InlineData("qcow2", 2 << 20, 4 << 20)]
    [InlineData("qcow2", 4 << 20, 1 << 20)]
    [InlineData("raw", 2 << 20, 4 << 20)]
    [InlineData("raw", 3 << 20, (1 << 20) + 512)]
    public void Read_BackingChain_EqualsQemuConvert(string baseFormat, long baseSize, long overlaySize)
    {
        using var dir = new TempDir();
        string baseImage = dir.File("base." + baseFormat);
        QemuTools.Img("create", "-f", baseFormat, baseImage, Inv(baseSize));
        QemuTools.Io(baseImage, baseFormat, "write -P 0x61 0 " + Inv(baseSize), "write -P 0x62 65536 100000");
        string mid = dir.File("mid.qcow2");
        // A relative backing name: resolved against the overlay's directory.
        QemuTools.Img("create", "-f", "qcow2", "-b", "base." + baseFormat, "-F", baseFormat, mid, Inv(overlaySize));
        QemuTools.Io(mid, "qcow2", "write -P 0x71 1000 3000", "write -z 200000 70000");
        string top = dir.File("top.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", "extended_l2=on", "-b", mid, "-F", "qcow2", top, Inv(overlaySize));
        QemuTools.Io(top, "qcow2", "write -P 0x72 5000 2000", "discard 0 65536");

        using var img = Qcow2Image.Open(top, TrustedReadOnly);
        Assert.NotNull(img.Backing);
        AssertSameBytes(QemuRaw(dir, top), ReadAll(img), "chain");

        // The discarded first cluster of the top image reads as zeros there; 70000 is only in the base.
        var top0 = img.GetBlockStatus(1000, 1);
        Assert.Equal(0, top0.Depth);
        Assert.True((top0.Flags & BlockStatusFlags.Zero) != 0, top0.ToString());
        var base0 = img.GetBlockStatus(70000, 1);
        Assert.Equal(2, base0.Depth);
        Assert.True((base0.Flags & BlockStatusFlags.Data) != 0, base0.ToString());
    }

    [Fact]
    public void Open_BackingWithoutFormatExtension_ProbesFormatAndKeepsUnknownExtension()
    {
        using var dir = new TempDir();
        string baseImage = dir.File("base.qcow2");
        QemuTools.Img("create", "-f", "qcow2", baseImage, "1M");
        QemuTools.Io(baseImage, "qcow2", "write -P 0x31 0 1M");
        string top = dir.File("top.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top, "1M");
        // qemu-img 7.2 insists on a backing format: turn its extension into an unknown one.
        var bytes = File.ReadAllBytes(top);
        int at = IndexOf(bytes, [0xe2, 0x79, 0x2a, 0xca]);
        Assert.True(at > 0);
        bytes[at] = 0x12; bytes[at + 1] = 0x34; bytes[at + 2] = 0x56; bytes[at + 3] = 0x78;
        File.WriteAllBytes(top, bytes);

        using var img = Qcow2Image.Open(top, TrustedReadOnly);
        Assert.Null(img.Info.BackingFormat);
        Assert.Contains(0x12345678u, img.Info.UnknownHeaderExtensions);
        Assert.Equal("qcow2", img.Backing!.Format);
        var buf = new byte[4096];
        img.Read(4096, buf);
        Assert.All(buf, b => Assert.Equal(0x31, b));
    }

    [Fact]
    public void GetBlockStatus_ExtendedL2PartlyAllocatedCluster_ReportsSubclustersLikeQemuMap()
    {
        using var dir = new TempDir();
        string image = dir.File("e.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=65536", image, "1M");
        // Subclusters of 2 KiB: the first two allocated, the rest of the cluster not.
        QemuTools.Io(image, "qcow2", "write -P 1 0 4096", "write -z 8192 2048");
        using var img = Qcow2Image.Open(image, TrustedReadOnly);
        var data = img.GetBlockStatus(0, 1 << 20);
        Assert.Equal((0L, 4096L, BlockStatusFlags.Data | BlockStatusFlags.Allocated), (data.Offset, data.Length, data.Flags));
        var hole = img.GetBlockStatus(4096, 1 << 20);
        Assert.Equal((4096L, 4096L, BlockStatusFlags.None), (hole.Offset, hole.Length, hole.Flags));
        // As qemu-img map: an unallocated subcluster of an allocated cluster keeps its host offset.
        Assert.Equal(data.HostOffset + 4096, hole.HostOffset);
        var zero = img.GetBlockStatus(8192, 1 << 20);
        Assert.Equal((8192L, 2048L), (zero.Offset, zero.Length));
        Assert.True((zero.Flags & BlockStatusFlags.Zero) != 0);
        var rest = img.GetBlockStatus(10240, 1 << 20);
        Assert.Equal(65536L - 10240, rest.Length);
        Assert.Equal(data.HostOffset + 10240, rest.HostOffset);
        var untouched = img.GetBlockStatus(65536, 1 << 20);
        Assert.Equal(((1L << 20) - 65536, -1L), (untouched.Length, untouched.HostOffset));
    }

    internal static int IndexOf(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle);
}
