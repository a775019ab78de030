using System.Text.Json;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Check;

namespace Qcow2.Volume.Tests.Check;

/// <summary>Images using encryption, an external data file and bitmaps, against qemu-img check.</summary>
public sealed class Qcow2CheckerFeatureTests
{
    private const ulong Copied = 1UL << 63;

    [Fact]
    public void Check_LuksEncryptedImage_CountsTheEncryptionHeaderLikeQemu()
    {
        using var dir = new TempDir();
        string path = dir.File("luks.qcow2");
        const string secret = "secret,id=s0,data=pw";
        QemuTools.CreateLuksImage(path, "16M");
        string opts = $"driver=qcow2,file.filename={path},encrypt.key-secret=s0";
        var (code, _, err) = QemuTools.Run(QemuTools.QemuIo, "--object", secret, "--image-opts", "-c", "write -P 3 0 1M", opts);
        Assert.True(code == 0, err);
        var (checkCode, json, checkErr) = QemuTools.Run(QemuTools.QemuImg, "check", "--object", secret, "--image-opts", "--output=json", opts);
        Assert.True(checkCode == 0, checkErr);
        using var doc = JsonDocument.Parse(json);

        var ours = CheckHarness.OurCheck(path);

        // Had the LUKS header area not been counted, its clusters would show up as leaks.
        Assert.True(ours.IsClean, string.Join("\n", ours.Findings));
        Assert.Equal(doc.RootElement.GetProperty("image-end-offset").GetInt64(), ours.ImageEndOffset);
        Assert.Equal(doc.RootElement.GetProperty("allocated-clusters").GetInt64(), ours.AllocatedClusters);
        Assert.True(ours.ImageEndOffset > 1 << 20, "the LUKS key material lies in the image");
    }

    [Fact]
    public void Check_ExternalDataFile_DoesNotCountDataClustersLikeQemu()
    {
        using var dir = new TempDir();
        string path = dir.File("df.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", $"data_file={dir.File("df.raw")}", path, "16M");
        QemuTools.Io(path, "qcow2", "write -P 3 0 1M", "write -P 4 4M 64k");
        var clean = CheckHarness.OurCheck(path);
        Assert.Equal(QemuCheckReport.Run(path).Numbers(), QemuCheckReport.From(clean).Numbers());
        Assert.True(clean.IsClean);

        using (var p = new ImagePatcher(path)) p.Patch(e => (e & Copied) != 0 && (e & 0x00ff_ffff_ffff_fe00UL) != 0, e => e & ~Copied);
        var damaged = CheckHarness.OurCheck(path);
        Assert.Equal(QemuCheckReport.Run(path).Numbers(), QemuCheckReport.From(damaged).Numbers());
        Assert.Equal(1, damaged.Corruptions);
    }

    [Fact]
    public void Check_BitmapDataClusterLeakedAndTableEntryBroken_MatchesQemu()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "bm.qcow2", "cluster_size=4096", snapshot: false);
        QemuTools.Img("bitmap", "--add", path, "bm0");
        QemuTools.Io(path, "qcow2", "write -P 7 2M 1M");
        var (tableOffset, tableSize) = FindFirstBitmapTable(path);
        long dataCluster;
        using (var p = new ImagePatcher(path))
        {
            ulong entry = 0;
            for (int i = 0; i < tableSize && entry == 0; i++) entry = p.U64(tableOffset + i * 8L) & 0x00ff_ffff_ffff_fe00UL;
            Assert.NotEqual(0UL, entry);
            dataCluster = (long)entry >> p.ClusterBits;
            p.SetRefcount(dataCluster, p.Refcount(dataCluster) + 1);
        }
        var leaked = CheckHarness.OurCheck(path);
        Assert.Equal(QemuCheckReport.Run(path).Numbers(), QemuCheckReport.From(leaked).Numbers());
        Assert.Equal(1, leaked.Leaks);

        using (var p = new ImagePatcher(path)) p.WriteU64(tableOffset, p.U64(tableOffset) | 0x2); // reserved bit
        var broken = CheckHarness.OurCheck(path);
        Assert.True(QemuCheckReport.Run(path).Failed);
        Assert.Equal("Invalid argument", broken.FailureMessage);
    }

    [Fact]
    public void CheckRepairAll_SnapshotWithTooMuchExtraData_RewritesTableLikeQemu()
    {
        using var dir = new TempDir();
        string path = dir.File("snap.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", path, "32M");
        QemuTools.Io(path, "qcow2", "write -P 1 0 1M");
        QemuTools.Img("snapshot", "-c", "s1", path);
        QemuTools.Io(path, "qcow2", "write -P 2 0 64k");
        QemuTools.Img("snapshot", "-c", "s2", path);
        GrowFirstSnapshotExtraData(path, 1100);

        var readOnly = CheckHarness.OurCheck(path);
        Assert.True(QemuCheckReport.Run(path).Failed);
        Assert.Equal("File too large", readOnly.FailureMessage);

        string qemuCopy = CheckHarness.Copy(dir, path, "q.qcow2");
        var qemu = QemuCheckReport.Run(qemuCopy, RepairMode.All);
        var ours = CheckHarness.OurCheck(path, RepairMode.All);
        Assert.Equal(qemu.Numbers(withImageEnd: false), QemuCheckReport.From(ours).Numbers(withImageEnd: false));
        Assert.Equal(0, QemuCheckReport.Run(path).ExitCode);
        foreach (var snapshot in new[] { "s1", "s2" })
        {
            string a = dir.File($"q-{snapshot}.raw"), b = dir.File($"o-{snapshot}.raw");
            QemuTools.Img("convert", "-l", snapshot, "-O", "raw", qemuCopy, a);
            QemuTools.Img("convert", "-l", snapshot, "-O", "raw", path, b);
            Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
        }
        Assert.Equal(CheckHarness.ReadRaw(dir, qemuCopy), CheckHarness.ReadRaw(dir, path));
    }

    [Fact]
    public void Check_Version3SnapshotWithoutDiskSize_IsIncompleteAndRepairedLikeQemu()
    {
        using var dir = new TempDir();
        string path = dir.File("snap.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", path, "32M");
        QemuTools.Io(path, "qcow2", "write -P 1 0 1M");
        QemuTools.Img("snapshot", "-c", "s1", path);
        QemuTools.Io(path, "qcow2", "write -P 2 0 64k");
        GrowFirstSnapshotExtraData(path, 8);

        var readOnly = CheckHarness.OurCheck(path);
        Assert.Equal(QemuCheckReport.Run(path).Numbers(), QemuCheckReport.From(readOnly).Numbers());
        Assert.Equal(1, readOnly.Corruptions);

        string qemuCopy = CheckHarness.Copy(dir, path, "q.qcow2");
        var qemu = QemuCheckReport.Run(qemuCopy, RepairMode.All);
        var ours = CheckHarness.OurCheck(path, RepairMode.All);
        Assert.Equal(qemu.Numbers(withImageEnd: false), QemuCheckReport.From(ours).Numbers(withImageEnd: false));
        Assert.Equal(0, QemuCheckReport.Run(path).ExitCode);
        string a = dir.File("q.raw"), b = dir.File("o.raw");
        QemuTools.Img("convert", "-l", "s1", "-O", "raw", qemuCopy, a);
        QemuTools.Img("convert", "-l", "s1", "-O", "raw", path, b);
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
    }

    /// <summary>Rewrites the snapshot table in place with the first entry's extra data resized to <paramref name="size"/> bytes.</summary>
    private static void GrowFirstSnapshotExtraData(string path, int size)
    {
        using var p = new ImagePatcher(path);
        uint count = p.U32(60);
        long pos = p.SnapshotsOffset;
        var table = new List<byte>();
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        byte[] Read(long at, int length)
        {
            var b = new byte[length];
            file.Position = at;
            file.ReadExactly(b);
            return b;
        }
        for (int i = 0; i < count; i++)
        {
            pos = (pos + 7) & ~7L;
            var header = Read(pos, 40);
            pos += 40;
            int idSize = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(12));
            int nameSize = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(14));
            int extraSize = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(36));
            var extra = Read(pos, extraSize);
            pos += extraSize;
            var text = Read(pos, idSize + nameSize);
            pos += text.Length;
            if (i == 0)
            {
                Array.Resize(ref extra, size);
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(36), (uint)size);
            }
            table.AddRange(header);
            table.AddRange(extra);
            table.AddRange(text);
            while (table.Count % 8 != 0) table.Add(0);
        }
        Assert.True(table.Count <= p.ClusterSize, "the grown table still fits its cluster");
        for (int i = 0; i < table.Count; i += 8)
            p.WriteU64(p.SnapshotsOffset + i, System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(table.ToArray().AsSpan(i)));
    }

    /// <summary>Walks the header extensions to the bitmap directory and returns its first table.</summary>
    private static (long Offset, int Size) FindFirstBitmapTable(string path)
    {
        using var p = new ImagePatcher(path);
        long pos = p.U32(100); // header_length
        while (true)
        {
            uint type = p.U32(pos), length = p.U32(pos + 4);
            Assert.NotEqual(0u, type);
            if (type == 0x23852875)
            {
                long directory = (long)p.U64(pos + 8 + 16);
                return ((long)p.U64(directory), (int)p.U32(directory + 8));
            }
            pos += 8 + ((length + 7) & ~7u);
        }
    }
}
