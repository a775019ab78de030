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

    /// <summary>An image file and a data file on one machine: events interleaved on one clock.</summary>
    private static (CrashSimulationStorage Image, CrashSimulationStorage Data) TwoFiles()
    {
        var clock = new CrashSimulationClock();
        var image = new CrashSimulationStorage(new MemoryStorage(ReferenceDiskTests.Filled(2048, 0x11)), clock);
        var data = new CrashSimulationStorage(new MemoryStorage(ReferenceDiskTests.Filled(2048, 0x22)), clock);
        data.Write(0, ReferenceDiskTests.Filled(512, 0xd0));    // time 0, data event 0
        image.Write(0, ReferenceDiskTests.Filled(512, 0xa0));   // time 1, image event 0
        data.Flush();                                           // time 2, data event 1
        image.Write(512, ReferenceDiskTests.Filled(512, 0xa1)); // time 3, image event 1
        data.Write(512, ReferenceDiskTests.Filled(512, 0xd1));  // time 4, data event 2
        image.Flush();                                          // time 5, image event 2
        return (image, data);
    }

    [Fact]
    public void SharedClock_EventsOfBothStorages_AreNumberedOnOneCount()
    {
        var (image, data) = TwoFiles();
        Assert.Same(image.Clock, data.Clock);
        Assert.Equal(6, image.Clock.EventCount);
        Assert.Equal([1, 3, 5], image.Events.Select(e => e.Time));
        Assert.Equal([0, 2, 4], data.Events.Select(e => e.Time));
        // A cut at time t: each storage had seen its events before t.
        Assert.Equal([0, 0, 1, 1, 2, 2, 3], Enumerable.Range(0, 7).Select(image.EventCountAt));
        Assert.Equal([0, 1, 1, 2, 2, 3, 3], Enumerable.Range(0, 7).Select(data.EventCountAt));
        Assert.Throws<ArgumentOutOfRangeException>(() => data.EventCountAt(7));
    }

    [Fact]
    public void SharedClock_CutBetweenTheFilesFlushes_EachKeepsOnlyWhatItsOwnFlushMadeDurable()
    {
        var (image, data) = TwoFiles();
        // Cut at time 5: the data file's flush (time 2) made its first write durable, its second is at
        // risk; the image file never completed a flush, so both its writes are at risk.
        var imageAfter = new MemoryStorage();
        var dataAfter = new MemoryStorage();
        image.RestoreAfterPowerCut(image.EventCountAt(5), _ => CrashWriteFate.Drop, new Random(1), imageAfter);
        data.RestoreAfterPowerCut(data.EventCountAt(5), _ => CrashWriteFate.Drop, new Random(1), dataAfter);
        Assert.All(Contents(imageAfter), b => Assert.Equal(0x11, b));
        var d = Contents(dataAfter);
        Assert.All(d[..512], b => Assert.Equal(0xd0, b));
        Assert.All(d[512..], b => Assert.Equal(0x22, b));

        // After the image's flush (time 6) its writes are durable; the data file's second write still is not.
        imageAfter = new MemoryStorage();
        dataAfter = new MemoryStorage();
        image.RestoreAfterPowerCut(image.EventCountAt(6), _ => CrashWriteFate.Drop, new Random(1), imageAfter);
        data.RestoreAfterPowerCut(data.EventCountAt(6), _ => CrashWriteFate.Drop, new Random(1), dataAfter);
        var i = Contents(imageAfter);
        Assert.All(i[..512], b => Assert.Equal(0xa0, b));
        Assert.All(i[512..1024], b => Assert.Equal(0xa1, b));
        Assert.All(Contents(dataAfter)[512..1024], b => Assert.Equal(0x22, b));
    }

    [Fact]
    public void SharedClock_ArmPowerCut_StopsEveryStorageOfTheMachine()
    {
        var clock = new CrashSimulationClock();
        var a = new CrashSimulationStorage(new MemoryStorage(), clock);
        var b = new CrashSimulationStorage(new MemoryStorage(), clock);
        clock.ArmPowerCut(3);
        a.Write(0, new byte[10]);
        b.Write(0, new byte[10]);
        a.Flush();
        Assert.Throws<IOException>(() => b.Write(0, new byte[10]));
        Assert.Throws<IOException>(() => a.Read(0, new byte[1]));
        Assert.Equal(2, a.EventCount);
        Assert.Equal(1, b.EventCount);
        Assert.Equal(3, clock.EventCount);
    }
}
