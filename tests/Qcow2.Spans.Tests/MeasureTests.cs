using System.Globalization;
using System.Text.Json;
using Qcow2.Tests.Shared;

namespace Qcow2.Spans.Tests;

public class MeasureTests
{
    private static (long Required, long Fully) Measure(string options, long size)
    {
        string json = QemuTools.Img("measure", "--output=json", "-O", "qcow2", "-o", options, "--size", size.ToString(CultureInfo.InvariantCulture));
        using var d = JsonDocument.Parse(json);
        return (d.RootElement.GetProperty("required").GetInt64(), d.RootElement.GetProperty("fully-allocated").GetInt64());
    }

    [Fact]
    public void Calculate_ManyLayouts_MatchesQemuImgMeasure()
    {
        var sizes = new long[] { 0, 512, 65536, 1 << 20, 3 * (1L << 20) + 512, 1L << 30, 100L << 30, (1L << 40) + 4096, 7L << 40 };
        int checkedCount = 0;
        foreach (int bits in new[] { 9, 12, 14, 16, 19, 21 })
        {
            foreach (int order in new[] { 0, 3, 4, 6 })
            {
                foreach (bool ext in new[] { false, true })
                {
                    if (ext && bits < 14) continue;
                    // Keep the run short: a subset of sizes per layout, rotating.
                    for (int i = (bits + order) % 3; i < sizes.Length; i += 3)
                    {
                        long size = sizes[i];
                        string options = string.Create(CultureInfo.InvariantCulture,
                            $"cluster_size={1 << bits},refcount_bits={1 << order},extended_l2={(ext ? "on" : "off")}");
                        bool ours = MetadataSizeCalculator.TryCalculate(bits, order, ext, size, 0, 0, out var m);
                        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "measure", "--output=json", "-O", "qcow2", "-o", options,
                            "--size", size.ToString(CultureInfo.InvariantCulture));
                        if (code != 0)
                        {
                            Assert.Contains("too large", stderr);
                            Assert.False(ours, $"{options} size {size}: qemu-img refused, we computed {m}");
                            continue;
                        }
                        Assert.True(ours, $"{options} size {size}");
                        using var d = JsonDocument.Parse(stdout);
                        Assert.True(d.RootElement.GetProperty("fully-allocated").GetInt64() == m.FullyAllocated, $"{options} size {size}: {m}");
                        Assert.True(d.RootElement.GetProperty("required").GetInt64() == m.Required, $"{options} size {size}: {m}");
                        checkedCount++;
                    }
                }
            }
        }
        Assert.True(checkedCount > 60, checkedCount.ToString(CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Calculate_SourceImageWithData_MatchesQemuImgMeasureRequired()
    {
        using var dir = new TempDir();
        string src = dir.File("src.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", src, "100M");
        QemuTools.Io(src, "qcow2", "write 0 1M", "write 50M 64k", "write 70M 4k");
        using var d = JsonDocument.Parse(QemuTools.Img("measure", "--output=json", "-O", "qcow2", src));
        // Allocated data rounded to 64 KiB clusters: 1 MiB + 64 KiB + 64 KiB.
        var m = MetadataSizeCalculator.Calculate(16, 4, false, 100 << 20, (1 << 20) + 2 * 65536);
        Assert.Equal(d.RootElement.GetProperty("required").GetInt64(), m.Required);
        Assert.Equal(d.RootElement.GetProperty("fully-allocated").GetInt64(), m.FullyAllocated);
    }

    [Fact]
    public void RefcountMetadataBytes_IsAFixedPoint()
    {
        foreach (int order in new[] { 0, 4, 6 })
        {
            var r = RefcountGeometry.Create(9, order);
            foreach (long clusters in new long[] { 0, 1, 4095, 4096, 1_000_000 })
            {
                long bytes = MetadataSizeCalculator.RefcountMetadataBytes(clusters, r, out long blocks);
                long refClusters = bytes / 512;
                long table = refClusters - blocks;
                // The blocks count every cluster including themselves and the table, and no fewer would do.
                Assert.True(blocks * r.EntriesPerBlock >= clusters + refClusters);
                Assert.True(table * r.TableEntriesPerCluster >= blocks);
                if (blocks > 0) Assert.True((blocks - 1) * r.EntriesPerBlock < clusters + refClusters);
            }
        }
    }

    [Fact]
    public void Calculate_InvalidArguments_Throw()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => MetadataSizeCalculator.Calculate(13, 4, true, 1 << 20));
        Assert.Throws<ArgumentOutOfRangeException>(() => MetadataSizeCalculator.Calculate(16, 7, false, 1 << 20));
        Assert.Throws<ArgumentOutOfRangeException>(() => MetadataSizeCalculator.Calculate(16, 4, false, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => MetadataSizeCalculator.Calculate(9, 4, false, 1L << 50));
    }
}
