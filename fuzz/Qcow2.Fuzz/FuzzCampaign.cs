using System.Diagnostics;
using Qcow2.Spans;
using Qcow2.Volume;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;

namespace Qcow2.Fuzz;

/// <summary>One input that broke a rule: an untyped exception, a hang, an allocation past the limit, or a write that corrupted a clean image.</summary>
public sealed record FuzzFinding(FuzzTarget Target, string Seed, int Iteration, string Kind, string Detail, IReadOnlyList<string> Mutations, string? SavedAs);

/// <summary>What a campaign did and found.</summary>
public sealed class FuzzReport
{
    /// <summary>Inputs run, per target.</summary>
    public Dictionary<FuzzTarget, int> Runs { get; } = [];

    /// <summary>Inputs refused with a typed error, per target (shows the mutations reach validation).</summary>
    public Dictionary<FuzzTarget, int> Rejected { get; } = [];

    /// <summary>Inputs that went through without error, per target.</summary>
    public Dictionary<FuzzTarget, int> Accepted { get; } = [];

    /// <summary>The failures.</summary>
    public List<FuzzFinding> Findings { get; } = [];

    /// <inheritdoc/>
    public override string ToString()
    {
        var lines = new List<string>();
        foreach (var (target, runs) in Runs)
        {
            lines.Add($"{target}: {runs} inputs, {Rejected.GetValueOrDefault(target)} refused with a typed error, {Accepted.GetValueOrDefault(target)} accepted");
        }

        lines.Add($"{Findings.Count} finding(s)");
        foreach (var f in Findings)
        {
            lines.Add($"  [{f.Target}] seed {f.Seed} #{f.Iteration}: {f.Kind}: {f.Detail}");
            lines.Add($"    mutations: {string.Join("; ", f.Mutations)}");
            if (f.SavedAs is not null) lines.Add($"    saved as {f.SavedAs}");
        }

        return string.Join(Environment.NewLine, lines);
    }
}

/// <summary>
/// A mutation fuzzing campaign over the library. Each input is a mutated seed image, run on a
/// worker thread under a time limit and an allocation limit. The oracle: only the toolkit's typed
/// errors may escape; no hang; no unbounded allocation; and an image that our checker finds clean
/// stays clean after our writes.
/// </summary>
public static class FuzzCampaign
{
    /// <summary>Runs the campaign described by <paramref name="settings"/>.</summary>
    public static FuzzReport Run(FuzzSettings settings, TextWriter? log = null)
    {
        var seeds = SeedImages.Build(settings.CorpusFiles);
        var report = new FuzzReport();
        var clock = Stopwatch.StartNew();
        foreach (var target in settings.Targets)
        {
            var random = new Random(HashCode.Combine(settings.Seed, (int)target));
            var mutator = new Mutator(random);
            report.Runs[target] = 0;
            report.Rejected[target] = 0;
            report.Accepted[target] = 0;
            for (int i = 0; i < settings.Iterations && clock.Elapsed < settings.Duration * (1 + (int)target) / settings.Targets.Count; i++)
            {
                var seed = seeds[random.Next(seeds.Count)];
                var mutations = new List<string>();
                var input = mutator.Mutate(seed.Bytes, mutations);
                report.Runs[target]++;
                var outcome = RunOne(target, input, random.Next(), settings);
                switch (outcome.Kind)
                {
                    case "accepted": report.Accepted[target]++; break;
                    case "rejected": report.Rejected[target]++; break;
                    default:
                        string? saved = Save(settings.FindingsDirectory, target, seed.Name, i, input);
                        var finding = new FuzzFinding(target, seed.Name, i, outcome.Kind, outcome.Detail, mutations, saved);
                        report.Findings.Add(finding);
                        log?.WriteLine($"FINDING [{target}] {outcome.Kind}: {outcome.Detail}");
                        if (outcome.Kind == "hang") return report; // the stuck thread cannot be stopped
                        break;
                }
            }

            log?.WriteLine($"{target}: {report.Runs[target]} inputs, {report.Rejected[target]} refused, {report.Accepted[target]} accepted, {report.Findings.Count} findings so far");
        }

        return report;
    }

    /// <summary>Runs one input through one target and classifies the outcome.</summary>
    public static (string Kind, string Detail) RunOne(FuzzTarget target, byte[] input, int actionSeed, FuzzSettings settings)
    {
        (string, string) result = ("accepted", "");
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                result = target switch
                {
                    FuzzTarget.OpenRead => OpenRead(input, actionSeed),
                    FuzzTarget.Check => CheckAndRepair(input),
                    _ => Write(input, actionSeed),
                };
            }
            catch (Exception e) when (IsTyped(e))
            {
                result = ("rejected", e.GetType().Name + ": " + e.Message);
            }
            catch (Exception e)
            {
                result = ("untyped exception", e.GetType().FullName + ": " + e.Message + Environment.NewLine + e.StackTrace);
            }

            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            if (allocated > settings.AllocationLimit && result.Item1 is "accepted" or "rejected")
            {
                result = ("allocation", $"{allocated} bytes allocated for one input of {input.Length} bytes");
            }
        }, maxStackSize: 16 << 20) { IsBackground = true, Name = "fuzz-input" };
        thread.Start();
        if (!thread.Join(settings.HangTimeout))
        {
            return ("hang", $"no result after {settings.HangTimeout.TotalSeconds} s");
        }

        return result;
    }

    /// <summary>The exceptions the toolkit promises for bad images.</summary>
    public static bool IsTyped(Exception e) => e is Qcow2CorruptImageException or Qcow2UnsupportedImageException;

    private static (string, string) OpenRead(byte[] input, int actionSeed)
    {
        var random = new Random(actionSeed);
        using var storage = new MemoryStorage(input, writable: false, "fuzz");
        using var image = Qcow2Image.Open(storage, new Qcow2OpenOptions { ReadOnly = true });
        ReadSome(image, random);
        int snapshots = 0;
        foreach (var snapshot in image.Snapshots)
        {
            if (snapshots++ == 4) break;
            using var view = image.OpenSnapshot(snapshot.Id);
            ReadSome(view, random);
        }

        return ("accepted", "");
    }

    private static void ReadSome(IDiskImage image, Random random)
    {
        if (image.Size <= 0) return;
        var buffer = new byte[65536];
        // The start, the end, and random places: a mutated size may be enormous.
        Read(image, 0, buffer);
        Read(image, Math.Max(0, image.Size - buffer.Length), buffer);
        for (int i = 0; i < 16; i++)
        {
            Read(image, random.NextInt64(image.Size), buffer.AsSpan(0, 1 + random.Next(buffer.Length)));
        }

        long offset = 0;
        for (int i = 0; i < 256 && offset < image.Size; i++)
        {
            var status = image.GetBlockStatus(offset, image.Size - offset);
            if (status.Length <= 0) throw new InvalidOperationException($"block status of length {status.Length} at {offset}");
            offset += status.Length;
        }
    }

    private static void Read(IDiskImage image, long offset, Span<byte> buffer)
    {
        long length = Math.Min(buffer.Length, image.Size - offset);
        if (length > 0) image.Read(offset, buffer[..(int)length]);
    }

    private static (string, string) CheckAndRepair(byte[] input)
    {
        CheckResult first;
        using (var readOnly = new MemoryStorage(input, writable: false, "fuzz"))
        {
            first = Qcow2Checker.Check(readOnly, CheckOptions.ReadOnly);
        }

        using var copy = new MemoryStorage(input, writable: true, "fuzz");
        var repair = Qcow2Checker.Check(copy, new CheckOptions { Repair = RepairMode.All });
        if (repair.FailureMessage is not null) return ("rejected", repair.FailureMessage);

        // Repair never makes an image worse (like qemu-img, it may leave what it cannot fix), and
        // what it leaves must still open or be refused with a typed error.
        var again = Qcow2Checker.Check(copy, CheckOptions.ReadOnly);
        if (first.FailureMessage is null && again.Corruptions > first.Corruptions)
            return ("repair made it worse", $"{first.Corruptions} corruption(s) before repair, {again.Corruptions} after: {string.Join("; ", again.Findings.Take(3))}");
        using var image = Qcow2Image.Open(copy, new Qcow2OpenOptions { ReadOnly = true });
        ReadSome(image, new Random(1));
        return ("accepted", "");
    }

    private static (string, string) Write(byte[] input, int actionSeed)
    {
        var random = new Random(actionSeed);
        using var storage = new MemoryStorage(input, writable: true, "fuzz");
        var before = Qcow2Checker.Check(storage, CheckOptions.ReadOnly);
        bool wasClean = before.FailureMessage is null && before.Corruptions == 0;
        using (var image = Qcow2Image.Open(storage))
        {
            if (image.IsReadOnly) return ("rejected", "opened read-only");
            var data = new byte[3 * 65536];
            random.NextBytes(data);
            long size = Math.Min(image.Size, 64L << 20);
            if (size <= 0) return ("accepted", "");
            for (int i = 0; i < 6; i++)
            {
                long offset = random.NextInt64(size);
                int length = (int)Math.Min(1 + random.Next(data.Length), size - offset);
                switch (random.Next(4))
                {
                    case 0: image.WriteZeroes(offset, length, unmap: random.Next(2) == 0); break;
                    case 1: image.Discard(offset, length); break;
                    default: image.Write(offset, data.AsSpan(0, length)); break;
                }
            }

            image.Flush();
        }

        if (wasClean)
        {
            var after = Qcow2Checker.Check(storage, CheckOptions.ReadOnly);
            if (after.Corruptions > 0 || after.FailureMessage is not null)
                return ("write corrupted a clean image", $"{after.Corruptions} corruption(s): {after.FailureMessage} {string.Join("; ", after.Findings.Take(3))}");
        }

        return ("accepted", "");
    }

    private static string? Save(string? directory, FuzzTarget target, string seed, int iteration, byte[] input)
    {
        if (directory is null) return null;
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, $"{target}-{seed}-{iteration}.qcow2");
        File.WriteAllBytes(path, input);
        return path;
    }
}
