using System.Globalization;
using System.Text;
using System.Text.Json;
using Qcow2.Spans.Layout;
using Qcow2.Tests.Shared;

namespace Qcow2.Spans.Tests;

/// <summary>
/// Headers of images made by qemu-img, parsed through the views and <see cref="Qcow2Header"/>,
/// compared field by field with <c>qemu-img info --output=json</c>.
/// </summary>
public class QemuInteropTests
{
    private static readonly int[] ClusterSizes = Enumerable.Range(9, 13).Select(b => 1 << b).ToArray();
    private static readonly int[] RefcountWidths = { 1, 2, 4, 8, 16, 32, 64 };

    private sealed record ImageSpec(int ClusterSize, int RefcountBits, string Compat, bool ExtendedL2, string Compression,
        bool Lazy, long Size, string? Backing = null, string? DataFile = null)
    {
        public string Options()
        {
            var o = new StringBuilder(string.Create(CultureInfo.InvariantCulture, $"cluster_size={ClusterSize},compat={Compat}"));
            if (Compat == "1.1")
            {
                o.Append(CultureInfo.InvariantCulture, $",refcount_bits={RefcountBits},compression_type={Compression}");
                o.Append(ExtendedL2 ? ",extended_l2=on" : ",extended_l2=off");
                o.Append(Lazy ? ",lazy_refcounts=on" : ",lazy_refcounts=off");
            }
            if (DataFile is not null) o.Append(",data_file=").Append(DataFile).Append(",data_file_raw=on");
            return o.ToString();
        }
    }

    private static IEnumerable<ImageSpec> Specs()
    {
        for (int i = 0; i < ClusterSizes.Length; i++)
        {
            int cs = ClusterSizes[i];
            for (int j = 0; j < RefcountWidths.Length; j++)
            {
                bool ext = cs >= 16384 && (i + j) % 2 == 1;
                string comp = (i + j) % 3 == 0 ? "zstd" : "zlib";
                long size = ((long)(i * 7 + j + 1) << 20) + 512L * j;
                yield return new ImageSpec(cs, RefcountWidths[j], "1.1", ext, comp, j % 2 == 0, size);
            }
            yield return new ImageSpec(cs, 16, "0.10", false, "zlib", false, (long)(i + 1) << 22);
        }
    }

    [Fact]
    public void Headers_QemuImgCrossProduct_MatchQemuImgInfo()
    {
        using var dir = new TempDir();
        int n = 0;
        foreach (var spec in Specs())
        {
            string path = dir.File($"img{n++}.qcow2");
            QemuTools.Img("create", "-q", "-f", "qcow2", "-o", spec.Options(), path, spec.Size.ToString(CultureInfo.InvariantCulture));
            CheckImage(path, spec);
        }
        Assert.Equal(13 * 8, n);
    }

    [Fact]
    public void Headers_BackingFileAndDataFile_MatchQemuImgInfo()
    {
        using var dir = new TempDir();
        string baseImg = dir.File("base.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", baseImg, "64M");
        foreach (var (cs, compat) in new[] { (65536, "1.1"), (4096, "0.10"), (2 << 20, "1.1") })
        {
            string path = dir.File($"top{cs}.qcow2");
            QemuTools.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size={cs},compat={compat}", "-b", baseImg, "-F", "qcow2", path);
            CheckImage(path, new ImageSpec(cs, 16, compat, false, "zlib", false, 64 << 20, Backing: baseImg));
        }
        string data = dir.File("data.raw");
        string withData = dir.File("withdata.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", $"data_file={data},data_file_raw=on", withData, "32M");
        CheckImage(withData, new ImageSpec(65536, 16, "1.1", false, "zlib", false, 32 << 20, DataFile: data));
    }

    private static void CheckImage(string path, ImageSpec spec)
    {
        byte[] file = File.ReadAllBytes(path);
        using var info = JsonDocument.Parse(QemuTools.Img("info", "--output=json", path));
        var root = info.RootElement;
        var data = root.GetProperty("format-specific").GetProperty("data");

        var h = Qcow2Header.Parse(file);
        var view = HeaderReadOnlyView.Create(file);
        string at = $"{path} ({spec})";

        // Through the views.
        Assert.Equal(Qcow2Constants.Magic, view.Magic);
        Assert.Equal(root.GetProperty("virtual-size").GetUInt64(), view.Size);
        Assert.Equal(root.GetProperty("cluster-size").GetInt32(), 1 << (int)view.ClusterBits);
        Assert.Equal(data.GetProperty("compat").GetString() == "1.1" ? 3u : 2u, view.Version);

        // Through Qcow2Header.
        Assert.True(root.GetProperty("virtual-size").GetUInt64() == h.Size, at);
        Assert.Equal(root.GetProperty("cluster-size").GetInt32(), h.ClusterSize);
        Assert.Equal(spec.ClusterSize, h.ClusterSize);
        Assert.Equal(data.GetProperty("compat").GetString() == "1.1" ? 3u : 2u, h.Version);
        Assert.Equal(data.GetProperty("refcount-bits").GetInt32(), h.RefcountBits);
        Assert.Equal(spec.Compat == "1.1" ? spec.RefcountBits : 16, h.RefcountBits);
        Assert.Equal(data.GetProperty("compression-type").GetString(), h.CompressionType.ToString().ToLowerInvariant());
        Assert.Equal(root.GetProperty("dirty-flag").GetBoolean(), h.IsDirty);
        if (h.Version >= 3)
        {
            Assert.Equal(data.GetProperty("lazy-refcounts").GetBoolean(), h.HasLazyRefcounts);
            Assert.Equal(data.GetProperty("corrupt").GetBoolean(), h.IsCorrupt);
            Assert.Equal(data.GetProperty("extended-l2").GetBoolean(), h.HasExtendedL2);
            Assert.Equal(spec.ExtendedL2, h.HasExtendedL2);
            Assert.Equal(view.HeaderLength, h.HeaderLength);
            Assert.Equal(view.IncompatibleFeatures, (ulong)h.IncompatibleFeatures);
        }
        Assert.Equal(view.L1Size, h.L1Size);
        Assert.Equal(view.L1TableOffset, h.L1TableOffset);
        Assert.Equal(view.RefcountTableOffset, h.RefcountTableOffset);
        Assert.Equal(view.RefcountTableClusters, h.RefcountTableClusters);

        // Backing file name and format, data file.
        if (root.TryGetProperty("backing-filename", out var backing))
        {
            Assert.Equal(backing.GetString(), Encoding.UTF8.GetString(h.GetBackingFileName(file)));
            Assert.True(HeaderExtensionEnumerator.TryFind(file.AsSpan(0, h.ExtensionsEnd(h.ClusterSize)), h.ExtensionsStart,
                Qcow2Constants.ExtensionBackingFormat, out var fmt, out _));
            Assert.Equal(root.GetProperty("backing-filename-format").GetString(), Encoding.UTF8.GetString(fmt));
        }
        else Assert.False(h.HasBackingFile);
        if (data.TryGetProperty("data-file", out var dataFile))
        {
            Assert.True(h.HasExternalDataFile);
            Assert.True(HeaderExtensionEnumerator.TryFind(file.AsSpan(0, h.ClusterSize), h.ExtensionsStart,
                Qcow2Constants.ExtensionExternalDataFile, out var name, out _));
            Assert.Equal(dataFile.GetString(), Encoding.UTF8.GetString(name));
            Assert.Equal(data.GetProperty("data-file-raw").GetBoolean(), (h.AutoclearFeatures & AutoclearFeatures.DataFileRaw) != 0);
        }
        else Assert.False(h.HasExternalDataFile);

        // The header is valid, the extension area walks cleanly, and QEMU's feature names match ours.
        var cluster = file.AsSpan(0, Math.Min(file.Length, h.ClusterSize));
        var violations = new HeaderViolation[HeaderValidator.MaxViolations];
        int count = HeaderValidator.Validate(h, file.Length, violations, cluster);
        Assert.True(count == 0, $"{at}: {string.Join("; ", violations.Take(count))}");
        var walk = new HeaderExtensionEnumerator(cluster[..h.ExtensionsEnd(cluster.Length)], h.ExtensionsStart);
        int names = 0;
        bool hasTable = false;
        foreach (var ext in walk)
        {
            if (ext.Type != Qcow2Constants.ExtensionFeatureNameTable) continue;
            hasTable = true;
            foreach (var f in new FeatureNameTable(ext.Data))
            {
                string? known = FeatureBits.GetKnownName(f.Type, f.Bit);
                if (known is not null)
                {
                    Assert.Equal(known, Encoding.ASCII.GetString(f.Name));
                    names++;
                }
            }
        }
        Assert.Equal(HeaderExtensionError.None, walk.Error);
        // QEMU leaves the table out when it does not fit the first cluster (up to 4 KiB clusters in QEMU 7.2).
        if (h.Version >= 3 && h.ClusterSize >= 8192) Assert.True(hasTable, at);
        if (hasTable) Assert.Equal(8, names);

        // Writing the parsed header back reproduces QEMU's bytes.
        var rewritten = new byte[h.EncodedLength];
        h.WriteTo(rewritten);
        Assert.Equal(file.AsSpan(0, h.EncodedLength).ToArray(), rewritten);

        // The refcounts of a fresh image, read with our refcount block at its width: every
        // cluster of the file is in use exactly once, every later one is free.
        Assert.True(h.TryGetRefcountGeometry(out var rg));
        Assert.True(h.TryGetClusterGeometry(out var g));
        var table = file.AsSpan(checked((int)h.RefcountTableOffset), (int)h.RefcountTableClusters * h.ClusterSize);
        long fileClusters = g.ClustersFor(file.Length);
        for (long c = 0; c < fileClusters + 3; c++)
        {
            var entry = RefcountTableEntry.Read(table, checked((int)rg.TableIndex(c)));
            Assert.Equal(TableEntryStatus.Valid, entry.Validate(g));
            ulong refcount = 0;
            if (!entry.IsUnallocated && entry.BlockOffset < file.Length)
            {
                var block = new ReadOnlyRefcountBlock(file.AsSpan(checked((int)entry.BlockOffset), h.ClusterSize), (int)h.RefcountOrder);
                refcount = block.Get(rg.BlockIndex(c));
            }
            Assert.True((c < fileClusters ? 1UL : 0UL) == refcount, $"{at}: cluster {c} refcount {refcount}");
        }
        var first = new ReadOnlyRefcountBlock(file.AsSpan(checked((int)RefcountTableEntry.Read(table, 0).BlockOffset), h.ClusterSize), (int)h.RefcountOrder);
        Assert.Equal((int)Math.Min(fileClusters, rg.EntriesPerBlock), first.CountNonZero());
        Assert.Equal(fileClusters < rg.EntriesPerBlock ? (int)fileClusters : -1, first.IndexOfZero(0));
    }
}
