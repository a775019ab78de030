using Qcow2.Tests.Shared;
using Qcow2.Volume.Check;

namespace Qcow2.Volume.Tests.Check;

/// <summary>Our check against qemu-img check on the same images, clean and damaged in each way.</summary>
public sealed class Qcow2CheckerInteropTests
{
    private const ulong Copied = 1UL << 63;
    private const ulong Compressed = 1UL << 62;
    private const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;

    [Theory]
    [InlineData("cluster_size=65536")]
    [InlineData("cluster_size=512")]
    [InlineData("cluster_size=4096,refcount_bits=1")]
    [InlineData("refcount_bits=2")]
    [InlineData("refcount_bits=4")]
    [InlineData("refcount_bits=8")]
    [InlineData("refcount_bits=32")]
    [InlineData("refcount_bits=64")]
    [InlineData("extended_l2=on")]
    [InlineData("extended_l2=on,cluster_size=16384")]
    [InlineData("compat=0.10")]
    [InlineData("cluster_size=2097152")]
    [InlineData("lazy_refcounts=on")]
    [InlineData("compression_type=zstd")]
    public void Check_ImageMadeByQemu_ReportsWhatQemuReports(string options)
    {
        using var dir = new TempDir();
        // Tiny refcount widths overflow when snapshotting (qemu refuses); keep them snapshot-free.
        bool snapshot = !options.Contains("refcount_bits=1") && !options.Contains("refcount_bits=2");
        string image = CheckHarness.MakeImage(dir, "a.qcow2", options, snapshot);
        var qemu = QemuCheckReport.Run(image);
        var ours = CheckHarness.OurCheck(image);
        Assert.Equal(qemu.Numbers(), QemuCheckReport.From(ours).Numbers());
        Assert.Equal(qemu.ExitCode, ours.ExitCode);
        Assert.True(ours.AllocatedClusters > 0);
    }

    [Fact]
    public void Check_ImageWithBitmaps_CountsBitmapClustersLikeQemu()
    {
        using var dir = new TempDir();
        string image = CheckHarness.MakeImage(dir, "bm.qcow2", "cluster_size=4096", snapshot: false);
        QemuTools.Img("bitmap", "--add", image, "bm0");
        QemuTools.Img("bitmap", "--add", "-g", "65536", image, "bm1");
        QemuTools.Io(image, "qcow2", "write -P 7 2M 1M");
        var qemu = QemuCheckReport.Run(image);
        var ours = CheckHarness.OurCheck(image);
        Assert.False(qemu.Failed);
        Assert.Equal(qemu.Numbers(), QemuCheckReport.From(ours).Numbers());
        Assert.True(ours.IsClean);
    }

    /// <summary>A way of damaging an image, with a readable name for the test output.</summary>
    public sealed record Damage(string Name, string Options, Action<ImagePatcher> Apply)
    {
        public override string ToString() => $"{Name} [{Options}]";
    }

    private static bool IsCopied(ulong e) => (e & Copied) != 0;
    private static bool IsCompressed(ulong e) => (e & Compressed) != 0;
    private static bool IsShared(ulong e) => e != 0 && (e & (Copied | Compressed)) == 0 && (e & OffsetMask) != 0;
    private static long ClusterOf(ImagePatcher p, ulong e) => (long)(e & OffsetMask) >> p.ClusterBits;

    public static TheoryData<Damage> Damages()
    {
        var data = new TheoryData<Damage>();
        foreach (var options in new[] { "cluster_size=65536", "cluster_size=4096,refcount_bits=8", "extended_l2=on", "compat=0.10" })
        {
            data.Add(new Damage("leak", options, p =>
            {
                long cluster = ClusterOf(p, p.Entry(IsCopied));
                p.SetRefcount(cluster, p.Refcount(cluster) + 1);
            }));
            data.Add(new Damage("refcount zero for a used data cluster", options, p => p.SetRefcount(ClusterOf(p, p.Entry(IsCopied)), 0)));
            // Guest clusters the snapshot shares have refcount 2 and no COPIED flag.
            data.Add(new Damage("refcount too low for a shared cluster", options, p => p.SetRefcount(ClusterOf(p, p.Entry(IsShared)), 1)));
            data.Add(new Damage("COPIED cleared on an L2 entry", options, p => p.Patch(IsCopied, e => e & ~Copied)));
            data.Add(new Damage("COPIED set on a shared L2 entry", options, p => p.Patch(IsShared, e => e | Copied)));
            data.Add(new Damage("COPIED cleared on the L1 entry", options, p => p.SetL1(0, p.L1(0) & ~Copied)));
            data.Add(new Damage("L1 entry with reserved bits", options, p => p.SetL1(0, p.L1(0) | (1UL << 60))));
            data.Add(new Damage("L2 entry with reserved bits", options, p => p.Patch(IsCopied, e => e | (1UL << 57))));
            data.Add(new Damage("unaligned data cluster", options, p => p.Patch(IsCopied, e => e + 0x200)));
            data.Add(new Damage("data cluster past the end of the file", options, p => p.Patch(IsCopied, _ => Copied | 0x10_0000_0000UL)));
            data.Add(new Damage("data cluster overlapping the refcount table", options, p => p.Patch(IsCopied, _ => Copied | (ulong)p.RefcountTableOffset)));
            data.Add(new Damage("compressed cluster past the end of the file", options, p => p.Patch(IsCompressed, e =>
            {
                int csizeShift = 62 - (p.ClusterBits - 8);
                return (e & ~((1UL << csizeShift) - 1)) | 0x10_0000_0000UL;
            })));
            data.Add(new Damage("compressed cluster with COPIED", options, p => p.Patch(IsCompressed, e => e | Copied)));
            data.Add(new Damage("refcount table entry unaligned", options, p => p.SetRefcountTableEntry(0, p.RefcountTableEntry(0) + 0x200)));
            data.Add(new Damage("refcount table entry with reserved bits", options, p => p.SetRefcountTableEntry(0, p.RefcountTableEntry(0) | 1)));
            data.Add(new Damage("refcount block outside the image", options, p =>
                p.SetRefcountTableEntry(1, (ulong)(p.FileLength + 64 * p.ClusterSize) & ~((ulong)p.ClusterSize - 1))));
            data.Add(new Damage("refcount block overlapping the L1 table", options, p => p.SetRefcountTableEntry(1, (ulong)p.L1Offset)));
            data.Add(new Damage("snapshot L1 table unaligned", options, p => p.WriteU64(p.SnapshotsOffset, p.U64(p.SnapshotsOffset) + 0x200)));
        }
        data.Add(new Damage("unaligned preallocated zero cluster", "cluster_size=65536", p => p.Patch(IsCopied, e => (e + 0x200) | 1)));
        data.Add(new Damage("unaligned cluster with only zero subclusters", "extended_l2=on", p =>
        {
            p.PatchBitmap(IsCopied, _ => 0xffff_ffff_0000_0000UL);
            p.Patch(IsCopied, e => e + 0x200);
        }));
        data.Add(new Damage("subcluster both allocated and zero", "extended_l2=on", p => p.PatchBitmap(IsCopied, b => b | (1UL << 32))));
        data.Add(new Damage("unallocated cluster with allocated subclusters", "extended_l2=on", p => p.PatchBitmap(e => e == 0, _ => 1)));
        data.Add(new Damage("compressed cluster with a subcluster bitmap", "extended_l2=on", p => p.PatchBitmap(IsCompressed, _ => 1)));
        return data;
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public void Check_DamagedImage_ReportsWhatQemuReports(Damage damage)
    {
        using var dir = new TempDir();
        string image = CheckHarness.MakeImage(dir, "a.qcow2", damage.Options);
        using (var p = new ImagePatcher(image)) damage.Apply(p);

        var qemu = QemuCheckReport.Run(image);
        var ours = CheckHarness.OurCheck(image);
        Assert.Equal(qemu.Numbers(), QemuCheckReport.From(ours).Numbers());
        Assert.Equal(qemu.ExitCode, ours.ExitCode);
        Assert.False(ours.IsClean);
        Assert.NotEmpty(ours.Findings);
    }

    [Theory]
    [MemberData(nameof(Damages))]
    public void CheckRepairAll_DamagedImage_ReadsAsQemusRepairAndChecksClean(Damage damage)
    {
        using var dir = new TempDir();
        string image = CheckHarness.MakeImage(dir, "a.qcow2", damage.Options);
        var original = CheckHarness.ReadRaw(dir, image);
        int clusterSize;
        using (var p = new ImagePatcher(image))
        {
            damage.Apply(p);
            clusterSize = (int)p.ClusterSize;
        }
        string qemuCopy = CheckHarness.Copy(dir, image, "q.qcow2");
        string ourCopy = CheckHarness.Copy(dir, image, "o.qcow2");

        var qemu = QemuCheckReport.Run(qemuCopy, RepairMode.All);
        var ours = CheckHarness.OurCheck(ourCopy, RepairMode.All);
        var after = QemuCheckReport.Run(ourCopy);
        var qemuAfter = QemuCheckReport.Run(qemuCopy);
        var ourRaw = CheckHarness.ReadRaw(dir, ourCopy);
        var qemuRaw = qemu.Failed ? null : CheckHarness.TryReadRaw(dir, qemuCopy, out _);

        Assert.False(after.Failed);
        Assert.Equal(ours.Corruptions, after.Corruptions);
        Assert.Equal(ours.Leaks, after.Leaks);
        if (!qemu.Failed && qemuAfter.Corruptions == after.Corruptions)
        {
            // A rebuilt refcount structure is placed as qemu-img places it, so the end offset agrees too.
            Assert.Equal(qemu.Numbers(), QemuCheckReport.From(ours).Numbers());
        }
        else
        {
            // qemu-img could not repair this (its rebuild trips its own overlap check, or it leaves
            // entries that cannot be valid in place); ours must leave a clean image.
            Assert.True(ours.IsClean, string.Join("\n", ours.Findings));
            Assert.Equal(0, after.ExitCode);
        }

        if (qemuRaw is not null)
            Assert.Equal(qemuRaw, ourRaw);
        else
            CheckHarness.AssertEqualExceptOneZeroedCluster(original, ourRaw, clusterSize);
    }

    /// <summary>Repair of leaks only: the same damages on one layout (the others add nothing new here).</summary>
    public static TheoryData<Damage> DefaultLayoutDamages()
    {
        var data = new TheoryData<Damage>();
        foreach (var row in Damages())
            if (row.Options is "cluster_size=65536") data.Add(row);
        return data;
    }

    [Theory]
    [MemberData(nameof(DefaultLayoutDamages))]
    public void CheckRepairLeaks_DamagedImage_MatchesQemu(Damage damage)
    {
        using var dir = new TempDir();
        string image = CheckHarness.MakeImage(dir, "a.qcow2", damage.Options);
        using (var p = new ImagePatcher(image)) damage.Apply(p);
        string qemuCopy = CheckHarness.Copy(dir, image, "q.qcow2");
        string ourCopy = CheckHarness.Copy(dir, image, "o.qcow2");

        var qemu = QemuCheckReport.Run(qemuCopy, RepairMode.Leaks);
        var ours = CheckHarness.OurCheck(ourCopy, RepairMode.Leaks);
        Assert.Equal(qemu.Numbers(), QemuCheckReport.From(ours).Numbers());
        Assert.Equal(qemu.ExitCode, ours.ExitCode);
        var qemuRaw = CheckHarness.TryReadRaw(dir, qemuCopy, out _);
        var ourRaw = CheckHarness.TryReadRaw(dir, ourCopy, out _);
        Assert.Equal(qemuRaw is null, ourRaw is null);
        if (qemuRaw is not null) Assert.Equal(qemuRaw, ourRaw);
    }

    public static TheoryData<string, string> RefcountWidthDamages()
    {
        var data = new TheoryData<string, string>();
        foreach (var width in new[] { 1, 2, 4, 32, 64 })
            foreach (var damage in new[] { "refcount zero", "unreferenced cluster", "COPIED cleared" })
                data.Add($"cluster_size=4096,refcount_bits={width}", damage);
        return data;
    }

    [Theory]
    [MemberData(nameof(RefcountWidthDamages))]
    public void CheckRepairAll_EveryRefcountWidth_MatchesQemu(string options, string damage)
    {
        using var dir = new TempDir();
        // Narrow refcounts cannot hold a snapshot's shared clusters: these images have none.
        string image = CheckHarness.MakeImage(dir, "w.qcow2", options, snapshot: false);
        using (var p = new ImagePatcher(image))
        {
            switch (damage)
            {
                case "refcount zero": p.SetRefcount(ClusterOf(p, p.Entry(IsCopied)), 0); break;
                case "unreferenced cluster": p.Patch(IsCopied, _ => 0); break;
                default: p.Patch(IsCopied, e => e & ~Copied); break;
            }
        }
        var qemuReadOnly = QemuCheckReport.Run(image);
        Assert.Equal(qemuReadOnly.Numbers(), QemuCheckReport.From(CheckHarness.OurCheck(image)).Numbers());
        Assert.NotEqual(0, qemuReadOnly.ExitCode);

        string qemuCopy = CheckHarness.Copy(dir, image, "q.qcow2");
        var qemu = QemuCheckReport.Run(qemuCopy, RepairMode.All);
        var ours = CheckHarness.OurCheck(image, RepairMode.All);
        Assert.Equal(qemu.Numbers(), QemuCheckReport.From(ours).Numbers());
        Assert.Equal(0, QemuCheckReport.Run(image).ExitCode);
        Assert.Equal(CheckHarness.ReadRaw(dir, qemuCopy), CheckHarness.ReadRaw(dir, image));
    }

    [Fact]
    public void CheckRepairAll_DirtyLazyRefcountImageAfterCrash_RebuildsAndClearsDirtyBit()
    {
        using var dir = new TempDir();
        string image = dir.File("dirty.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", image, "32M");
        // qemu-io kills itself after the write: the refcounts never reach the disk, the dirty bit stays.
        QemuTools.Run(QemuTools.QemuIo, "-f", "qcow2", "-c", "write -P 9 0 3M", "-c", "sigraise 9", image);
        using (var p = new ImagePatcher(image)) Assert.Equal(1UL, p.U64(72) & 1);
        var readOnly = CheckHarness.OurCheck(image);
        Assert.Equal(QemuCheckReport.Run(image).Numbers(), QemuCheckReport.From(readOnly).Numbers());
        string qemuCopy = CheckHarness.Copy(dir, image, "q.qcow2");

        var ours = CheckHarness.OurCheck(image, RepairMode.All);
        QemuCheckReport.Run(qemuCopy, RepairMode.All);

        Assert.True(ours.IsClean);
        Assert.True(ours.CorruptionsFixed > 0);
        using (var p = new ImagePatcher(image)) Assert.Equal(0UL, p.U64(72) & 1);
        Assert.Equal(0, QemuCheckReport.Run(image).ExitCode);
        Assert.Equal(CheckHarness.ReadRaw(dir, qemuCopy), CheckHarness.ReadRaw(dir, image));
    }
}
