using Qcow2.Tests.Shared;
using static Qcow2.Volume.Tests.Image.ImageTestKit;

namespace Qcow2.Volume.Tests.Image;

/// <summary>The L2 slice cache and refcount block cache: sizes, statistics, write-back under pressure.</summary>
public sealed class Qcow2ImageCacheTests
{
    [Fact]
    public void Read_TinyL2CacheWithSmallSlices_CountsMissesAndEvictionsAndReadsCorrectly()
    {
        using var dir = new TempDir();
        string image = dir.File("c.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", "cluster_size=4096", image, "16M");
        QemuTools.Io(image, "qcow2", "write -P 0x10 0 3M", "write -P 0x20 8M 2M", "write -P 0x30 15M 1M");
        var expected = QemuRaw(dir, image);
        var options = TrustedReadOnly with { L2CacheSize = 2 * 1024, L2CacheEntrySize = 1024 };
        using var img = Qcow2Image.Open(image, options);
        var stats0 = img.L2CacheStatistics;
        Assert.Equal(2048, stats0.CapacityBytes);
        Assert.Equal(0, stats0.UsedBytes);
        AssertSameBytes(expected, ReadAll(img), "tiny cache");
        var stats = img.L2CacheStatistics;
        Assert.True(stats.Misses > 2, stats.ToString());
        Assert.True(stats.Evictions > 0, stats.ToString());
        Assert.True(stats.Hits > 0, stats.ToString());
        Assert.Equal(2048, stats.UsedBytes);
    }

    [Fact]
    public void Open_DefaultCaches_QemuLikeSizes()
    {
        using var dir = new TempDir();
        string image = dir.File("d.qcow2");
        QemuTools.Img("create", "-f", "qcow2", image, "1G");
        using var img = Qcow2Image.Open(image, TrustedReadOnly);
        // One cluster per entry; enough to map 1 GiB (two 64 KiB L2 tables); four refcount clusters.
        Assert.Equal(2 * 65536, img.L2CacheStatistics.CapacityBytes);
        Assert.Equal(4 * 65536, img.RefcountCacheStatistics.CapacityBytes);
    }

    [Theory]
    [InlineData("cluster_size=4096")]
    [InlineData("cluster_size=4096,extended_l2=off,lazy_refcounts=on")]
    [InlineData("cluster_size=16384,extended_l2=on")]
    public void Write_TinyCachesForceWriteBack_QemuCheckClean(string createOptions)
    {
        using var dir = new TempDir();
        string image = dir.File("w.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", createOptions, image, "8M");
        var model = new byte[8 << 20];
        var options = Trusted with { L2CacheSize = 1024, L2CacheEntrySize = 512, RefcountCacheSize = 1 };
        using (var img = Qcow2Image.Open(image, options))
        {
            Qcow2ImageWriteTests.RandomOperations(img, model, new Random(Seed + 6), 200, compressed: true);
            Assert.True(img.L2CacheStatistics.Evictions > 0);
            Assert.True(img.RefcountCacheStatistics.Misses > 0);
            AssertSameBytes(model, ReadAll(img), "tiny caches");
        }
        AssertQemuCheckClean(image);
        AssertQemuCompareEqual(dir, image, model);
    }
}
