using Qcow2.Property.Tests.Commands;
using Qcow2.Property.Tests.Harness;
using Qcow2.Property.Tests.Model;
using Qcow2.Property.Tests.Qcow2;
using Qcow2.Property.Tests.Runner;
using Qcow2.Tests.Shared;
using Qcow2.Volume;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;
using Xunit.Abstractions;

namespace Qcow2.Property.Tests;

/// <summary>
/// Power cuts at every point of random workloads (or a seeded sample of the points): the image
/// reopens, check finds no corruption (leaks are allowed and a leak repair removes them), and every
/// byte written before the last completed flush, and not touched since, reads back intact.
/// </summary>
public class CrashConsistencyTests(ITestOutputHelper output)
{
    private readonly PropertySettings _settings = PropertySettings.FromEnvironment();
    private static long _dirtyRepairs;
    private long _dataFileCutsAtRisk;

    /// <summary>The state at a completed flush: the model then, and where in the command list and the event record it was.</summary>
    private sealed record Durable(ReferenceDisk Model, int CommandIndex, int EventCount)
    {
        public PossibleContent Content => field ??= PossibleContent.Of(Model);
    }

    /// <summary>What the whole disk may read as in one state of the model (uncertain bytes: before, zero or backing).</summary>
    private sealed class PossibleContent
    {
        private readonly byte[] _values;
        private readonly byte[]? _below;
        private readonly bool[]? _uncertain;

        private PossibleContent(byte[] values, byte[]? below, bool[]? uncertain)
        {
            _values = values;
            _below = below;
            _uncertain = uncertain;
        }

        public static PossibleContent Of(ReferenceDisk model)
        {
            var values = new byte[model.Size];
            if (!model.HasUncertainBytes)
            {
                model.ReadExpected(0, values);
                return new PossibleContent(values, null, null);
            }
            var below = new byte[model.Size];
            var uncertain = new bool[model.Size];
            model.ReadPossible(0, values, below, uncertain);
            return new PossibleContent(values, below, uncertain);
        }

        public bool Allows(long offset, byte value) =>
            _values[offset] == value || (_uncertain is not null && _uncertain[offset] && (value == 0 || _below![offset] == value));
    }

    /// <summary>
    /// The bytes commands after the last completed flush touched (those started before the cut): each
    /// must read as it was at the flush or as one of those commands left it, never as anything else
    /// (stale data of a reused cluster, or data-file contents an L2 entry reached before them).
    /// </summary>
    private sealed record TouchedBytes((long Offset, long Length)[] Ranges, IReadOnlyList<PossibleContent> States)
    {
        public bool Contains(long offset) => Ranges.Any(r => offset >= r.Offset && offset - r.Offset < r.Length);

        public string? Check(ReadOnlySpan<byte> observed)
        {
            foreach (var (start, length) in Ranges)
            {
                for (var o = start; o < start + length && o < observed.Length; o++)
                {
                    var value = observed[(int)o];
                    var allowed = false;
                    foreach (var state in States)
                    {
                        if (!state.Allows(o, value)) continue;
                        allowed = true;
                        break;
                    }
                    if (!allowed)
                        return $"guest byte 0x{o:x} (written after the last flush) reads 0x{value:x2}, which neither the flushed state nor any later command left there";
                }
            }
            return null;
        }
    }

    [Fact]
    public void Qcow2Image_PowerCutAtAnyPoint_ReopensWithoutCorruptionAndKeepsFlushedData()
    {
        var options = new GeometryOptions
        {
            MaxSize = Math.Min(_settings.MaxSize, 1 << 20),
            MaxClusterBits = 16,
        };
        var workloads = 0;
        long cutsTried = 0;
        _settings.Check(nameof(Qcow2Image_PowerCutAtAnyPoint_ReopensWithoutCorruptionAndKeepsFlushedData),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands),
            script =>
            {
                workloads++;
                cutsTried += RunWorkloadAndCut(script, writeAfterRepair: false);
            },
            ciCases: 40, output);
        output.WriteLine($"{workloads} workloads (shrink steps included), {cutsTried} power cuts checked, {Interlocked.Read(ref _dirtyRepairs)} dirty lazy-refcount images repaired on open");
    }

    [Fact]
    public void Qcow2Image_PowerCutWithTinyMetadataCaches_ReopensWithoutCorruptionAndKeepsFlushedData()
    {
        // Two-entry caches write metadata back all the time: many more orderings to cut between.
        var options = new GeometryOptions
        {
            MaxSize = Math.Min(_settings.MaxSize, 1 << 20),
            MaxClusterBits = 16,
        };
        _settings.Check(nameof(Qcow2Image_PowerCutWithTinyMetadataCaches_ReopensWithoutCorruptionAndKeepsFlushedData),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands),
            script => RunWorkloadAndCut(script, writeAfterRepair: false, tinyCaches: true),
            ciCases: 20, output);
    }

    [Fact]
    public void Qcow2Image_PowerCutWithExternalDataFile_ReopensWithoutCorruptionAndKeepsFlushedDataOfBothFiles()
    {
        // Every geometry has a data file (raw or not, extended L2 from 16 KiB clusters, over a backing
        // chain or not); one cut covers the image file and the data file. About half the workloads
        // (chosen by the geometry, which shrinking keeps) run with two-entry metadata caches, whose
        // evictions write L2 slices back between data writes.
        var options = new GeometryOptions
        {
            MaxSize = Math.Min(_settings.MaxSize, 1 << 20),
            MaxClusterBits = 16,
            RequireDataFile = true,
        };
        var workloads = 0;
        long cutsTried = 0;
        _settings.Check(nameof(Qcow2Image_PowerCutWithExternalDataFile_ReopensWithoutCorruptionAndKeepsFlushedDataOfBothFiles),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands),
            script =>
            {
                workloads++;
                cutsTried += RunWorkloadAndCut(script, writeAfterRepair: false, tinyCaches: (script.Geometry.Size >> script.Geometry.ClusterBits) % 2 == 1);
            },
            ciCases: 24, output);
        output.WriteLine($"{workloads} workloads with a data file (shrink steps included), {cutsTried} power cuts checked, "
            + $"{Interlocked.Read(ref _dataFileCutsAtRisk)} of them with unflushed data file writes");
    }

    [Fact]
    public void Qcow2Image_AfterPowerCutAndLeakRepair_NewWritesLeaveTheImageClean()
    {
        var options = new GeometryOptions
        {
            MaxSize = Math.Min(_settings.MaxSize, 1 << 20),
            MaxClusterBits = 16,
            AllowBacking = false,
            AllowReopen = false,
        };
        _settings.Check(nameof(Qcow2Image_AfterPowerCutAndLeakRepair_NewWritesLeaveTheImageClean),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands),
            script => RunWorkloadAndCut(script, writeAfterRepair: true),
            ciCases: 10, output);
    }

    [Fact]
    public void Qcow2Image_TornTailLeavesRefcountPastEndOfFile_WriteAfterLeakRepairLeavesNoLeak()
    {
        // Found by the crash property: a power cut tears the last sector of the cluster written at
        // the end of the file (it now ends at 0x4fe00) while the refcount block, which already counts
        // cluster 5 (0x50000), lands. Both checkers stop at the end of the file, so cluster 5's
        // refcount is invisible to them; once a write grows the file over it, it shows as a leak.
        // QEMU 7.2 does exactly that (qemu-img check -r leaks, qemu-io write, qemu-img check:
        // "Leaked cluster 5"). Our leak repair clears refcounts past the end of the file of an
        // otherwise consistent image, so after it the write leaves the image clean.
        var medium = new MemoryStorage();
        Qcow2Creator.Create(medium, new Qcow2CreateOptions { Size = 0x50000 });
        var recorder = new CrashSimulationStorage(medium);
        using (var image = Qcow2Image.Open(recorder)) image.WriteZeroes(0, 1);
        var crashed = new MemoryStorage();
        var events = recorder.Events;
        var writeAtEnd = events.Select((e, i) => (e, i)).First(x => x.e.Kind == StorageEventKind.Write && x.e.Offset + x.e.Data.Length == 0x50000).i;
        var firstFlush = events.Select((e, i) => (e, i)).First(x => x.e.Kind == StorageEventKind.Flush).i;
        // Before the first flush: the write ending at 0x50000 loses its last sector, writes past it
        // are lost, the others (the refcount block among them) land.
        recorder.RestoreAfterPowerCut(firstFlush, i =>
            i == writeAtEnd ? CrashWriteFate.Tear : events[i].Offset >= 0x50000 ? CrashWriteFate.Drop : CrashWriteFate.Keep,
            new TornTailRandom(), crashed);
        Assert.Equal(0x4fe00, crashed.Length);
        var before = Qcow2Checker.Check(crashed, CheckOptions.ReadOnly);
        Assert.Equal(0, before.Corruptions);
        Qcow2Checker.Check(crashed, new CheckOptions { Repair = RepairMode.Leaks });
        GeometryMapping.CheckClean(crashed, "after the leak repair");

        using (var image = Qcow2Image.Open(crashed))
        {
            image.Write(0, new byte[] { 1, 2, 3 });
            image.Flush();
        }
        GeometryMapping.CheckClean(crashed, "after a write to the repaired image");
    }

    /// <summary>Keeps every sector of a torn write but the last.</summary>
    private sealed class TornTailRandom : Random
    {
        private int _calls;

        public override int Next(int maxValue) => ++_calls < 128 ? 0 : 1;
    }

    [Fact]
    public void PowerCutHarness_StorageThatIgnoresFlushes_IsCaughtLosingFlushedData()
    {
        // The harness must be able to fail: under a storage that swallows flushes nothing is ever
        // durable, so a cut after the guest's flush must lose the flushed write.
        var g = new ImageGeometry { ClusterBits = 12, Size = 64 << 10 };
        var script = new TestScript(g, [new WriteCommand(0x1000, 0x3000, DataPattern.Fill(0x5a)), new FlushCommand()]);
        var e = Assert.Throws<ModelMismatchException>(() => RunWorkloadAndCut(script, writeAfterRepair: false, ignoreFlushes: true));
        output.WriteLine(e.Message);
        Assert.Contains("flushed data lost", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PowerCutHarness_DataFileThatIgnoresFlushes_IsCaughtLosingFlushedData(bool dataFileRaw)
    {
        // The data file is on the same machine but recorded apart: if its flushes are swallowed
        // (the image file's still work), the guest's flush leaves the data at risk while the L2 entry
        // pointing at it is durable, and a cut after the flush must lose the write.
        var g = new ImageGeometry { ClusterBits = 12, Size = 64 << 10, ExternalDataFile = true, DataFileRaw = dataFileRaw };
        var script = new TestScript(g, [new WriteCommand(0x1000, 0x3000, DataPattern.Fill(0x5a)), new FlushCommand()]);
        var e = Assert.Throws<ModelMismatchException>(() => RunWorkloadAndCut(script, writeAfterRepair: false, ignoreDataFileFlushes: true));
        output.WriteLine(e.Message);
        Assert.Contains("flushed data lost", e.Message);
        Assert.Contains("on the data file", e.Message);
        // With honest flushes the same workload passes every cut.
        Assert.True(RunWorkloadAndCut(script, writeAfterRepair: false) > 0);
    }

    /// <summary>
    /// The machine a workload runs on: the image file and, when the geometry has one, its external
    /// data file, each on a recording storage, both on one clock so that one cut covers both.
    /// </summary>
    private sealed record Machine(CrashSimulationClock Clock, CrashSimulationStorage Image, CrashSimulationStorage? DataFile, string? DataFileName, TempDir Dir);

    /// <summary>Runs the workload once over recording storages, then checks a power cut at each chosen point.</summary>
    private long RunWorkloadAndCut(TestScript script, bool writeAfterRepair, bool ignoreFlushes = false, bool tinyCaches = false, bool ignoreDataFileFlushes = false)
    {
        var g = script.Geometry;
        // A backing chain lives in files (made by qemu-img/qemu-io); the image under test in memory
        // names its backing file by absolute path.
        using var dir = new TempDir();
        string? backing = null;
        if (g.Backing.Count > 0)
        {
            Qcow2FileHarness.CreateBackingChain(dir, g);
            backing = dir.File(Qcow2FileHarness.LayerName(g, 0));
        }
        var open = (tinyCaches ? Qcow2MemoryHarness.TinyCaches : Qcow2OpenOptions.Default) with { ExternalFilePolicy = ExternalFilePolicy.AllowUnder(dir.Path) };
        var medium = new MemoryStorage("crash-base");
        // The data file lives in memory too, handed to the image through DataFileStorage. The image
        // names it by an absolute path in the workload's directory, where the qemu-img checks of
        // sampled cuts write it.
        var dataMedium = g.ExternalDataFile ? new MemoryStorage("crash-data") : null;
        var dataName = g.ExternalDataFile ? dir.File("top.data") : null;
        Qcow2Creator.Create(medium, GeometryMapping.CreateOptions(g, backing, backing is null ? null : g.Backing[0].Format, dataName), dataMedium);
        var clock = new CrashSimulationClock();
        var recorder = new CrashSimulationStorage(medium, clock);
        var dataRecorder = dataMedium is null ? null : new CrashSimulationStorage(dataMedium, clock);
        var machine = new Machine(clock, recorder, dataRecorder, dataName, dir);

        var model = ModelRunner.BuildModel(g);
        var durable = new List<Durable> { new(model.Clone(), -1, 0) };
        var started = new int[script.Commands.Count];
        var after = new PossibleContent?[script.Commands.Count];
        IStorage underImage = ignoreFlushes ? new FlushSwallowingStorage(recorder) : recorder;
        IStorage? underData = dataRecorder is null ? null : ignoreFlushes || ignoreDataFileFlushes ? new FlushSwallowingStorage(dataRecorder) : dataRecorder;
        var liveOpen = open with { DataFileStorage = underData };
        var image = Qcow2Image.Open(underImage, liveOpen);
        try
        {
            for (var i = 0; i < script.Commands.Count; i++)
            {
                var command = script.Commands[i];
                started[i] = clock.EventCount;
                if (command is ReopenCommand)
                {
                    // Closing flushes: a durable point, then the image is opened again on the same media.
                    image.Dispose();
                    durable.Add(new Durable(model.Clone(), i, clock.EventCount));
                    image = Qcow2Image.Open(underImage, liveOpen);
                    continue;
                }
                command.Apply(model);
                command.Execute(new Qcow2GuestDisk(image));
                if (command.Mutates && command.Range is not null) after[i] = PossibleContent.Of(model);
                if (command is FlushCommand) durable.Add(new Durable(model.Clone(), i, clock.EventCount));
            }
        }
        finally
        {
            image.Dispose();
        }
        // Closing flushes too.
        durable.Add(new Durable(model.Clone(), script.Commands.Count, clock.EventCount));

        var total = clock.EventCount;
        var random = new Random(unchecked((int)_settings.Seed) ^ total ^ script.Commands.Count);
        var cuts = ChooseCutPoints(total, _settings.CutPoints, random);
        var qemuChecks = new HashSet<int> { total, cuts[random.Next(cuts.Count)] };
        var dataEvents = dataRecorder?.Events;
        foreach (var cut in cuts)
        {
            if (dataRecorder is not null)
            {
                var local = dataRecorder.EventCountAt(cut);
                var lastFlush = dataRecorder.LastFlushBefore(local);
                if (Enumerable.Range(lastFlush + 1, local - lastFlush - 1).Any(e => dataEvents![e].Kind == StorageEventKind.Write))
                    Interlocked.Increment(ref _dataFileCutsAtRisk);
            }
            var state = durable.Last(d => d.EventCount <= cut);
            var since = Enumerable.Range(0, script.Commands.Count)
                .Where(i => i > state.CommandIndex && started[i] < cut && after[i] is not null)
                .ToArray();
            var touched = new TouchedBytes(
                since.Select(i => script.Commands[i].Range!.Value).ToArray(),
                [state.Content, .. since.Select(i => after[i]!)]);
            var fateSeed = random.Next();
            try
            {
                CheckCut(g, open, machine, cut, fateSeed, state.Model.Clone(), touched, qemuChecks.Contains(cut), writeAfterRepair);
            }
            catch (Exception e)
            {
                throw new ModelMismatchException(
                    $"power cut after {cut} of {total} storage events{(dataRecorder is null ? "" : $" ({dataRecorder.EventCountAt(cut)} of them on the data file)")}" +
                    $"{(tinyCaches ? ", two-entry metadata caches" : "")} (fate seed {fateSeed}, cut mode {cut % 4}; durable state from " +
                    (state.CommandIndex < 0 ? "the start" : state.CommandIndex >= script.Commands.Count ? "the close" : $"the flush at #{state.CommandIndex + 1}") +
                    $"): {e.Message}", e);
            }
        }
        return cuts.Count;
    }

    private static List<int> ChooseCutPoints(int total, int limit, Random random)
    {
        if (total + 1 <= limit) return Enumerable.Range(0, total + 1).ToList();
        var set = new SortedSet<int> { 0, total };
        while (set.Count < limit) set.Add(random.Next(total + 1));
        return set.ToList();
    }

    /// <summary>
    /// One storage of the machine as the power cut at clock time <paramref name="cut"/> left it. Four
    /// regimes, so that every point sees all-dropped, all-kept, mixed and heavily torn writes somewhere;
    /// both files of a machine are in the same regime, with their own fates.
    /// </summary>
    private static MemoryStorage Restore(CrashSimulationStorage recorder, int cut, int fateSeed, string name)
    {
        var crashed = new MemoryStorage(name);
        var local = recorder.EventCountAt(cut);
        switch (cut % 4)
        {
            case 0: recorder.RestoreAfterPowerCut(local, fateSeed, crashed); break;
            case 1: recorder.RestoreAfterPowerCut(local, _ => CrashWriteFate.Drop, new Random(fateSeed), crashed); break;
            case 2: recorder.RestoreAfterPowerCut(local, _ => CrashWriteFate.Keep, new Random(fateSeed), crashed); break;
            default: recorder.RestoreAfterPowerCut(local, fateSeed, crashed, dropWeight: 1, keepWeight: 1, tearWeight: 4); break;
        }
        return crashed;
    }

    private static void CheckCut(ImageGeometry g, Qcow2OpenOptions open, Machine machine, int cut, int fateSeed, ReferenceDisk durable, TouchedBytes touched, bool runQemu, bool writeAfterRepair)
    {
        var crashed = Restore(machine.Image, cut, fateSeed, "after-power-cut");
        var crashedData = machine.DataFile is null ? null : Restore(machine.DataFile, cut, fateSeed ^ 0x2d5a_93c1, "data-after-power-cut");
        open = open with { DataFileStorage = crashedData };

        var first = Qcow2Checker.Check(crashed, CheckOptions.ReadOnly);
        var dirty = IsDirty(crashed);
        if (dirty && !g.LazyRefcounts) throw new InvalidOperationException("the dirty bit is set on an image without lazy refcounts");
        if (dirty)
        {
            // Lazy refcounts: stale refcounts are allowed while the dirty bit is set; opening the
            // image read-write must repair them (as QEMU does) and leave a clean image.
            using (Qcow2Image.Open(crashed, open))
            {
            }
            if (IsDirty(crashed)) throw new InvalidOperationException("the dirty bit is still set after a read-write open and close");
            Interlocked.Increment(ref _dirtyRepairs);
            first = GeometryMapping.CheckClean(crashed, "after the repair on a read-write open of a dirty image");
        }
        else if (first.Corruptions > 0 || first.CheckErrors > 0 || first.FailureMessage is not null)
        {
            throw new InvalidOperationException(
                $"check found {first.Corruptions} corruptions, {first.CheckErrors} errors {first.FailureMessage}: "
                + string.Join("; ", first.Findings.Take(10)));
        }

        using (var image = Qcow2Image.Open(crashed, open with { ReadOnly = true }))
        {
            var data = new byte[image.Size];
            image.Read(0, data);
            var mismatch = durable.Verify(0, data, touched.Contains);
            if (mismatch is not null) throw new InvalidOperationException("flushed data lost: " + mismatch);
            mismatch = touched.Check(data);
            if (mismatch is not null) throw new InvalidOperationException("garbage after the cut: " + mismatch);
        }
        if (crashedData is not null && g.DataFileRaw)
        {
            // data_file_raw: the data file alone is the guest disk, flushed data included.
            var raw = new byte[g.Size];
            crashedData.Read(0, raw);
            var mismatch = durable.Verify(0, raw, touched.Contains);
            if (mismatch is not null) throw new InvalidOperationException("flushed data lost from the raw data file: " + mismatch);
            mismatch = touched.Check(raw);
            if (mismatch is not null) throw new InvalidOperationException("garbage in the raw data file after the cut: " + mismatch);
        }

        if (runQemu) QemuCheck(crashed, crashedData, machine, durable, touched);

        // Refcounts a torn tail left past the end of the file are no visible leak, but the leak
        // repair clears them too: run it before writing again even when nothing leaked in view.
        if (first.Leaks > 0 || writeAfterRepair)
        {
            var repair = Qcow2Checker.Check(crashed, new CheckOptions { Repair = RepairMode.Leaks });
            if (repair.LeaksFixed < first.Leaks)
                throw new InvalidOperationException($"leak repair fixed {repair.LeaksFixed} of {first.Leaks} leaks");
            GeometryMapping.CheckClean(crashed, "after the leak repair");
        }

        if (!writeAfterRepair) return;
        // The repaired image takes writes again and stays clean: the leak repair also cleared
        // refcounts a torn tail left past the end of the file (QEMU 7.2 leaves those, and growing
        // the file then shows them as leaks).
        using (var image = Qcow2Image.Open(crashed, open))
        {
            image.Write(0, new byte[] { 1, 2, 3 });
            image.Flush();
        }
        GeometryMapping.CheckClean(crashed, "after writing to the reopened image");
    }

    /// <summary>The header's dirty bit (incompatible feature bit 0, byte 79 of a v3 header).</summary>
    private static bool IsDirty(IStorage storage)
    {
        var header = new byte[104];
        if (storage.Read(0, header) < header.Length || header[7] < 3) return false;
        return (header[79] & 1) != 0;
    }

    /// <summary>
    /// <c>qemu-img check</c> on the crashed image (before any leak repair). With a data file, the crashed
    /// data file is written where the image names it, and <c>qemu-img convert</c> must read the flushed data too.
    /// </summary>
    private static void QemuCheck(MemoryStorage crashed, MemoryStorage? crashedData, Machine machine, ReferenceDisk durable, TouchedBytes touched)
    {
        var path = machine.Dir.File("crashed.qcow2");
        File.WriteAllBytes(path, crashed.ToArray());
        if (crashedData is not null) File.WriteAllBytes(machine.DataFileName!, crashedData.ToArray());
        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "check", "-f", "qcow2", path);
        // 0: clean, 3: leaks only. 2 (corruption) or anything else fails.
        if (code is not (0 or 3))
            throw new InvalidOperationException($"qemu-img check exited {code}:{Environment.NewLine}{stdout}{stderr}");
        if (crashedData is null) return;
        var raw = machine.Dir.File("crashed.raw");
        QemuTools.Img("convert", "-f", "qcow2", "-O", "raw", path, raw);
        var read = File.ReadAllBytes(raw);
        if (read.Length != durable.Size) throw new InvalidOperationException($"qemu-img convert wrote {read.Length} bytes, the disk has {durable.Size}");
        var mismatch = durable.Verify(0, read, touched.Contains) ?? touched.Check(read);
        if (mismatch is not null) throw new InvalidOperationException("qemu-img convert: " + mismatch);
    }
}
