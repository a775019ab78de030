using System.Diagnostics;
using System.Globalization;
using Qcow2.CrashWriter;
using Qcow2.Property.Tests.Harness;
using Qcow2.Property.Tests.Model;
using Qcow2.Property.Tests.Runner;
using Qcow2.Tests.Shared;
using Qcow2.Volume;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;
using Xunit.Abstractions;

namespace Qcow2.Property.Tests;

/// <summary>Where the killed writer's image keeps its guest data.</summary>
public enum SigkillDataFile
{
    /// <summary>In the image file.</summary>
    None,

    /// <summary>In an external data file (<c>data_file</c>), not raw.</summary>
    External,

    /// <summary>In an external data file with <c>data_file_raw=on</c>: the data file alone is the guest disk.</summary>
    ExternalRaw,
}

/// <summary>
/// A real process writing to an image is killed with SIGKILL mid-workload: qemu-img check finds no
/// corruption (leaks are allowed), and what the writer reported flushed reads back through
/// <c>qemu-img convert</c> and our reader (and, with <c>data_file_raw</c>, straight from the data
/// file). The writer runs one thread, or several threads writing disjoint and overlapping ranges
/// through one image and flushing at will.
/// </summary>
public class SigkillTests(ITestOutputHelper output)
{
    private readonly PropertySettings _settings = PropertySettings.FromEnvironment();
    private const long Size = 4 << 20;
    private const int ClusterSize = 4096;
    private const int Threads = 4;

    [Theory]
    [InlineData(SigkillDataFile.None, 3)]
    [InlineData(SigkillDataFile.External, 2)]
    [InlineData(SigkillDataFile.ExternalRaw, 2)]
    public void WriterProcess_KilledWithSigkill_LeavesNoCorruptionAndKeepsFlushedData(SigkillDataFile dataFile, int ciRounds)
    {
        var rounds = Rounds(ciRounds);
        for (var round = 0; round < rounds; round++)
        {
            var seed = Seed(1000 + (int)dataFile * 100 + round);
            using var dir = new TempDir();
            var (path, dataPath) = CreateImage(dir, dataFile);

            var lines = RunAndKill(path, seed, dataFile != SigkillDataFile.None, threads: 0, enough: count => count >= 3 + round % 4 * 2);
            var flushed = lines.Where(l => l.StartsWith("flushed ", StringComparison.Ordinal))
                .Select(l => int.Parse(l.AsSpan(8), CultureInfo.InvariantCulture)).DefaultIfEmpty(0).Max();
            output.WriteLine($"{dataFile} round {round}: seed {seed}, killed after {flushed} durable operations");

            QemuCheck(path, seed);

            // What was flushed must be there, except where later operations (that may have run) wrote.
            var ops = Workload.Ops(seed, Size, ClusterSize).Take(flushed + 4 * Workload.FlushInterval).ToArray();
            var maybeRan = ops.Skip(flushed).Where(o => o.Mutates).ToArray();
            bool Ignore(long o) => maybeRan.Any(r => r.Covers(o));
            var model = new ReferenceDisk(Size);
            foreach (var op in ops.Take(flushed))
            {
                switch (op.Kind)
                {
                    case WorkloadOpKind.Write: model.Write(op.Offset, op.Data()); break;
                    case WorkloadOpKind.WriteZeroes: model.WriteZeroes(op.Offset, op.Length); break;
                    case WorkloadOpKind.Discard: model.Discard(op.Offset, op.Length); break;
                }
            }
            foreach (var (reader, data) in ReadBack(dir, path, dataPath, dataFile))
            {
                // Verify settles the discarded bytes it sees: each reader gets its own model.
                var mismatch = model.Clone().Verify(0, data, Ignore);
                Assert.True(mismatch is null, $"seed {seed}, {reader}: flushed data lost: {mismatch}");
            }
        }
    }

    [Theory]
    [InlineData(SigkillDataFile.None)]
    [InlineData(SigkillDataFile.External)]
    [InlineData(SigkillDataFile.ExternalRaw)]
    public void ThreadedWriterProcess_KilledWithSigkill_LeavesNoCorruptionAndKeepsDataAcknowledgedBeforeACompletedFlush(SigkillDataFile dataFile)
    {
        var rounds = Rounds(2);
        for (var round = 0; round < rounds; round++)
        {
            var seed = Seed(2000 + (int)dataFile * 100 + round);
            using var dir = new TempDir();
            var (path, dataPath) = CreateImage(dir, dataFile);

            var wantFlushes = 12 + round % 4 * 12;
            // As the writer does: compressed writes unless the image has a data file.
            var workloads = new ThreadWorkloads(seed, compressed: dataFile == SigkillDataFile.None);
            var flushesSeen = 0;
            var lines = RunAndKill(path, seed, dataFile != SigkillDataFile.None, Threads, enough: _ => flushesSeen >= wantFlushes,
                onLine: line => { if (IsFlushLine(line, workloads)) flushesSeen++; });
            var entries = History(lines, workloads);
            var durableBefore = ConcurrentHistory.DurableBefore(entries, _ => true);
            var durable = entries.Count(e => ConcurrentHistory.IsDurable(e, durableBefore));
            output.WriteLine($"{dataFile} round {round}: seed {seed}, killed after {entries.Count(e => e.AckSeq is not null)} acknowledged operations "
                + $"({string.Join(", ", entries.GroupBy(e => e.Thread).Select(g => g.Count(e => e.AckSeq is not null)))} per thread), {durable} durable");
            Assert.True(durable > 0, $"seed {seed}: no operation was durable when the writer was killed: nothing was checked");

            QemuCheck(path, seed);
            foreach (var (reader, data) in ReadBack(dir, path, dataPath, dataFile))
            {
                long checkedBytes = 0;
                var lost = ConcurrentHistory.FindLostData(data, entries, durableBefore, ref checkedBytes);
                Assert.True(lost is null, $"seed {seed}, {reader}: flushed data lost: {lost}");
                var foreign = ConcurrentHistory.FindForeignData(data, entries);
                Assert.True(foreign is null, $"seed {seed}, {reader}: {foreign}");
                output.WriteLine($"  {reader}: {checkedBytes} bytes of durable writes compared");
            }
        }
    }

    /// <summary>Kills per configuration: the CI number, or a fiftieth of <c>QCOW2_PROP_CASES</c> when that is more (a kill costs a process start).</summary>
    private int Rounds(int ci) => _settings.Cases is { } cases ? Math.Max(ci, cases / 50) : ci;

    /// <summary>The writer's seed: fixed numbers under the CI seed, varied with <c>QCOW2_PROP_SEED</c> otherwise.</summary>
    private int Seed(int ciSeed) =>
        _settings.Seed == PropertySettings.DefaultSeed ? ciSeed : unchecked((int)(_settings.Seed ^ (_settings.Seed >> 32)) * 31 + ciSeed);

    /// <summary>Whether a line of the threaded writer reports a flush that returned.</summary>
    private static bool IsFlushLine(string line, ThreadWorkloads workloads) =>
        TryParseOpLine(line, out var thread, out var index, out _, out _) && workloads.Op(thread, index).Kind == WorkloadOpKind.Flush;

    /// <summary>The writer's endless per-thread workloads, generated as far as asked.</summary>
    private sealed class ThreadWorkloads(int seed, bool compressed)
    {
        private readonly IEnumerator<WorkloadOp>[] _sources = Enumerable.Range(0, Threads)
            .Select(t => Workload.ThreadOps(seed, t, Threads, Size, ClusterSize, compressed).GetEnumerator()).ToArray();
        private readonly List<WorkloadOp>[] _ops = Enumerable.Range(0, Threads).Select(_ => new List<WorkloadOp>()).ToArray();

        public WorkloadOp Op(int thread, int index)
        {
            Assert.InRange(thread, 0, Threads - 1);
            while (_ops[thread].Count <= index)
            {
                _sources[thread].MoveNext();
                _ops[thread].Add(_sources[thread].Current);
            }
            return _ops[thread][index];
        }
    }

    private static bool TryParseOpLine(string line, out int thread, out int index, out long start, out long ack)
    {
        thread = index = 0;
        start = ack = 0;
        var parts = line.Split(' ');
        return parts.Length == 5 && parts[0] == "op"
            && int.TryParse(parts[1], CultureInfo.InvariantCulture, out thread)
            && int.TryParse(parts[2], CultureInfo.InvariantCulture, out index)
            && long.TryParse(parts[3], CultureInfo.InvariantCulture, out start)
            && long.TryParse(parts[4], CultureInfo.InvariantCulture, out ack);
    }

    /// <summary>
    /// The history the writer's lines tell: each thread's reported operations with their sequence
    /// numbers, plus the one after its last report, which may have run (the thread calls it only
    /// after printing the line before it), with none.
    /// </summary>
    private static List<HistoryEntry> History(IEnumerable<string> lines, ThreadWorkloads workloads)
    {
        var reported = new Dictionary<(int Thread, int Index), (long Start, long Ack)>();
        foreach (var line in lines)
        {
            Assert.True(TryParseOpLine(line, out var thread, out var index, out var start, out var ack), $"unexpected writer line: {line}");
            reported.Add((thread, index), (start, ack));
        }
        var entries = new List<HistoryEntry>();
        for (var t = 0; t < Threads; t++)
        {
            var last = reported.Keys.Where(k => k.Thread == t).Select(k => k.Index).DefaultIfEmpty(-1).Max();
            for (var i = 0; i <= last; i++)
            {
                Assert.True(reported.TryGetValue((t, i), out var seq), $"thread {t} reported #{last} but not #{i}");
                entries.Add(new HistoryEntry(t, i, workloads.Op(t, i), seq.Start, seq.Ack, MayHaveRun: true));
            }
            entries.Add(new HistoryEntry(t, last + 1, workloads.Op(t, last + 1), null, null, MayHaveRun: true));
        }
        return entries;
    }

    /// <summary>The image (and its data file, named by absolute path) made by qemu-img.</summary>
    private static (string Path, string? DataPath) CreateImage(TempDir dir, SigkillDataFile dataFile)
    {
        var path = dir.File("killed.qcow2");
        var dataPath = dataFile == SigkillDataFile.None ? null : Path.GetFullPath(dir.File("killed.data"));
        var options = $"cluster_size={ClusterSize}" + dataFile switch
        {
            SigkillDataFile.External => $",data_file={dataPath}",
            SigkillDataFile.ExternalRaw => $",data_file={dataPath},data_file_raw=on",
            _ => "",
        };
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", options, path, Size.ToString(CultureInfo.InvariantCulture));
        if (dataPath is not null) Assert.True(File.Exists(dataPath), $"qemu-img did not create the data file {dataPath}");
        return (path, dataPath);
    }

    /// <summary><c>qemu-img check</c>: 0 (clean) or 3 (leaks only); our checker agrees that nothing is corrupt.</summary>
    private static void QemuCheck(string path, int seed)
    {
        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "check", "-f", "qcow2", path);
        Assert.True(code is 0 or 3, $"qemu-img check after SIGKILL (seed {seed}) exited {code}:{Environment.NewLine}{stdout}{stderr}");
        using var file = FileStorage.Open(path, writable: false);
        var ours = Qcow2Checker.Check(file, CheckOptions.ReadOnly);
        Assert.True(ours.Corruptions == 0 && ours.CheckErrors == 0 && ours.FailureMessage is null,
            $"our check after SIGKILL (seed {seed}): {ours.Corruptions} corruptions, {ours.CheckErrors} errors {ours.FailureMessage}: {string.Join("; ", ours.Findings.Take(10))}");
    }

    /// <summary>The guest disk as <c>qemu-img convert</c> and our reader see it, and with <c>data_file_raw</c> the data file itself.</summary>
    private static IEnumerable<(string Reader, byte[] Data)> ReadBack(TempDir dir, string path, string? dataPath, SigkillDataFile dataFile)
    {
        var raw = dir.File("killed.raw");
        QemuTools.Img("convert", "-f", "qcow2", "-O", "raw", path, raw);
        var converted = File.ReadAllBytes(raw);
        Assert.Equal(Size, converted.LongLength);
        yield return ("qemu-img convert", converted);

        var ours = new byte[Size];
        using (var image = Qcow2Image.Open(path, new Qcow2OpenOptions { ReadOnly = true, ExternalFilePolicy = ExternalFilePolicy.AllowUnder(dir.Path) }))
            image.Read(0, ours);
        yield return ("our reader", ours);

        if (dataFile != SigkillDataFile.ExternalRaw) yield break;
        var direct = File.ReadAllBytes(dataPath!);
        // The data file may be shorter than the disk where nothing was ever written.
        Assert.True(direct.LongLength <= Size, $"the raw data file is {direct.LongLength} bytes, the disk {Size}");
        Array.Resize(ref direct, (int)Size);
        yield return ("the raw data file", direct);
    }

    /// <summary>
    /// Starts the writer, reads its lines until <paramref name="enough"/> says so (given the number of
    /// lines), kills it with SIGKILL, and returns every line it printed, those still in the pipe included.
    /// </summary>
    private static List<string> RunAndKill(string path, int seed, bool dataFile, int threads, Func<int, bool> enough, Action<string>? onLine = null)
    {
        var writer = Path.Combine(AppContext.BaseDirectory, "CrashWriter.dll");
        Assert.True(File.Exists(writer), $"the writer is not built next to the tests: {writer}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(writer);
        psi.ArgumentList.Add(path);
        psi.ArgumentList.Add(seed.ToString(CultureInfo.InvariantCulture));
        if (dataFile) psi.ArgumentList.Add("--data-file");
        if (threads > 0)
        {
            psi.ArgumentList.Add("--threads");
            psi.ArgumentList.Add(threads.ToString(CultureInfo.InvariantCulture));
        }
        using var process = Process.Start(psi)!;
        var lines = new List<string>();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            var deadline = Stopwatch.StartNew();
            while (!enough(lines.Count))
            {
                var line = process.StandardOutput.ReadLine();
                if (line is null)
                    throw new InvalidOperationException($"the writer exited early ({(process.WaitForExit(5000) ? process.ExitCode : -1)}): {stderr.Result}");
                lines.Add(line);
                onLine?.Invoke(line);
                if (deadline.Elapsed > TimeSpan.FromMinutes(1)) throw new TimeoutException("the writer made no progress in a minute");
            }
        }
        finally
        {
            // Process.Kill sends SIGKILL on Linux: no finally blocks, no flush, no close in the writer.
            process.Kill();
            process.WaitForExit();
        }
        // Lines already written before the kill may still be in the pipe.
        string? rest;
        while ((rest = process.StandardOutput.ReadLine()) is not null) lines.Add(rest);
        return lines;
    }
}
