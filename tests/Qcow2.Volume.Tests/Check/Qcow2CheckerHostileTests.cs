using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Check;

/// <summary>Hostile or absurd metadata: typed results or typed exceptions, never anything else.</summary>
public sealed class Qcow2CheckerHostileTests
{
    private const int Seed = 7_2026;

    private static CheckResult CheckBytes(byte[] image, RepairMode repair, long maxArrayBytes = int.MaxValue)
    {
        using var storage = new MemoryStorage(image, writable: true);
        return Qcow2Checker.Check(storage, new CheckOptions { Repair = repair, MaxRefcountArrayBytes = maxArrayBytes });
    }

    [Fact]
    public void Check_RandomlyDamagedMetadata_ReturnsResultOrTypedException()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "fuzz.qcow2", "cluster_size=4096,extended_l2=off");
        byte[] pristine = File.ReadAllBytes(path);
        var rng = new Random(Seed);
        int results = 0;
        // Metadata lives in the first clusters and around the L2 tables; damage anywhere in the first 256 KiB.
        int span = Math.Min(pristine.Length, 256 * 1024);
        for (int iteration = 0; iteration < 150; iteration++)
        {
            var image = (byte[])pristine.Clone();
            int flips = rng.Next(1, 12);
            for (int f = 0; f < flips; f++)
            {
                int at = rng.Next(0, span);
                image[at] = rng.Next(3) switch { 0 => 0, 1 => 0xff, _ => (byte)rng.Next(256) };
            }
            foreach (var mode in new[] { RepairMode.None, RepairMode.All })
            {
                try
                {
                    var r = CheckBytes(image, mode);
                    Assert.True(r.Corruptions >= 0 && r.Leaks >= 0 && r.CheckErrors >= 0, $"iteration {iteration}");
                    results++;
                }
                catch (Qcow2CorruptImageException) { }
                catch (Qcow2UnsupportedImageException) { }
            }
        }
        Assert.True(results > 100, $"only {results} checks produced a result");
    }

    [Fact]
    public void CheckRepairAll_RandomlyDamagedRefcounts_LeavesCleanImage()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "rc.qcow2", "cluster_size=4096");
        byte[] pristine = File.ReadAllBytes(path);
        long refcountTable;
        long firstBlock;
        using (var p = new ImagePatcher(path))
        {
            refcountTable = p.RefcountTableOffset;
            firstBlock = (long)(p.RefcountTableEntry(0) & ~0x1ffUL);
        }
        var rng = new Random(Seed + 1);
        for (int iteration = 0; iteration < 40; iteration++)
        {
            var image = (byte[])pristine.Clone();
            for (int f = 0; f < 6; f++)
            {
                long at = rng.Next(2) == 0 ? firstBlock + rng.Next(0, 4096) : refcountTable + rng.Next(0, 64);
                image[at] = (byte)rng.Next(256);
            }
            using var storage = new MemoryStorage(image, writable: true);
            var repaired = Qcow2Checker.Check(storage, new CheckOptions { Repair = RepairMode.All });
            Assert.True(repaired.IsClean, $"iteration {iteration}: {string.Join("; ", repaired.Findings)}");
            var again = Qcow2Checker.Check(storage, CheckOptions.ReadOnly);
            Assert.True(again.IsClean, $"iteration {iteration}");
        }
    }

    [Fact]
    public void Check_EveryL1EntryPointingAtOneL2Table_MatchesQemuQuickly()
    {
        using var dir = new TempDir();
        string path = dir.File("same-l2.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", path, "64G");
        QemuTools.Io(path, "qcow2", "write -P 1 0 1M");
        using (var p = new ImagePatcher(path))
            for (int i = 1; i < p.L1Size; i++) p.SetL1(i, p.L1(0));
        var qemu = QemuCheckReport.Run(path);
        var ours = CheckHarness.OurCheck(path);
        Assert.Equal(qemu.Numbers(), QemuCheckReport.From(ours).Numbers());
        Assert.True(ours.Corruptions > 0);
    }

    [Fact]
    public void Check_TooManySnapshots_FailsLikeQemu()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "snaps.qcow2", "cluster_size=65536");
        using (var p = new ImagePatcher(path)) p.WriteU32(60, 70000);
        var qemu = QemuCheckReport.Run(path);
        var ours = CheckHarness.OurCheck(path);
        Assert.True(qemu.Failed);
        Assert.NotNull(ours.FailureMessage);
        Assert.Equal(1, ours.ExitCode);
    }

    [Theory]
    [InlineData(36, 0x7fff_ffffUL, 4)]   // l1_size
    [InlineData(56, 0x7fff_ffffUL, 4)]   // refcount_table_clusters
    [InlineData(40, 0x1234UL, 8)]        // unaligned L1 table offset
    [InlineData(0, 0UL, 4)]              // magic
    public void Check_AbsurdHeaderField_ThrowsTypedImageError(int offset, ulong value, int width)
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "h.qcow2", "cluster_size=65536", snapshot: false);
        using (var p = new ImagePatcher(path))
        {
            if (width == 4) p.WriteU32(offset, (uint)value); else p.WriteU64(offset, value);
        }
        // Beyond QEMU's limits (l1_size, refcount_table_clusters) the validator calls it unsupported.
        var e = Record.Exception(() => CheckHarness.OurCheck(path));
        Assert.True(e is Qcow2CorruptImageException or Qcow2UnsupportedImageException, e?.ToString() ?? "no exception");
        Assert.NotEqual(0, QemuTools.Run(QemuTools.QemuImg, "check", path).ExitCode);
    }

    [Fact]
    public void Check_UnknownIncompatibleFeature_ThrowsUnsupported()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "u.qcow2", "cluster_size=65536", snapshot: false);
        using (var p = new ImagePatcher(path)) p.WriteU64(72, 1UL << 40);
        Assert.Throws<Qcow2UnsupportedImageException>(() => CheckHarness.OurCheck(path));
    }

    [Fact]
    public void Check_RefcountArrayOverMemoryLimit_ReportsCheckError()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "m.qcow2", "cluster_size=512", snapshot: false);
        var r = CheckBytes(File.ReadAllBytes(path), RepairMode.None, maxArrayBytes: 1024);
        Assert.Equal("Cannot allocate memory", r.FailureMessage);
        Assert.Equal(1, r.CheckErrors);
        Assert.Equal(1, r.ExitCode);
    }

    [Fact]
    public void Check_WithProgress_ReportsIncreasingFractionsEndingAtOne()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "p.qcow2", "cluster_size=65536");
        var seen = new List<double>();
        var progress = new SynchronousProgress(seen.Add);
        CheckHarness.OurCheck(path, RepairMode.None, progress);
        Assert.NotEmpty(seen);
        Assert.Equal(1.0, seen[^1]);
        for (int i = 1; i < seen.Count; i++) Assert.True(seen[i] >= seen[i - 1], $"{seen[i - 1]} then {seen[i]}");
    }

    [Fact]
    public void Check_ManyFindingsOverLimit_KeepsLimitAndCountsTheRest()
    {
        using var dir = new TempDir();
        string path = dir.File("lazy.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=4096", path, "32M");
        QemuTools.Run(QemuTools.QemuIo, "-f", "qcow2", "-c", "write -P 9 0 2M", "-c", "sigraise 9", path);
        using var storage = FileStorage.Open(path);
        var all = Qcow2Checker.Check(storage, CheckOptions.ReadOnly);
        var capped = Qcow2Checker.Check(storage, new CheckOptions { MaxFindings = 10 });
        Assert.True(all.Findings.Count > 10);
        Assert.Equal(10, capped.Findings.Count);
        Assert.Equal(all.Findings.Count - 10, capped.FindingsOmitted);
        Assert.Equal(all.Corruptions, capped.Corruptions);
        Assert.Equal(all.Leaks, capped.Leaks);
    }

    [Fact]
    public void Check_RepairOnReadOnlyStorage_ThrowsArgumentException()
    {
        using var storage = new MemoryStorage(new byte[1024], writable: false);
        Assert.Throws<ArgumentException>(() => Qcow2Checker.Check(storage, new CheckOptions { Repair = RepairMode.All }));
    }

    [Fact]
    public void Check_RepairLeaks_RefcountZeroForUsedCluster_FailsAsQemuDoes()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "z.qcow2", "cluster_size=65536");
        using (var p = new ImagePatcher(path))
            p.SetRefcount((long)(p.Entry(e => (e & (1UL << 63)) != 0) & 0x00ff_ffff_ffff_fe00UL) >> p.ClusterBits, 0);
        string copy = CheckHarness.Copy(dir, path, "q.qcow2");
        var ours = CheckHarness.OurCheck(path, RepairMode.Leaks);
        var qemu = QemuCheckReport.Run(copy, RepairMode.Leaks);
        Assert.True(qemu.Failed);
        Assert.Equal("Input/output error", ours.FailureMessage);
    }

    private sealed class SynchronousProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }

    [Theory]
    [InlineData(0xffffu, 0)]          // entries over the L1 table: extra data sizes far beyond the limit
    [InlineData(70000u, 0)]           // more snapshots than QEMU allows
    [InlineData(1u, 8)]               // unaligned table
    public void Check_UnreadableSnapshotTable_FailsWithQemusReasonNotJustErrno(uint count, int misalign)
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "s.qcow2", "cluster_size=65536", snapshot: false);
        using (var p = new ImagePatcher(path))
        {
            p.WriteU32(60, count);
            p.WriteU64(64, (ulong)(p.L1Offset + misalign));
        }
        var qemu = QemuTools.Run(QemuTools.QemuImg, "check", "-f", "qcow2", path);
        var ours = CheckHarness.OurCheck(path);

        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.NotNull(ours.FailureDetail);
        // qemu-img: the reason (as an error), any hint, then "Check failed: <errno text>"; nothing else.
        var lines = ours.FailureDetail!.Split('\n');
        string expected = "qemu-img: " + lines[0] + "\n" + string.Concat(lines.Skip(1).Select(l => l + "\n"))
            + "qemu-img: Check failed: " + ours.FailureMessage + "\n";
        Assert.Equal(expected, qemu.StdErr);
        Assert.Empty(ours.Findings);
    }
}
