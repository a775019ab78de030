using System.Buffers.Binary;
using Qcow2.Spans.Layout;
using Qcow2.Tests.Shared;

namespace Qcow2.Spans.Tests;

/// <summary>
/// Headers QEMU refuses to open, made by patching one field of a qemu-img image: our validator
/// must report the matching rule, and the unpatched image must pass both.
/// </summary>
public class QemuRefusalTests
{
    public static TheoryData<string, int, int, ulong, HeaderRule> Patches() => new()
    {
        // name, field offset, width, value, rule
        { "version 4", HeaderView.VersionOffset, 4, 4, HeaderRule.Version },
        { "cluster_bits 8", HeaderView.ClusterBitsOffset, 4, 8, HeaderRule.ClusterBits },
        { "cluster_bits 22", HeaderView.ClusterBitsOffset, 4, 22, HeaderRule.ClusterBits },
        { "header_length 100", HeaderView.HeaderLengthOffset, 4, 100, HeaderRule.HeaderLength },
        { "refcount_order 7", HeaderView.RefcountOrderOffset, 4, 7, HeaderRule.RefcountOrder },
        { "crypt_method 3", HeaderView.CryptMethodOffset, 4, 3, HeaderRule.CryptMethod },
        { "l1_table_offset misaligned", HeaderView.L1TableOffsetOffset, 8, 0x30200, HeaderRule.L1TableOffset },
        { "l1_size above 32 MiB", HeaderView.L1SizeOffset, 4, 4 * 1024 * 1024 + 1, HeaderRule.L1SizeLimit },
        { "l1_size too small", HeaderView.L1SizeOffset, 4, 0, HeaderRule.L1SizeTooSmall },
        { "refcount_table_offset misaligned", HeaderView.RefcountTableOffsetOffset, 8, 0x10200, HeaderRule.RefcountTableOffset },
        { "refcount_table_clusters 0", HeaderView.RefcountTableClustersOffset, 4, 0, HeaderRule.RefcountTableClusters },
        { "refcount table above 8 MiB", HeaderView.RefcountTableClustersOffset, 4, 2049, HeaderRule.RefcountTableClusters },
        { "nb_snapshots above 65536", HeaderView.NbSnapshotsOffset, 4, 65537, HeaderRule.SnapshotCount },
        { "snapshots_offset misaligned", HeaderView.SnapshotsOffsetOffset, 8, 0x100, HeaderRule.SnapshotsOffset },
        { "unknown incompatible bit 20", HeaderView.IncompatibleFeaturesOffset, 8, 1UL << 20, HeaderRule.UnknownIncompatibleFeature },
        { "compression bit with zlib", HeaderView.IncompatibleFeaturesOffset, 8, 8, HeaderRule.CompressionType },
        { "compression type 2", Qcow2Constants.CompressionTypeOffset, 1, 2, HeaderRule.CompressionType },
        { "extended L2 at 4 KiB", HeaderView.IncompatibleFeaturesOffset, 8, 16, HeaderRule.ExtendedL2ClusterBits },
        { "backing name too long", HeaderView.BackingFileSizeOffset, 4, 1024, HeaderRule.BackingFileSize },
    };

    [Theory]
    [MemberData(nameof(Patches))]
    public void Validate_FieldQemuRefuses_ReportsTheRule(string name, int offset, int width, ulong value, HeaderRule rule)
    {
        using var dir = new TempDir();
        string path = dir.File("img.qcow2");
        // 4 KiB clusters so that extended L2 is refused by cluster size; a backing file so that the
        // name fields exist; one snapshot so that the snapshot table fields are live.
        string baseImg = dir.File("base.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", baseImg, "8M");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", baseImg, "-F", "qcow2", path, "8M");
        QemuTools.Img("snapshot", "-c", "s", path);
        byte[] file = File.ReadAllBytes(path);
        Assert.Empty(Violations(file));

        var field = file.AsSpan(offset, width);
        switch (width)
        {
            case 1: field[0] = (byte)value; break;
            case 4: BinaryPrimitives.WriteUInt32BigEndian(field, (uint)value); break;
            default: BinaryPrimitives.WriteUInt64BigEndian(field, value); break;
        }
        File.WriteAllBytes(path, file);

        var (code, _, stderr) = QemuTools.Run(QemuTools.QemuImg, "info", path);
        Assert.True(code != 0, $"{name}: qemu-img opened the patched image");
        var v = Violations(file);
        Assert.True(v.Any(x => x.Rule == rule), $"{name}: qemu says '{stderr.Trim()}', we report [{string.Join("; ", v)}]");
    }

    [Fact]
    public void Validate_BackingFormatLength_AgreesWithQemuAtTheLimit()
    {
        using var dir = new TempDir();
        string baseImg = dir.File("base.qcow2"), path = dir.File("top.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", baseImg, "1M");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-b", baseImg, "-F", "qcow2", path);
        byte[] original = File.ReadAllBytes(path);
        var h = Qcow2Header.Parse(original);
        foreach (int length in new[] { 15, 16 })
        {
            byte[] file = (byte[])original.Clone();
            // Rewrite the extension area: a backing format of the given length, then the end marker.
            var area = file.AsSpan(h.ExtensionsStart, h.ExtensionsEnd(h.ClusterSize) - h.ExtensionsStart);
            area.Clear();
            var name = new byte[length];
            name.AsSpan().Fill((byte)'q');
            int n = HeaderExtensionEnumerator.WriteExtension(area, Qcow2Constants.ExtensionBackingFormat, name);
            HeaderExtensionEnumerator.WriteEnd(area[n..]);
            File.WriteAllBytes(path, file);
            var (code, _, _) = QemuTools.Run(QemuTools.QemuImg, "info", path);
            var v = Violations(file);
            Assert.Equal(code == 0, v.Length == 0);
            Assert.Equal(length > 15, v.Any(x => x.Rule == HeaderRule.StringExtension && x.IsUnsupported));
        }
    }

    private static HeaderViolation[] Violations(byte[] file)
    {
        var h = Qcow2Header.Parse(file);
        var dest = new HeaderViolation[HeaderValidator.MaxViolations];
        int cluster = Math.Min(file.Length, h.ClusterSize > 0 ? h.ClusterSize : 512);
        int n = HeaderValidator.Validate(h, file.Length, dest, file.AsSpan(0, cluster));
        return dest[..n];
    }
}
