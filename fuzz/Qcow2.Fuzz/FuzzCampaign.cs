using System.Diagnostics;
using Qcow2.Spans;
using Qcow2.Volume;
using Qcow2.Volume.Check;
using Qcow2.Volume.Crypto;
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

    /// <summary>How often each kind of refusal came (exception type and the start of its message, digits masked), per target.</summary>
    public Dictionary<FuzzTarget, Dictionary<string, int>> Refusals { get; } = [];

    /// <summary>The most managed bytes one input allocated, per target.</summary>
    public Dictionary<FuzzTarget, (long Bytes, string Input)> MostAllocated { get; } = [];

    /// <summary>The slowest input per target: how long it took and what it was.</summary>
    public Dictionary<FuzzTarget, (TimeSpan Time, string Input)> Slowest { get; } = [];

    /// <summary>
    /// Outcomes that break an oracle in the way qemu-img 7.2 does too, counted rather than failed
    /// (kind, then how many and the first input): see <see cref="FuzzCampaign.KnownKinds"/>.
    /// </summary>
    public Dictionary<string, (int Count, string First)> Known { get; } = [];

    /// <summary>The failures.</summary>
    public List<FuzzFinding> Findings { get; } = [];

    /// <inheritdoc/>
    public override string ToString()
    {
        var lines = new List<string>();
        foreach (var (target, runs) in Runs)
        {
            lines.Add($"{target}: {runs} inputs, {Rejected.GetValueOrDefault(target)} refused with a typed error, {Accepted.GetValueOrDefault(target)} accepted");
            if (Refusals.TryGetValue(target, out var refusals))
            {
                foreach (var (reason, count) in refusals.OrderByDescending(r => r.Value).ThenBy(r => r.Key, StringComparer.Ordinal).Take(40))
                    lines.Add($"  {count,6} x {reason}");
            }

            if (MostAllocated.TryGetValue(target, out var most))
                lines.Add($"  most allocated by one input: {most.Bytes / 1048576.0:F1} MiB: {Shorten(most.Input)}");
            if (Slowest.TryGetValue(target, out var slowest))
                lines.Add($"  slowest input {slowest.Time.TotalSeconds:F2} s: {Shorten(slowest.Input)}");
        }

        foreach (var (kind, (count, first)) in Known)
            lines.Add($"known (as qemu-img): {kind}: {count} input(s), first {Shorten(first)}");
        lines.Add($"{Findings.Count} finding(s)");
        foreach (var f in Findings)
        {
            lines.Add($"  [{f.Target}] seed {f.Seed} #{f.Iteration}: {f.Kind}: {f.Detail}");
            lines.Add($"    mutations: {string.Join("; ", f.Mutations)}");
            if (f.SavedAs is not null) lines.Add($"    saved as {f.SavedAs}");
        }

        return string.Join(Environment.NewLine, lines);
    }

    private static string Shorten(string text) => text.Length <= 300 ? text : text[..300] + "...";
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
        IReadOnlyList<SeedImages.Seed>? plainSeeds = null, encryptedSeeds = null;
        bool verbose = log is not null;
        var report = new FuzzReport();
        var clock = Stopwatch.StartNew();
        for (int t = 0; t < settings.Targets.Count; t++)
        {
            var target = settings.Targets[t];
            bool encrypted = target == FuzzTarget.Encrypted;
            var seeds = encrypted
                ? encryptedSeeds ??= SeedImages.BuildEncrypted()
                : plainSeeds ??= SeedImages.Build(settings.CorpusFiles);
            // Not HashCode.Combine: it is seeded per process, so a campaign would not replay in another run.
            var random = new Random(unchecked(settings.Seed * 1_000_003 + (int)target * 7_919));
            var mutator = new Mutator(random);
            report.Runs[target] = 0;
            report.Rejected[target] = 0;
            report.Accepted[target] = 0;
            // Each target gets its share of the duration (time a target leaves unused passes on).
            for (int i = 0; i < settings.Iterations && clock.Elapsed < settings.Duration * (t + 1) / settings.Targets.Count; i++)
            {
                var seed = seeds[random.Next(seeds.Count)];
                var mutations = new List<string>();
                var input = encrypted ? mutator.MutateEncrypted(seed.Bytes, mutations) : mutator.Mutate(seed.Bytes, mutations);
                report.Runs[target]++;
                long started = Stopwatch.GetTimestamp();
                var outcome = RunOne(target, input, random.Next(), settings, seed.Secret, out long allocatedBytes);
                if (allocatedBytes > report.MostAllocated.GetValueOrDefault(target).Bytes)
                    report.MostAllocated[target] = (allocatedBytes, $"{seed.Name} #{i}: {string.Join("; ", mutations)}");
                var took = Stopwatch.GetElapsedTime(started);
                if (took > report.Slowest.GetValueOrDefault(target).Time)
                    report.Slowest[target] = (took, $"{seed.Name} #{i}: {string.Join("; ", mutations)}");
                if (settings.SlowInputLimit is { } limit && took > limit && outcome.Kind is "accepted" or "rejected")
                    outcome = ("slow", $"{took.TotalSeconds:F1} s for one input ({outcome.Kind}: {Shorten(outcome.Detail)})");
                switch (outcome.Kind)
                {
                    case "accepted": report.Accepted[target]++; break;
                    case "rejected":
                        report.Rejected[target]++;
                        if (verbose)
                        {
                            var table = report.Refusals.TryGetValue(target, out var t2) ? t2 : report.Refusals[target] = [];
                            string reason = RefusalKind(outcome.Detail);
                            table[reason] = table.GetValueOrDefault(reason) + 1;
                        }
                        break;
                    case var kind when KnownKinds.Contains(kind):
                        var (count, first) = report.Known.GetValueOrDefault(kind);
                        report.Known[kind] = (count + 1, first ?? $"{seed.Name} #{i}: {string.Join("; ", mutations)}");
                        report.Accepted[target]++;
                        break;
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

    private static string Shorten(string text) => text.Length <= 200 ? text : text[..200] + "...";

    /// <summary>A refusal's kind: its last typed error's type and the first words of its message, numbers masked.</summary>
    private static string RefusalKind(string detail)
    {
        int last = detail.LastIndexOf("; ", StringComparison.Ordinal);
        string text = last >= 0 && detail.IndexOf("Exception", last, StringComparison.Ordinal) > 0 ? detail[(last + 2)..] : detail;
        var words = text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(7);
        return System.Text.RegularExpressions.Regex.Replace(string.Join(' ', words), "(0x[0-9a-fA-F]+|[0-9]+)", "#");
    }

    /// <summary>Runs one input through one target and classifies the outcome (<paramref name="secret"/>: the encrypted target's seed secret).</summary>
    public static (string Kind, string Detail) RunOne(FuzzTarget target, byte[] input, int actionSeed, FuzzSettings settings, byte[]? secret = null) =>
        RunOne(target, input, actionSeed, settings, secret, out _);

    /// <summary>As <see cref="RunOne(FuzzTarget, byte[], int, FuzzSettings, byte[])"/>, also giving the managed bytes the input's thread allocated (-1 on a hang).</summary>
    public static (string Kind, string Detail) RunOne(FuzzTarget target, byte[] input, int actionSeed, FuzzSettings settings, byte[]? secret, out long allocatedBytes)
    {
        long allocatedByInput = -1;
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
                    FuzzTarget.Encrypted => Encrypted(input, actionSeed, secret ?? SeedImages.EncryptedSecret, settings.KeyDerivationWork),
                    _ => Write(input, actionSeed),
                };
            }
            catch (Exception e) when (IsTyped(e) || (target == FuzzTarget.Encrypted && e is Qcow2KeyException))
            {
                result = ("rejected", e.GetType().Name + ": " + e.Message);
            }
            catch (Exception e)
            {
                result = ("untyped exception", e.GetType().FullName + ": " + e.Message + Environment.NewLine + e.StackTrace);
            }

            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            allocatedByInput = allocated;
            if (allocated > settings.AllocationLimit && result.Item1 is "accepted" or "rejected")
            {
                result = ("allocation", $"{allocated} bytes allocated for one input of {input.Length} bytes");
            }
        }, maxStackSize: 16 << 20) { IsBackground = true, Name = "fuzz-input" };
        thread.Start();
        if (!thread.Join(settings.HangTimeout))
        {
            allocatedBytes = -1;
            return ("hang", $"no result after {settings.HangTimeout.TotalSeconds} s");
        }

        allocatedBytes = allocatedByInput;
        return result;
    }

    /// <summary>
    /// Outcome kinds reported but not failed (none at present). "repair lost the key" was one until
    /// the checker stopped repairing through L1 entries that point into the LUKS key material
    /// (qemu-img check -r all 7.2 still does): it is a finding again.
    /// </summary>
    public static readonly IReadOnlySet<string> KnownKinds = new HashSet<string>();

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

    /// <summary>
    /// The encrypted target. Stage 1, keyless, read-only: metadata and block status, and a data read
    /// must be refused while the image is encrypted. Stage 2, on a writable copy, with the secret (one
    /// input in eight a wrong one): reads, then writes, zero writes and discards, each write read back
    /// at once on images that checked clean; the checker must still find them clean, and a reopen must
    /// read the last write or zero write back. Stage 3, for an image that unlocked but did not check
    /// clean: a repair must not cost the secret its key (the LUKS region is metadata to the checker).
    /// </summary>
    private static (string, string) Encrypted(byte[] input, int actionSeed, byte[] secret, long work)
    {
        var random = new Random(actionSeed);
        string keyless = "";
        try
        {
            using var storage = new MemoryStorage(input, writable: false, "fuzz");
            using var image = Qcow2Image.Open(storage, new Qcow2OpenOptions { ReadOnly = true });
            var info = image.Info;
            WalkBlockStatus(image);
            if (info.Encryption != CryptMethod.None && image.Size > 0)
            {
                try
                {
                    image.Read(0, new byte[(int)Math.Min(4096, image.Size)]);
                    return ("keyless read", $"an image with encryption {info.Encryption} returned data without its secret");
                }
                catch (Qcow2UnsupportedImageException)
                {
                }
            }
        }
        catch (Exception e) when (IsTyped(e))
        {
            keyless = "keyless open refused: " + e.Message + "; ";
        }

        byte[] usedSecret = random.Next(8) == 0 ? "not-the-secret"u8.ToArray() : secret;
        using var copy = new MemoryStorage(input, writable: true, "fuzz");
        var before = Qcow2Checker.Check(copy, CheckOptions.ReadOnly);
        bool wasClean = before.FailureMessage is null && before.Corruptions == 0;
        (int Kind, long Offset, int Length)? last = null;
        var data = new byte[3 * 65536];
        random.NextBytes(data);
        try
        {
            using (var image = Qcow2Image.Open(copy, new Qcow2OpenOptions { EncryptionSecret = usedSecret, MaxKeyDerivationWork = work }))
            {
                if (image.IsReadOnly) return ("rejected", keyless + "opened read-only");
                ReadSome(image, random);
                long size = Math.Min(image.Size, 64L << 20);
                var readBack = new byte[data.Length];
                for (int i = 0; i < 6 && size > 0; i++)
                {
                    long offset = random.NextInt64(size);
                    int length = (int)Math.Min(1 + random.Next(data.Length), size - offset);
                    int kind = random.Next(4);
                    switch (kind)
                    {
                        case 0: image.WriteZeroes(offset, length, unmap: random.Next(2) == 0); break;
                        case 1: image.Discard(offset, length); break;
                        default:
                            image.Write(offset, data.AsSpan(0, length));
                            image.Read(offset, readBack.AsSpan(0, length));
                            if (wasClean && !readBack.AsSpan(0, length).SequenceEqual(data.AsSpan(0, length)))
                                return ("read-back mismatch", $"{length} bytes written at 0x{offset:x} read back differently");
                            break;
                    }

                    // Discard may keep data; writes and zero writes have a known result.
                    if (kind != 1) last = (kind, offset, length);
                    else if (last is { } l && offset < l.Offset + l.Length && l.Offset < offset + length) last = null;
                }

                image.Flush();
            }
        }
        catch (Exception e) when (IsTyped(e) || e is Qcow2KeyException)
        {
            if (wasClean || before.FailureMessage is not null) throw;
            return Repaired(input, secret, work, keyless + e.GetType().Name + ": " + e.Message);
        }

        if (!wasClean) return Repaired(input, secret, work, null);
        var after = Qcow2Checker.Check(copy, CheckOptions.ReadOnly);
        if (after.Corruptions > 0 || after.FailureMessage is not null)
            return ("write corrupted a clean image", $"{after.Corruptions} corruption(s): {after.FailureMessage} {string.Join("; ", after.Findings.Take(3))}");
        if (last is { } w)
        {
            using var reopened = Qcow2Image.Open(copy, new Qcow2OpenOptions { ReadOnly = true, EncryptionSecret = usedSecret, MaxKeyDerivationWork = work });
            var got = new byte[w.Length];
            reopened.Read(w.Offset, got);
            bool same = w.Kind == 0 ? !got.AsSpan().ContainsAnyExcept((byte)0) : got.AsSpan().SequenceEqual(data.AsSpan(0, w.Length));
            if (!same) return ("reopen mismatch", $"the last {(w.Kind == 0 ? "zero write" : "write")} ({w.Length} bytes at 0x{w.Offset:x}) reads differently after a reopen");
        }

        return ("accepted", keyless);
    }

    /// <summary>
    /// An image that did not check clean: repair a fresh copy. If the original unlocked with the secret,
    /// the repaired one must unlock too. <paramref name="refused"/>: why the keyed open of the original
    /// failed (the input then counts as refused whatever the repair does, unless it breaks a rule).
    /// </summary>
    private static (string, string) Repaired(byte[] input, byte[] secret, long work, string? refused)
    {
        bool unlockedBefore;
        try
        {
            using var storage = new MemoryStorage(input, writable: false, "fuzz");
            using var image = Qcow2Image.Open(storage, new Qcow2OpenOptions { ReadOnly = true, EncryptionSecret = secret, MaxKeyDerivationWork = work });
            unlockedBefore = image.Info.Encryption != CryptMethod.None;
        }
        catch (Exception e) when (IsTyped(e) || e is Qcow2KeyException)
        {
            unlockedBefore = false;
        }

        using var copy = new MemoryStorage(input, writable: true, "fuzz");
        var repair = Qcow2Checker.Check(copy, new CheckOptions { Repair = RepairMode.All });
        if (repair.FailureMessage is null && unlockedBefore)
        {
            try
            {
                using var image = Qcow2Image.Open(copy, new Qcow2OpenOptions { ReadOnly = true, EncryptionSecret = secret, MaxKeyDerivationWork = work });
                ReadSome(image, new Random(1));
            }
            catch (Qcow2KeyException e)
            {
                return ("repair lost the key", $"the secret unlocked the image before the repair, not after: {e.Message}");
            }
        }

        return refused is null ? ("accepted", "repaired") : ("rejected", refused);
    }

    private static void WalkBlockStatus(IDiskImage image)
    {
        long offset = 0;
        for (int i = 0; i < 256 && offset < image.Size; i++)
        {
            var status = image.GetBlockStatus(offset, image.Size - offset);
            if (status.Length <= 0) throw new InvalidOperationException($"block status of length {status.Length} at {offset}");
            offset += status.Length;
        }
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
