using Qcow2.Tests.Shared;
using Qcow2.Volume.Check;

namespace Qcow2.Volume.Tests.Check;

/// <summary>
/// <c>-r all</c> drops L1 and L2 entries that point past the end of the file (qemu-img 7.2 leaves
/// them and the image stays corrupt): afterwards qemu-img check finds the image clean, and the guest
/// range reads as the backing file (a dropped L1 entry) or as zeros (a dropped L2 entry, version 3).
/// </summary>
public sealed class Qcow2CheckerPastEndTests
{
    private const ulong Copied = 1UL << 63;
    private const int ClusterSize = 4096;
    private const long L2Span = (long)ClusterSize * (ClusterSize / 8);   // guest bytes one L2 table maps

    /// <summary>An 8 MiB overlay (4 KiB clusters: one L2 table maps 2 MiB) on a backing file of 0x11 bytes; the overlay holds 0x22 in its first 1 MiB and at 5 MiB.</summary>
    private static (string Base, string Overlay) MakeOverlay(TempDir dir)
    {
        string basePath = dir.File("base.qcow2"), overlay = dir.File("overlay.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", basePath, "8M");
        QemuTools.Io(basePath, "qcow2", "write -P 0x11 0 2M", "write -P 0x11 5M 1M");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-F", "qcow2", "-b", "base.qcow2", overlay);
        QemuTools.Io(overlay, "qcow2", "write -P 0x22 0 1M", "write -P 0x22 5M 1M");
        return (basePath, overlay);
    }

    [Fact]
    public void CheckRepairAll_L1EntryPastEndOfFile_DropsEntryAndBackingShowsThrough()
    {
        using var dir = new TempDir();
        var (basePath, overlay) = MakeOverlay(dir);
        var before = CheckHarness.ReadRaw(dir, overlay);
        var backing = CheckHarness.ReadRaw(dir, basePath);
        using (var p = new ImagePatcher(overlay))
            p.SetL1(0, Copied | 0xff00_0003_0000UL);
        Assert.Equal(2, QemuCheckReport.Run(overlay).ExitCode);

        var ours = CheckHarness.OurCheck(overlay, RepairMode.All);

        Assert.True(ours.IsClean, string.Join("\n", ours.Findings));
        Assert.True(ours.CorruptionsFixed >= 1);
        Assert.True(ours.LeaksFixed >= 1);   // the unreachable L2 table and its data clusters
        var after = QemuCheckReport.Run(overlay);
        Assert.Equal(0, after.ExitCode);
        Assert.Equal("check failed=False corruptions=0 leaks=0", $"check failed={after.Failed} corruptions={after.Corruptions} leaks={after.Leaks}");
        var raw = CheckHarness.ReadRaw(dir, overlay);
        // The first L2 table's guest range now reads the backing file; the rest is untouched.
        Assert.True(raw.AsSpan(0, (int)L2Span).SequenceEqual(backing.AsSpan(0, (int)L2Span)));
        Assert.True(raw.AsSpan((int)L2Span).SequenceEqual(before.AsSpan((int)L2Span)));
        Assert.Equal(0x22, raw[5 << 20]);
        Assert.Equal(0x11, raw[0]);
    }

    [Fact]
    public void CheckRepairAll_L2EntryPastEndOfFileInV3Overlay_ReadsZerosNotStaleBacking()
    {
        using var dir = new TempDir();
        var (basePath, overlay) = MakeOverlay(dir);
        var before = CheckHarness.ReadRaw(dir, overlay);
        var backing = CheckHarness.ReadRaw(dir, basePath);
        using (var p = new ImagePatcher(overlay))
            p.SetL2(0, 3, Copied | 0xff00_0007_0000UL);
        Assert.Equal(2, QemuCheckReport.Run(overlay).ExitCode);

        var ours = CheckHarness.OurCheck(overlay, RepairMode.All);

        Assert.True(ours.IsClean, string.Join("\n", ours.Findings));
        Assert.Equal(1, ours.CorruptionsFixed);
        Assert.Equal(0, QemuCheckReport.Run(overlay).ExitCode);
        var raw = CheckHarness.ReadRaw(dir, overlay);
        int cluster = 3 * ClusterSize;
        // The guest had written this cluster: the entry becomes a zero cluster (version 3), so the
        // older backing data does not come back.
        Assert.True(raw.AsSpan(cluster, ClusterSize).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(0x11, backing[cluster]);
        Assert.True(raw.AsSpan(0, cluster).SequenceEqual(before.AsSpan(0, cluster)));
        Assert.True(raw.AsSpan(cluster + ClusterSize).SequenceEqual(before.AsSpan(cluster + ClusterSize)));
    }

    [Fact]
    public void CheckRepairAll_L2EntryPastEndOfFileWithoutBacking_ReadsZeros()
    {
        using var dir = new TempDir();
        string image = CheckHarness.MakeImage(dir, "a.qcow2", "cluster_size=65536", snapshot: false, compressed: false);
        var before = CheckHarness.ReadRaw(dir, image);
        int l1Index, index;
        int clusterSize;
        using (var p = new ImagePatcher(image))
        {
            (l1Index, index) = p.Find(e => (e & Copied) != 0);
            p.SetL2(l1Index, index, Copied | 0x10_0000_0000UL);
            clusterSize = (int)p.ClusterSize;
        }
        var ours = CheckHarness.OurCheck(image, RepairMode.All);
        Assert.True(ours.IsClean, string.Join("\n", ours.Findings));
        Assert.Equal(0, QemuCheckReport.Run(image).ExitCode);
        var raw = CheckHarness.ReadRaw(dir, image);
        int at = checked((int)((long)l1Index * (clusterSize / 8) + index) * clusterSize);
        Assert.True(raw.AsSpan(at, clusterSize).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(before.AsSpan(at, clusterSize).IndexOfAnyExcept((byte)0) >= 0, "the damaged cluster held data");
    }
}

/// <summary>
/// Refcounts of clusters past the end of the file (a power cut between the refcount update and the
/// file growing): qemu-img check ignores them, so our report does too, but a leak repair clears them
/// so that they do not turn into leaks when the file later grows over them.
/// </summary>
public sealed class Qcow2CheckerRefcountsPastEndTests
{
    [Theory]
    [InlineData(RepairMode.Leaks)]
    [InlineData(RepairMode.All)]
    public void CheckRepair_RefcountPastEndOfFile_ReportEqualsQemuAndLaterGrowthLeaksNothing(RepairMode mode)
    {
        using var dir = new TempDir();
        string image = CheckHarness.MakeImage(dir, "a.qcow2", "cluster_size=65536", snapshot: false, compressed: false);
        long pastEnd;
        using (var p = new ImagePatcher(image))
        {
            pastEnd = (p.FileLength >> p.ClusterBits) + 8;
            Assert.True(pastEnd < p.ClusterSize / 2, "the refcount lies in the first refcount block");
            p.SetRefcount(pastEnd, 1);
        }
        string qemuCopy = CheckHarness.Copy(dir, image, "q.qcow2");
        string ourCopy = CheckHarness.Copy(dir, image, "o.qcow2");

        var qemu = QemuCheckReport.Run(qemuCopy, mode);
        var ours = CheckHarness.OurCheck(ourCopy, mode);
        Assert.Equal(qemu.Numbers(), QemuCheckReport.From(ours).Numbers());
        Assert.Equal(0, ours.ExitCode);
        Assert.Equal(1, ours.RefcountsPastEndCleared);
        using (var p = new ImagePatcher(ourCopy)) Assert.Equal(0UL, p.Refcount(pastEnd));

        // Grow both files well past that cluster: qemu-img's repair left the refcount, which is now a leak.
        foreach (var copy in new[] { qemuCopy, ourCopy })
            QemuTools.Io(copy, "qcow2", "write -P 7 24M 2M");
        Assert.Equal(3, QemuCheckReport.Run(qemuCopy).ExitCode);
        var after = QemuCheckReport.Run(ourCopy);
        Assert.Equal(0, after.ExitCode);
        Assert.Equal(0, after.Leaks);
    }

    [Fact]
    public void Check_RefcountPastEndOfFileWithoutRepair_LeavesItAndReportsAsQemu()
    {
        using var dir = new TempDir();
        string image = CheckHarness.MakeImage(dir, "a.qcow2", "cluster_size=65536", snapshot: false, compressed: false);
        long pastEnd;
        using (var p = new ImagePatcher(image))
        {
            pastEnd = (p.FileLength >> p.ClusterBits) + 8;
            p.SetRefcount(pastEnd, 1);
        }
        var qemu = QemuCheckReport.Run(image);
        var ours = CheckHarness.OurCheck(image);
        Assert.Equal(qemu.Numbers(), QemuCheckReport.From(ours).Numbers());
        Assert.Equal(0, ours.RefcountsPastEndCleared);
        using (var p = new ImagePatcher(image)) Assert.Equal(1UL, p.Refcount(pastEnd));
    }
}
