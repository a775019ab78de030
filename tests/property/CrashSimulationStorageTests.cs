using Qcow2.Volume.Storage;

namespace Qcow2.Property.Tests;

/// <summary>The crash harness itself: it must really drop, keep and tear what was not flushed.</summary>
public class CrashSimulationStorageTests
{
    private static (CrashSimulationStorage Crash, MemoryStorage Inner) Recorded()
    {
        var inner = new MemoryStorage(ReferenceDiskTests.Filled(4096, 0x11));
        var crash = new CrashSimulationStorage(inner);
        crash.Write(0, ReferenceDiskTests.Filled(1024, 0xaa));   // event 0
        crash.Flush();                                           // event 1
        crash.Write(1024, ReferenceDiskTests.Filled(2048, 0xbb)); // event 2
        crash.Write(0, ReferenceDiskTests.Filled(512, 0xcc));    // event 3
        return (crash, inner);
    }

    private static byte[] Contents(IStorage s)
    {
        var b = new byte[s.Length];
        Assert.Equal(b.Length, s.Read(0, b));
        return b;
    }

    [Fact]
    public void Operations_PassThroughAndAreRecordedInOrder()
    {
        var (crash, inner) = Recorded();
        Assert.Equal(4, crash.EventCount);
        Assert.Equal(
            [StorageEventKind.Write, StorageEventKind.Flush, StorageEventKind.Write, StorageEventKind.Write],
            crash.Events.Select(e => e.Kind));
        var now = Contents(inner);
        Assert.Equal(0xcc, now[0]);
        Assert.Equal(0xaa, now[512]);
        Assert.Equal(0xbb, now[1024]);
        Assert.Equal(0x11, now[3072]);
        Assert.Equal(1, crash.LastFlushBefore(4));
        Assert.Equal(-1, crash.LastFlushBefore(1));
    }

    [Fact]
    public void RestoreAfterPowerCut_DropAll_KeepsOnlyFlushedWrites()
    {
        var (crash, _) = Recorded();
        var target = new MemoryStorage();
        crash.RestoreAfterPowerCut(4, _ => CrashWriteFate.Drop, new Random(1), target);
        var after = Contents(target);
        Assert.All(after[..1024], b => Assert.Equal(0xaa, b));
        Assert.All(after[1024..], b => Assert.Equal(0x11, b));
    }

    [Fact]
    public void RestoreAfterPowerCut_KeepAll_EqualsTheLiveMedium()
    {
        var (crash, inner) = Recorded();
        var target = new MemoryStorage();
        crash.RestoreAfterPowerCut(4, _ => CrashWriteFate.Keep, new Random(1), target);
        Assert.Equal(Contents(inner), Contents(target));
    }

    [Fact]
    public void RestoreAfterPowerCut_BeforeAnyEvent_IsTheInitialContents()
    {
        var (crash, _) = Recorded();
        var target = new MemoryStorage();
        crash.RestoreAfterPowerCut(0, _ => CrashWriteFate.Keep, new Random(1), target);
        Assert.All(Contents(target), b => Assert.Equal(0x11, b));
    }

    [Fact]
    public void RestoreAfterPowerCut_UnflushedWritesBeforeTheCut_AreAtRiskOnlyUpToIt()
    {
        var (crash, _) = Recorded();
        var target = new MemoryStorage();
        // Cut after event 2: event 3 never happened, event 2 kept.
        crash.RestoreAfterPowerCut(3, _ => CrashWriteFate.Keep, new Random(1), target);
        var after = Contents(target);
        Assert.All(after[..1024], b => Assert.Equal(0xaa, b));
        Assert.All(after[1024..3072], b => Assert.Equal(0xbb, b));
    }

    [Fact]
    public void RestoreAfterPowerCut_Tear_MixesWholeSectorsOfOldAndNew()
    {
        var inner = new MemoryStorage(new byte[64 * 512]);
        var crash = new CrashSimulationStorage(inner);
        crash.Write(100, ReferenceDiskTests.Filled(60 * 512, 0xee)); // unaligned: 61 medium sectors
        var sawOld = false;
        var sawNew = false;
        for (var seed = 0; seed < 8; seed++)
        {
            var target = new MemoryStorage();
            crash.RestoreAfterPowerCut(1, _ => CrashWriteFate.Tear, new Random(seed), target);
            var after = Contents(target);
            Assert.All(after[..100], b => Assert.Equal(0, b));
            for (var sector = 0; sector < 64; sector++)
            {
                // Within one medium sector the write landed whole or not at all.
                var start = Math.Max(sector * 512, 100);
                var end = Math.Min(sector * 512 + 512, 100 + 60 * 512);
                if (start >= end) continue;
                var slice = after[start..end];
                Assert.True(slice.All(b => b == 0) || slice.All(b => b == 0xee), $"sector {sector} mixed within itself");
                sawOld |= slice[0] == 0;
                sawNew |= slice[0] == 0xee;
            }
        }
        Assert.True(sawOld && sawNew, "tearing should keep some sectors and drop others");
    }

    [Fact]
    public void RestoreAfterPowerCut_SeededChoices_ReplayAndDiffer()
    {
        var inner = new MemoryStorage();
        var crash = new CrashSimulationStorage(inner);
        for (var i = 0; i < 40; i++) crash.Write(i * 512L, ReferenceDiskTests.Filled(512, (byte)(i + 1)));
        byte[] Run(int seed)
        {
            var t = new MemoryStorage();
            crash.RestoreAfterPowerCut(40, seed, t);
            return Contents(t);
        }
        Assert.Equal(Run(7), Run(7));
        Assert.NotEqual(Run(7), Run(8));
        var sample = Run(7);
        var kept = Enumerable.Range(0, 40).Count(i => sample.Length > i * 512 && sample[i * 512] == i + 1);
        Assert.InRange(kept, 1, 39);
    }

    [Fact]
    public void ArmPowerCut_FurtherOperations_ThrowIOException()
    {
        var crash = new CrashSimulationStorage(new MemoryStorage());
        crash.ArmPowerCut(2);
        crash.Write(0, new byte[10]);
        crash.Flush();
        Assert.Throws<IOException>(() => crash.Write(0, new byte[10]));
        Assert.Throws<IOException>(() => crash.Flush());
        Assert.Throws<IOException>(() => crash.Read(0, new byte[1]));
        Assert.Equal(2, crash.EventCount);
    }

    [Fact]
    public void SetLength_IsRecordedAndReplayed()
    {
        var crash = new CrashSimulationStorage(new MemoryStorage(new byte[1024]));
        crash.SetLength(4096);
        crash.Write(3000, ReferenceDiskTests.Filled(10, 5));
        crash.SetLength(2048);
        var target = new MemoryStorage();
        crash.RestoreAfterPowerCut(3, _ => CrashWriteFate.Keep, new Random(0), target);
        Assert.Equal(2048, target.Length);
    }
}
