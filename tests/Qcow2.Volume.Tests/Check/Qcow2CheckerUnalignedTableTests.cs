using Qcow2.Tests.Shared;
using Qcow2.Volume.Check;

namespace Qcow2.Volume.Tests.Check;

/// <summary>
/// An L1 entry whose L2 offset is not cluster aligned names no real table: the bytes there belong
/// to other clusters (often other metadata). Repair must never write through such a "table"
/// (regressions found by the fuzzer: repairing its bogus entries overwrote the L1 table itself, or
/// the neighbouring L2 table, and counting its bogus references made a refcount rebuild wrong; both
/// left the image worse than before). Repair drops such an L1 entry before anything reads through it.
/// </summary>
public sealed class Qcow2CheckerUnalignedTableTests
{
    private const ulong CopiedFlag = 1UL << 63;

    private static byte[] ReadRange(string path, long offset, int length)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read);
        var bytes = new byte[length];
        file.Position = offset;
        file.ReadExactly(bytes);
        return bytes;
    }

    [Fact]
    public void CheckRepairAll_L1EntryPointsInsideL1Table_LeavesL1TableAndCorruptionsUnchanged()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "self.qcow2", "cluster_size=4096,refcount_bits=1", snapshot: false, compressed: false);
        long l1Offset;
        int l1Size;
        using (var p = new ImagePatcher(path))
        {
            l1Offset = p.L1Offset;
            l1Size = p.L1Size;
            Assert.True(l1Size >= 2 && l1Offset >= 0x200);
            // COPIED + an unaligned L2 offset 512 bytes before the L1 table + low bits set: read as an
            // L2 table, L1[1] is its entry 65, a preallocated-zero entry at an unaligned offset.
            p.SetL1(1, CopiedFlag | (ulong)(l1Offset - 0x200) | 0x1ff);
        }
        byte[] l1Before = ReadRange(path, l1Offset, l1Size * 8);

        var before = CheckHarness.OurCheck(path);
        var qemuBefore = QemuCheckReport.Run(CheckHarness.Copy(dir, path, "qemu.qcow2"));
        Assert.Equal(qemuBefore.Corruptions, before.Corruptions);
        Assert.True(before.Corruptions > 0);

        var repair = CheckHarness.OurCheck(path, RepairMode.All);
        Assert.Null(repair.FailureMessage);
        var after = CheckHarness.OurCheck(path);

        // The bogus entry is dropped; nothing else in the L1 table changes.
        byte[] l1After = ReadRange(path, l1Offset, l1Size * 8);
        Assert.Equal(new byte[8], l1After[8..16]);
        Assert.Equal(l1Before[..8], l1After[..8]);
        Assert.Equal(l1Before[16..], l1After[16..]);
        Assert.True(after.Corruptions <= before.Corruptions, $"{before.Corruptions} corruption(s) before repair, {after.Corruptions} after");
        var qemuAfter = QemuCheckReport.Run(path);
        Assert.True(qemuAfter.Corruptions <= qemuBefore.Corruptions, $"qemu-img: {qemuBefore.Corruptions} corruption(s) before our repair, {qemuAfter.Corruptions} after");
    }

    [Fact]
    public void CheckRepairAll_UnalignedL2OverlappingMetadataAndBadRefcountTableEntry_DoesNotWriteThroughIt()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "overlap.qcow2", "cluster_size=65536,lazy_refcounts=on");
        long fakeTable;
        var snapshotCopy = CheckHarness.Copy(dir, path, "snapshot.qcow2");
        Assert.Equal(0, QemuTools.Run(QemuTools.QemuImg, "snapshot", "-a", "s1", snapshotCopy).Item1);
        byte[] snapshotData = CheckHarness.ReadRaw(dir, snapshotCopy);
        using (var p = new ImagePatcher(path))
        {
            long l2 = p.L2TableOffset(0);
            Assert.NotEqual(0, l2);
            fakeTable = l2 + 0x1000;
            // The table "starts" inside the real L2 table and runs into the cluster after it.
            p.SetL1(0, CopiedFlag | (ulong)fakeTable);
            p.SetRefcountTableEntry(2561, ulong.MaxValue);
        }

        var before = CheckHarness.OurCheck(path);
        var qemuBefore = QemuCheckReport.Run(CheckHarness.Copy(dir, path, "qemu.qcow2"));
        Assert.Equal(qemuBefore.Corruptions, before.Corruptions);
        Assert.True(before.Corruptions > 0);

        var repair = CheckHarness.OurCheck(path, RepairMode.All);
        Assert.Null(repair.FailureMessage);
        var after = CheckHarness.OurCheck(path);

        Assert.True(after.Corruptions <= before.Corruptions, $"{before.Corruptions} corruption(s) before repair, {after.Corruptions} after");
        var qemuAfter = QemuCheckReport.Run(path);
        Assert.True(qemuAfter.Corruptions <= qemuBefore.Corruptions, $"qemu-img: {qemuBefore.Corruptions} corruption(s) before our repair, {qemuAfter.Corruptions} after");
        // The snapshot's guest data (written before the damage) still reads back.
        Assert.Equal(0, QemuTools.Run(QemuTools.QemuImg, "snapshot", "-a", "s1", path).Item1);
        Assert.Equal(snapshotData, CheckHarness.ReadRaw(dir, path));
    }

    [Fact]
    public void CheckRepairAll_SnapshotTableAtHeader_RefusesAndWritesNothing()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "header.qcow2", "cluster_size=65536,compat=0.10", snapshot: false, compressed: false);
        using (var p = new ImagePatcher(path))
        {
            // Snapshots "at" offset 0 (fuzz seed 777 #16334): the header bytes read as snapshot entries.
            p.WriteU32(60, 8);
            p.WriteU64(64, 0);
        }
        byte[] damaged = File.ReadAllBytes(path);

        var before = CheckHarness.OurCheck(path);
        Assert.Null(before.FailureMessage);
        Assert.True(before.Corruptions > 0);

        var repair = CheckHarness.OurCheck(path, RepairMode.All);
        Assert.NotNull(repair.FailureMessage);
        Assert.Equal(damaged, File.ReadAllBytes(path));
    }
}
