using Qcow2.CrashWriter;
using Qcow2.Property.Tests.Harness;
using Qcow2.Property.Tests.Qcow2;
using Qcow2.Property.Tests.Runner;
using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;
using Xunit.Abstractions;

namespace Qcow2.Property.Tests;

/// <summary>
/// Power cuts during concurrent workloads: 2 to 4 tasks write, zero, discard and flush through one
/// image on crash-simulated storage (with or without an external data file, on one clock). At each
/// sampled cut the image reopens, check finds no corruption, and every range whose last write was
/// acknowledged before a flush that returned began (and that no later or concurrent operation that
/// may have run touched) reads back intact; nothing reads as data no operation wrote.
/// </summary>
/// <remarks>
/// Operations are ordered by one global sequence (a number taken just before each call and one just
/// after it returns) and placed on the storage clock by its event count read before the call (no
/// event of the operation can come earlier) and after it returns (every event of a flush has come by
/// then). Both bounds err on the safe side: an operation counts as possibly run at a cut if it might
/// have been, and a flush counts as completed only if it surely was. The seed fixes each round's
/// geometry and workloads; the interleaving is the scheduler's, so a failure prints the history.
/// </remarks>
public class ConcurrentCrashTests(ITestOutputHelper output)
{
    private readonly PropertySettings _settings = PropertySettings.FromEnvironment();

    /// <summary>One round: the image's geometry and the concurrent workload.</summary>
    private sealed record Round(int Seed, int ClusterBits, bool ExtendedL2, int RefcountBits, bool LazyRefcounts, bool TinyCaches,
        bool DataFile, bool DataFileRaw, long Size, int Threads, int OpsPerThread)
    {
        public int ClusterSize => 1 << ClusterBits;

        public override string ToString() =>
            $"workload seed {Seed}, {Threads} threads x {OpsPerThread} operations, size 0x{Size:x}, cluster_size={ClusterSize}, extended_l2={ExtendedL2}, "
            + $"refcount_bits={RefcountBits}, lazy_refcounts={LazyRefcounts}{(TinyCaches ? ", two-entry metadata caches" : "")}"
            + (DataFile ? $", data_file{(DataFileRaw ? ", data_file_raw" : "")}" : "");
    }

    /// <summary>An operation as it ran: its place on the global sequence and on the storage clock.</summary>
    private sealed record Ran(int Thread, int Index, WorkloadOp Op, long StartSeq, long AckSeq, int StartClock, int EndClock);

    private sealed class Totals
    {
        public long Cuts;
        public long CheckedBytes;
        public long DirtyRepairs;
        public long OverlappingPairs;
        public long Operations;
    }

    [Fact]
    public void Qcow2Image_PowerCutDuringConcurrentWritersAndFlushes_ReopensWithoutCorruptionAndKeepsDataAcknowledgedBeforeACompletedFlush()
    {
        var rounds = _settings.CasesOr(24);
        var random = new Random(unchecked((int)_settings.Seed) ^ 0x3c0c_2026);
        output.WriteLine($"seed 0x{_settings.Seed:x}, {rounds} rounds, at most {_settings.CutPoints} cuts each");
        var totals = new Totals();
        for (var i = 0; i < rounds; i++)
        {
            var round = DrawRound(random, i);
            RunRound(round, totals, ignoreFlushes: false);
        }
        output.WriteLine($"{totals.Operations} operations, {totals.OverlappingPairs} pairs of operations of different threads overlapping in time, "
            + $"{totals.Cuts} power cuts checked, {totals.CheckedBytes} bytes of durable writes compared, {totals.DirtyRepairs} dirty lazy-refcount images repaired on open");
        Assert.True(totals.CheckedBytes > 0, "no durable byte was ever compared");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PowerCutHarness_ConcurrentWritersOnStorageThatIgnoresFlushes_IsCaughtLosingFlushedData(bool dataFile)
    {
        // The concurrent harness must be able to fail: when flushes reach no medium, a cut that drops
        // every unflushed write after the close loses the last write of each thread's own region.
        var round = new Round(Seed: 7, ClusterBits: 12, ExtendedL2: false, RefcountBits: 16, LazyRefcounts: false, TinyCaches: false,
            DataFile: dataFile, DataFileRaw: false, Size: 64 << 12, Threads: 2, OpsPerThread: 12);
        var e = Assert.Throws<InvalidOperationException>(() => RunRound(round, new Totals(), ignoreFlushes: true));
        output.WriteLine(e.Message);
        Assert.Contains("flushed data lost", e.Message);
        // With honest flushes the same workload passes every cut.
        RunRound(round, new Totals(), ignoreFlushes: false);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Qcow2Image_PartialZeroOfCompressedClusterRacingAWriteToTheSameCluster_KeepsTheWrite(bool discard)
    {
        // Found by the concurrent power-cut property (workload seed 1304924719, 16 KiB clusters with
        // extended L2): zeroing or discarding part of a compressed cluster first made it a plain
        // cluster by reading the whole cluster and writing it back, outside the metadata lock and
        // without reserving the cluster. A write to other bytes of that cluster landing in between
        // was overwritten by the stale copy: acknowledged, flushed, and gone. Here the zeroing
        // thread is held inside its read of the compressed data while the write runs.
        const int cluster = 16 << 10;
        var medium = new MemoryStorage("partial-zero-race");
        Qcow2Creator.Create(medium, new Qcow2CreateOptions { Size = 4 * cluster, ClusterSize = cluster, ExtendedL2 = true });
        var gate = new GateStorage(medium);
        var a = new WorkloadOp(WorkloadOpKind.WriteCompressed, 0, cluster, 0x0a);
        var b = new WorkloadOp(WorkloadOpKind.Write, 0x2000, 0x200, 0x0b);
        using (var image = Qcow2Image.Open(gate))
        {
            image.WriteCompressed(0, a.Data());
            image.Flush();
            var entry = ReadL2Entry(medium, guestCluster: 0, extendedL2: true);
            Assert.True(entry.IsCompressed, "the first cluster must be compressed for this test");
            var descriptor = CompressedDescriptor.Decode(entry.Raw, clusterBits: 14);
            // Subcluster 0 (512 bytes) of the compressed cluster, on a thread of its own.
            var zeroing = new Thread(() =>
            {
                if (discard) image.Discard(0, 0x200);
                else image.WriteZeroes(0, 0x200);
            });
            var hold = gate.Hold(zeroing.ManagedThreadId, write: false, descriptor.HostOffset, descriptor.HostLength);
            zeroing.Start();
            Assert.True(hold.Reached.Wait(TimeSpan.FromSeconds(30)), "the zeroing thread never read the compressed data");
            image.Write(b.Offset, b.Data());
            hold.Release.Set();
            Assert.True(zeroing.Join(TimeSpan.FromSeconds(30)), "the zeroing thread did not finish");
            image.Flush();

            var data = new byte[cluster];
            image.Read(0, data);
            Assert.True(data.AsSpan(0, 0x200).IndexOfAnyExcept((byte)0) < 0, "the zeroed/discarded subcluster must read as zeros (no backing file)");
            Assert.Equal(b.Data(), data.AsSpan((int)b.Offset, b.Length).ToArray());
            Assert.Equal(a.Data().AsSpan(0x200, 0x1e00).ToArray(), data.AsSpan(0x200, 0x1e00).ToArray());
            Assert.Equal(a.Data().AsSpan(0x2200).ToArray(), data.AsSpan(0x2200).ToArray());
        }
        GeometryMapping.CheckClean(medium, "after the racing zero and write");
    }

    [Fact]
    public void Qcow2Image_WriteIntoPartlyAllocatedClusterRacingAnInPlaceWriteToTheSameSubcluster_KeepsBoth()
    {
        // Extended L2: subcluster 0 of cluster 0 is allocated, subcluster 1 is not. Writer A writes
        // [0, 0x64) in place; writer B writes [0xc8, 0x3e8), which needs subcluster 1 allocated, so it
        // rewrites subclusters 0-1 with the bytes around its own range copied from the cluster. A's
        // bytes must survive whatever the order: here A is held before its data write until B has
        // read the bytes around its range, and B is held before its own data write until A is done.
        const int cluster = 16 << 10;
        var medium = new MemoryStorage("subcluster-race");
        Qcow2Creator.Create(medium, new Qcow2CreateOptions { Size = 4 * cluster, ClusterSize = cluster, ExtendedL2 = true });
        var gate = new GateStorage(medium);
        var x = new WorkloadOp(WorkloadOpKind.Write, 0, 0x200, 0x0c);
        var a = new WorkloadOp(WorkloadOpKind.Write, 0, 0x64, 0x0a);
        var b = new WorkloadOp(WorkloadOpKind.Write, 0xc8, 0x320, 0x0b);
        using (var image = Qcow2Image.Open(gate))
        {
            image.Write(x.Offset, x.Data());
            image.Flush();
            var entry = ReadL2Entry(medium, guestCluster: 0, extendedL2: true);
            var host = entry.HostOffset;
            Assert.NotEqual(0, host);

            var writerA = new Thread(() => image.Write(a.Offset, a.Data()));
            var writerB = new Thread(() => image.Write(b.Offset, b.Data()));
            var holdA = gate.Hold(writerA.ManagedThreadId, write: true, host, 0x200);
            var holdB = gate.Hold(writerB.ManagedThreadId, write: true, host, 0x400);
            writerA.Start();
            Assert.True(holdA.Reached.Wait(TimeSpan.FromSeconds(30)), "writer A never wrote its data");
            writerB.Start();
            var bHeld = holdB.Reached.Wait(TimeSpan.FromSeconds(5));
            holdA.Release.Set();
            Assert.True(writerA.Join(TimeSpan.FromSeconds(30)), "writer A did not finish");
            holdB.Release.Set();
            Assert.True(writerB.Join(TimeSpan.FromSeconds(30)), "writer B did not finish");
            output.WriteLine($"B reached its data write while A was held: {bHeld}");

            var data = new byte[0x400];
            image.Read(0, data);
            var expected = new byte[0x400];
            x.Data().CopyTo(expected, 0);
            a.Data().CopyTo(expected, 0);
            b.Data().CopyTo(expected, (int)b.Offset);
            Assert.Equal(expected, data);
        }
        GeometryMapping.CheckClean(medium, "after the racing writes");
    }

    /// <summary>The L2 entry of a guest cluster as the file holds it (first L2 table only).</summary>
    private static L2Entry ReadL2Entry(IStorage storage, long guestCluster, bool extendedL2)
    {
        Span<byte> buffer = stackalloc byte[16];
        storage.Read(40, buffer[..8]);
        var l1 = (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(buffer);
        storage.Read(l1, buffer[..8]);
        var l2 = (long)(System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(buffer) & L1Entry.OffsetMask);
        var size = extendedL2 ? 16 : 8;
        storage.Read(l2 + guestCluster * size, buffer[..size]);
        return L2Entry.Read(buffer[..size], 0, extendedL2);
    }

    [Fact]
    public void ConcurrentHistory_LostDurableBytes_AreFoundUnlessALaterOrConcurrentOperationMayHaveTouchedThem()
    {
        var disk = new byte[0x3000];
        var w = new WorkloadOp(WorkloadOpKind.Write, 0x1000, 0x1000, 5);
        w.Data().CopyTo(disk, 0x1000);
        var write = new HistoryEntry(0, 0, w, StartSeq: 1, AckSeq: 2, MayHaveRun: true);
        var flush = new HistoryEntry(1, 0, new WorkloadOp(WorkloadOpKind.Flush, 0, 0, 0), StartSeq: 3, AckSeq: 6, MayHaveRun: true);
        List<HistoryEntry> history = [write, flush];
        Assert.Null(ConcurrentHistory.FindLostData(disk, history, durableBefore: 3));
        Assert.Null(ConcurrentHistory.FindForeignData(disk, history));

        // One byte lost: found while the write is durable...
        disk[0x1800] ^= 0xff;
        var lost = ConcurrentHistory.FindLostData(disk, history, durableBefore: 3);
        Assert.NotNull(lost);
        Assert.Contains("0x1800", lost);
        // ...but not when the flush began before the write was acknowledged (the write ran alongside it).
        Assert.Null(ConcurrentHistory.FindLostData(disk, [write with { AckSeq = 4 }, flush], durableBefore: 3));

        // Zeroes that a concurrent write-zeroes (seq 2..5, overlapping the write) may have left: not checked.
        var zero = new HistoryEntry(2, 0, new WorkloadOp(WorkloadOpKind.WriteZeroes, 0x1800, 0x100, 0), StartSeq: 2, AckSeq: 5, MayHaveRun: true);
        disk.AsSpan(0x1800, 0x100).Clear();
        Assert.Null(ConcurrentHistory.FindLostData(disk, [write, flush, zero], durableBefore: 3));
        // Nor by a later one that may have run (seq 7..8), nor by a discard.
        Assert.Null(ConcurrentHistory.FindLostData(disk, [write, flush, zero with { StartSeq = 7, AckSeq = 8 }], durableBefore: 3));
        var discard = zero with { Op = new WorkloadOp(WorkloadOpKind.Discard, 0x1800, 0x100, 0) };
        Assert.Null(ConcurrentHistory.FindLostData(disk, [write, flush, discard], durableBefore: 3));
        // But a later one that did not run, or one that finished before the write began, explains nothing.
        Assert.NotNull(ConcurrentHistory.FindLostData(disk, [write, flush, zero with { StartSeq = 7, AckSeq = 8, MayHaveRun = false }], durableBefore: 3));
        var before = zero with { StartSeq = -2, AckSeq = -1 };
        Assert.NotNull(ConcurrentHistory.FindLostData(disk, [write with { StartSeq = 1 }, flush, before], durableBefore: 3));
        // A durable write-zeroes is checked like a write, and a write that finished before it is overwritten.
        var durableZero = zero with { StartSeq = 7, AckSeq = 8 };
        Assert.Null(ConcurrentHistory.FindLostData(disk, [write, durableZero, flush with { StartSeq = 9 }], durableBefore: 9));
        disk[0x1810] = 1;
        Assert.Contains("0x1810", ConcurrentHistory.FindLostData(disk, [write, durableZero, flush with { StartSeq = 9 }], durableBefore: 9));
        disk[0x1810] = 0;

        // Foreign bytes: the write's own bytes outside its range, or any byte of a write that did not run.
        disk[0x2000] = w.ByteAt(0x1fff);
        if (disk[0x2000] == 0) disk[0x2000] = 1;
        Assert.Contains("0x2000", ConcurrentHistory.FindForeignData(disk, history));
        disk[0x2000] = 0;
        Assert.Null(ConcurrentHistory.FindForeignData(disk, history));
        Assert.Contains("0x1000", ConcurrentHistory.FindForeignData(disk, [write with { MayHaveRun = false }, flush]));
    }

    private Round DrawRound(Random random, int index)
    {
        var clusterBits = new[] { 9, 12, 14, 16 }[index % 4];
        var clusterSize = 1 << clusterBits;
        var size = Math.Max(16L * clusterSize, Math.Min(Math.Min(_settings.MaxSize, 1 << 20), 48L * clusterSize));
        var dataFile = random.Next(3) == 0;
        return new Round(
            Seed: random.Next(),
            ClusterBits: clusterBits,
            ExtendedL2: clusterBits >= 14 && random.Next(2) == 0,
            RefcountBits: 1 << random.Next(0, 7),
            LazyRefcounts: random.Next(4) == 0,
            TinyCaches: random.Next(2) == 0,
            DataFile: dataFile,
            DataFileRaw: dataFile && random.Next(2) == 0,
            Size: size,
            Threads: random.Next(2, 5),
            OpsPerThread: Math.Max(4, random.Next(_settings.MaxCommands / 3, _settings.MaxCommands / 2 + 1)));
    }

    /// <summary>Runs the round's workload once over recording storages, then checks the sampled cuts.</summary>
    private void RunRound(Round round, Totals totals, bool ignoreFlushes)
    {
        using var dir = new TempDir();
        var medium = new MemoryStorage("concurrent-crash");
        var dataMedium = round.DataFile ? new MemoryStorage("concurrent-crash-data") : null;
        var dataName = round.DataFile ? dir.File("top.data") : null;
        Qcow2Creator.Create(medium, new Qcow2CreateOptions
        {
            Size = round.Size,
            ClusterSize = round.ClusterSize,
            ExtendedL2 = round.ExtendedL2,
            RefcountBits = round.RefcountBits,
            LazyRefcounts = round.LazyRefcounts,
            DataFile = dataName,
            DataFileRaw = round.DataFileRaw,
        }, dataMedium);
        var clock = new CrashSimulationClock();
        var recorder = new CrashSimulationStorage(medium, clock);
        var dataRecorder = dataMedium is null ? null : new CrashSimulationStorage(dataMedium, clock);
        var open = (round.TinyCaches ? Qcow2MemoryHarness.TinyCaches : Qcow2OpenOptions.Default) with { ExternalFilePolicy = ExternalFilePolicy.AllowUnder(dir.Path) };
        // Each storage operation gives up the processor first, so that the threads interleave (and
        // their operations overlap) even on a busy machine with two cores.
        IStorage underImage = new YieldingStorage(ignoreFlushes ? new FlushSwallowingStorage(recorder) : recorder);
        IStorage? underData = dataRecorder is null ? null : new YieldingStorage(ignoreFlushes ? new FlushSwallowingStorage(dataRecorder) : dataRecorder);

        List<Ran> ran;
        try
        {
            ran = RunWorkload(round, clock, underImage, open with { DataFileStorage = underData });
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"{round} (QCOW2_PROP_SEED=0x{_settings.Seed:x}): the workload failed: {e.Message}", e);
        }
        totals.Operations += ran.Count;
        totals.OverlappingPairs += ran.Sum(a => ran.Count(b => b.Thread > a.Thread && a.StartSeq < b.AckSeq && b.StartSeq < a.AckSeq));

        var total = clock.EventCount;
        var random = new Random(round.Seed ^ total);
        var cuts = ChooseCutPoints(total, _settings.CutPoints, random);
        var qemuCut = cuts[random.Next(cuts.Count)];
        foreach (var cut in cuts)
        {
            var entries = ran.Select(r => new HistoryEntry(r.Thread, r.Index, r.Op, r.StartSeq, r.AckSeq, MayHaveRun: r.StartClock < cut)).ToList();
            var durableBefore = ran.Where(r => r.Op.Kind == WorkloadOpKind.Flush && r.EndClock <= cut).Select(r => r.StartSeq).DefaultIfEmpty(long.MinValue).Max();
            // A medium that swallows flushes is cut in the all-dropped regime, where it must lose flushed data.
            var regime = ignoreFlushes ? 1 : cut % 4;
            var fateSeed = random.Next();
            try
            {
                totals.CheckedBytes += CheckCut(round, open, recorder, dataRecorder, dataName, dir, cut, regime, fateSeed, entries, durableBefore, cut == qemuCut, ref totals.DirtyRepairs);
                totals.Cuts++;
            }
            catch (Exception e)
            {
                throw new InvalidOperationException(
                    $"{round} (QCOW2_PROP_SEED=0x{_settings.Seed:x}): power cut after {cut} of {total} storage events "
                    + $"{(dataRecorder is null ? "" : $"({dataRecorder.EventCountAt(cut)} of them on the data file) ")}"
                    + $"(fate seed {fateSeed}, cut mode {regime}; durable: acknowledged before seq {durableBefore}): {e.Message}{Environment.NewLine}"
                    + "History (thread #index operation (seq start..ack) [clock start..end]):" + Environment.NewLine
                    + string.Join(Environment.NewLine, ran.OrderBy(r => r.StartSeq).Select(r => $"  {entries.First(x => x.Thread == r.Thread && x.Index == r.Index)} [{r.StartClock}..{r.EndClock}]")),
                    e);
            }
        }
    }

    /// <summary>
    /// Starts the round's threads together (even ones call the synchronous methods, odd ones the
    /// asynchronous ones), waits for them, checks what the live image reads, and closes the image;
    /// the close is one more flush.
    /// </summary>
    private static List<Ran> RunWorkload(Round round, CrashSimulationClock clock, IStorage storage, Qcow2OpenOptions open)
    {
        long sequence = 0;
        var ran = new List<Ran>[round.Threads];
        var image = Qcow2Image.Open(storage, open);
        try
        {
            using var go = new ManualResetEventSlim();
            var workers = new Task[round.Threads];
            for (var t = 0; t < round.Threads; t++)
            {
                var thread = t;
                var ops = Workload.ThreadOps(round.Seed, thread, round.Threads, round.Size, round.ClusterSize, compressed: !round.DataFile).Take(round.OpsPerThread).ToArray();
                var log = ran[thread] = new List<Ran>(ops.Length);
                workers[t] = Task.Factory.StartNew(async () =>
                {
                    go.Wait();
                    for (var i = 0; i < ops.Length; i++)
                    {
                        var op = ops[i];
                        var startClock = clock.EventCount;
                        var start = Interlocked.Increment(ref sequence);
                        if (thread % 2 == 0) RunSync(image, op);
                        else await RunAsync(image, op).ConfigureAwait(false);
                        var ack = Interlocked.Increment(ref sequence);
                        log.Add(new Ran(thread, i, op, start, ack, startClock, clock.EventCount));
                    }
                }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
            }
            go.Set();
            Task.WaitAll(workers);
            // Before any cut: every operation has returned, so each byte must read as the last write
            // that covered it, where that write did not overlap in time any other operation covering it.
            var live = new byte[round.Size];
            image.Read(0, live);
            var all = ran.SelectMany(l => l).Select(r => new HistoryEntry(r.Thread, r.Index, r.Op, r.StartSeq, r.AckSeq, MayHaveRun: true)).ToList();
            var lost = ConcurrentHistory.FindLostData(live, all, long.MaxValue) ?? ConcurrentHistory.FindForeignData(live, all);
            if (lost is not null)
            {
                throw new InvalidOperationException($"the live image, after every thread finished: {lost}{Environment.NewLine}History:{Environment.NewLine}"
                    + string.Join(Environment.NewLine, all.OrderBy(e => e.StartSeq).Select(e => "  " + e)));
            }
        }
        finally
        {
            var closeStart = Interlocked.Increment(ref sequence);
            var closeClock = clock.EventCount;
            image.Dispose();
            // Closing flushes: everything acknowledged before it is durable once it returns.
            var closeLog = new List<Ran> { new(-1, 0, new WorkloadOp(WorkloadOpKind.Flush, 0, 0, 0), closeStart, Interlocked.Increment(ref sequence), closeClock, clock.EventCount) };
            ran = [.. ran.Where(l => l is not null), closeLog];
        }
        return ran.SelectMany(l => l).ToList();
    }

    private static void RunSync(Qcow2Image image, WorkloadOp op)
    {
        switch (op.Kind)
        {
            case WorkloadOpKind.Write: image.Write(op.Offset, op.Data()); break;
            case WorkloadOpKind.WriteZeroes: image.WriteZeroes(op.Offset, op.Length); break;
            case WorkloadOpKind.Discard: image.Discard(op.Offset, op.Length); break;
            case WorkloadOpKind.Flush: image.Flush(); break;
            case WorkloadOpKind.WriteCompressed: image.WriteCompressed(op.Offset, op.Data()); break;
        }
    }

    private static async ValueTask RunAsync(Qcow2Image image, WorkloadOp op)
    {
        switch (op.Kind)
        {
            case WorkloadOpKind.Write: await image.WriteAsync(op.Offset, op.Data()).ConfigureAwait(false); break;
            case WorkloadOpKind.WriteZeroes: image.WriteZeroes(op.Offset, op.Length); break;
            case WorkloadOpKind.Discard: image.Discard(op.Offset, op.Length); break;
            case WorkloadOpKind.Flush: await image.FlushAsync().ConfigureAwait(false); break;
            case WorkloadOpKind.WriteCompressed: await image.WriteCompressedAsync(op.Offset, op.Data()).ConfigureAwait(false); break;
        }
    }

    private static List<int> ChooseCutPoints(int total, int limit, Random random)
    {
        if (total + 1 <= limit) return Enumerable.Range(0, total + 1).ToList();
        var set = new SortedSet<int> { 0, total };
        while (set.Count < limit) set.Add(random.Next(total + 1));
        return set.ToList();
    }

    /// <summary>One storage after the cut, in one of four regimes (random mix, all dropped, all kept, mostly torn).</summary>
    private static MemoryStorage Restore(CrashSimulationStorage recorder, int cut, int regime, int fateSeed, string name)
    {
        var crashed = new MemoryStorage(name);
        var local = recorder.EventCountAt(cut);
        switch (regime)
        {
            case 0: recorder.RestoreAfterPowerCut(local, fateSeed, crashed); break;
            case 1: recorder.RestoreAfterPowerCut(local, _ => CrashWriteFate.Drop, new Random(fateSeed), crashed); break;
            case 2: recorder.RestoreAfterPowerCut(local, _ => CrashWriteFate.Keep, new Random(fateSeed), crashed); break;
            default: recorder.RestoreAfterPowerCut(local, fateSeed, crashed, dropWeight: 1, keepWeight: 1, tearWeight: 4); break;
        }
        return crashed;
    }

    /// <summary>Checks one cut; returns the number of durable bytes compared.</summary>
    private static long CheckCut(Round round, Qcow2OpenOptions open, CrashSimulationStorage recorder, CrashSimulationStorage? dataRecorder, string? dataName, TempDir dir,
        int cut, int regime, int fateSeed, List<HistoryEntry> entries, long durableBefore, bool runQemu, ref long dirtyRepairs)
    {
        var crashed = Restore(recorder, cut, regime, fateSeed, "after-power-cut");
        var crashedData = dataRecorder is null ? null : Restore(dataRecorder, cut, regime, fateSeed ^ 0x2d5a_93c1, "data-after-power-cut");
        open = open with { DataFileStorage = crashedData };

        var first = Qcow2Checker.Check(crashed, CheckOptions.ReadOnly);
        var dirty = IsDirty(crashed);
        if (dirty && !round.LazyRefcounts) throw new InvalidOperationException("the dirty bit is set on an image without lazy refcounts");
        if (dirty)
        {
            // Lazy refcounts: a read-write open must repair the stale refcounts and leave a clean image.
            using (Qcow2Image.Open(crashed, open))
            {
            }
            if (IsDirty(crashed)) throw new InvalidOperationException("the dirty bit is still set after a read-write open and close");
            dirtyRepairs++;
            first = GeometryMapping.CheckClean(crashed, "after the repair on a read-write open of a dirty image");
        }
        else if (first.Corruptions > 0 || first.CheckErrors > 0 || first.FailureMessage is not null)
        {
            throw new InvalidOperationException(
                $"check found {first.Corruptions} corruptions, {first.CheckErrors} errors {first.FailureMessage}: " + string.Join("; ", first.Findings.Take(10)));
        }

        long checkedBytes = 0;
        var data = new byte[round.Size];
        using (var image = Qcow2Image.Open(crashed, open with { ReadOnly = true }))
            image.Read(0, data);
        Verify("", data, entries, durableBefore, ref checkedBytes);
        if (crashedData is not null && round.DataFileRaw)
        {
            // data_file_raw: the data file alone is the guest disk, durable data included.
            var raw = new byte[round.Size];
            crashedData.Read(0, raw);
            Verify("the raw data file: ", raw, entries, durableBefore, ref checkedBytes);
        }

        if (runQemu)
        {
            var path = dir.File("crashed.qcow2");
            File.WriteAllBytes(path, crashed.ToArray());
            if (crashedData is not null) File.WriteAllBytes(dataName!, crashedData.ToArray());
            var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "check", "-f", "qcow2", path);
            if (code is not (0 or 3)) throw new InvalidOperationException($"qemu-img check exited {code}:{Environment.NewLine}{stdout}{stderr}");
            var converted = dir.File("crashed.raw");
            QemuTools.Img("convert", "-f", "qcow2", "-O", "raw", path, converted);
            var read = File.ReadAllBytes(converted);
            if (read.LongLength != round.Size) throw new InvalidOperationException($"qemu-img convert wrote {read.Length} bytes, the disk has {round.Size}");
            Verify("qemu-img convert: ", read, entries, durableBefore, ref checkedBytes);
        }

        if (first.Leaks > 0)
        {
            var repair = Qcow2Checker.Check(crashed, new CheckOptions { Repair = RepairMode.Leaks });
            if (repair.LeaksFixed < first.Leaks) throw new InvalidOperationException($"leak repair fixed {repair.LeaksFixed} of {first.Leaks} leaks");
            GeometryMapping.CheckClean(crashed, "after the leak repair");
        }
        return checkedBytes;
    }

    private static void Verify(string reader, byte[] data, List<HistoryEntry> entries, long durableBefore, ref long checkedBytes)
    {
        var lost = ConcurrentHistory.FindLostData(data, entries, durableBefore, ref checkedBytes);
        if (lost is not null) throw new InvalidOperationException($"{reader}flushed data lost: {lost}");
        var foreign = ConcurrentHistory.FindForeignData(data, entries);
        if (foreign is not null) throw new InvalidOperationException($"{reader}garbage after the cut: {foreign}");
    }

    /// <summary>The header's dirty bit (incompatible feature bit 0, byte 79 of a v3 header).</summary>
    private static bool IsDirty(IStorage storage)
    {
        var header = new byte[104];
        if (storage.Read(0, header) < header.Length || header[7] < 3) return false;
        return (header[79] & 1) != 0;
    }

    /// <summary>Passes everything through, yielding the processor before each write, flush and read.</summary>
    private sealed class YieldingStorage(IStorage inner) : IStorage
    {
        public long Length => inner.Length;
        public bool CanWrite => inner.CanWrite;
        public string Name => inner.Name;

        public int Read(long offset, Span<byte> destination)
        {
            Thread.Yield();
            return inner.Read(offset, destination);
        }

        public ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
        {
            Thread.Yield();
            return inner.ReadAsync(offset, destination, cancellationToken);
        }

        public void Write(long offset, ReadOnlySpan<byte> source)
        {
            Thread.Yield();
            inner.Write(offset, source);
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            Thread.Yield();
            return inner.WriteAsync(offset, source, cancellationToken);
        }

        public void Flush()
        {
            Thread.Yield();
            inner.Flush();
        }

        public ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            Thread.Yield();
            return inner.FlushAsync(cancellationToken);
        }

        public void SetLength(long length) => inner.SetLength(length);

        public void Dispose()
        {
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
