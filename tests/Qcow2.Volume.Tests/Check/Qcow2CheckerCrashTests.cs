using Qcow2.Tests.Shared;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Check;

/// <summary>A power cut at any point of a repair never leaves the image worse than it was.</summary>
public sealed class Qcow2CheckerCrashTests
{
    private const int Seed = 4242;
    private const ulong Copied = 1UL << 63;
    private const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;

    public static TheoryData<string> Scenarios() => new()
    {
        "leak and too-low refcounts with wrong COPIED flags",
        "refcount block lost (rebuild)",
        "dirty lazy-refcount image (rebuild)",
        "snapshot table entry incomplete (table rewrite)",
    };

    private static byte[] Damaged(TempDir dir, string scenario)
    {
        string path;
        switch (scenario)
        {
            case "dirty lazy-refcount image (rebuild)":
                path = dir.File("dirty.qcow2");
                QemuTools.Img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=4096", path, "8M");
                QemuTools.Run(QemuTools.QemuIo, "-f", "qcow2", "-c", "write -P 9 0 1M", "-c", "sigraise 9", path);
                break;
            case "snapshot table entry incomplete (table rewrite)":
                path = CheckHarness.MakeImage(dir, "snap.qcow2", "cluster_size=4096");
                using (var p = new ImagePatcher(path)) p.WriteU32(p.SnapshotsOffset + 36, 0); // extra data size: 0 (id and name move up)
                // Moving id and name is the test's business: rewrite them where a 0-byte extra area puts them.
                RepackFirstSnapshot(path);
                break;
            case "refcount block lost (rebuild)":
                path = CheckHarness.MakeImage(dir, "rb.qcow2", "cluster_size=4096");
                using (var p = new ImagePatcher(path)) p.SetRefcountTableEntry(0, p.RefcountTableEntry(0) | 1);
                break;
            default:
                path = CheckHarness.MakeImage(dir, "mix.qcow2", "cluster_size=4096");
                using (var p = new ImagePatcher(path))
                {
                    long used = (long)(p.Entry(e => (e & Copied) != 0) & OffsetMask) >> p.ClusterBits;
                    p.SetRefcount(used, 3);
                    long shared = (long)(p.Entry(e => e != 0 && (e & Copied) == 0 && (e & (1UL << 62)) == 0) & OffsetMask) >> p.ClusterBits;
                    p.SetRefcount(shared, 1);
                    p.SetL1(0, p.L1(0) & ~Copied);
                }
                break;
        }
        return File.ReadAllBytes(path);
    }

    private static void RepackFirstSnapshot(string path)
    {
        using var p = new ImagePatcher(path);
        // The original entry had 24 bytes of extra data before id and name; shift them down by 24.
        long start = p.SnapshotsOffset;
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var rest = new byte[4096];
        file.Position = start + 40 + 24;
        file.ReadExactly(rest);
        file.Position = start + 40;
        file.Write(rest);
    }

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void CheckRepairAll_PowerCutAtAnyPoint_NeverLeavesMoreCorruption(string scenario)
    {
        using var dir = new TempDir();
        byte[] image = Damaged(dir, scenario);
        CheckResult before;
        using (var s = new MemoryStorage(image, writable: false)) before = Qcow2Checker.Check(s, CheckOptions.ReadOnly);
        Assert.Null(before.FailureMessage);
        Assert.False(before.IsClean);

        var crash = new CrashSimulationStorage(new MemoryStorage(image, writable: true));
        var repaired = Qcow2Checker.Check(crash, new CheckOptions { Repair = RepairMode.All });
        Assert.True(repaired.IsClean, string.Join("; ", repaired.Findings));
        Assert.True(crash.EventCount > 0);

        var random = new Random(Seed);
        for (int cut = 0; cut <= crash.EventCount; cut++)
        {
            for (int variant = 0; variant < 3; variant++)
            {
                using var target = new MemoryStorage();
                crash.RestoreAfterPowerCut(cut, random.Next(), target);
                var after = Qcow2Checker.Check(target, CheckOptions.ReadOnly);
                Assert.True(after.FailureMessage is null, $"cut {cut}: {after.FailureMessage}");
                Assert.True(after.Corruptions <= before.Corruptions,
                    $"cut {cut}/{crash.EventCount}: {after.Corruptions} corruptions, {before.Corruptions} before: {string.Join("; ", after.Findings.Take(4))}");
                // And a second repair always finishes the job.
                var again = Qcow2Checker.Check(target, new CheckOptions { Repair = RepairMode.All });
                Assert.True(again.IsClean, $"cut {cut}: {string.Join("; ", again.Findings.Take(4))}");
            }
        }
    }
}
