using System.Globalization;
using Qcow2.Fuzz;

// qcow2 fuzz campaign: mutates small valid images and runs them through open/read, check/repair
// and write, and encrypted images through keyless and keyed opens, reporting anything but the toolkit's typed errors, hangs, excessive allocation, and
// writes that corrupt a clean image. Exit code 1 when anything was found.
// An input slower than this is a finding (the encrypted target's PBKDF2 budget costs a few seconds).
var settings = new FuzzSettings { SlowInputLimit = TimeSpan.FromSeconds(10) };
var replay = new List<string>();
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--seed": settings = settings with { Seed = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
        case "--iterations": settings = settings with { Iterations = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
        case "--seconds": settings = settings with { Duration = TimeSpan.FromSeconds(double.Parse(Next(), CultureInfo.InvariantCulture)) }; break;
        case "--slow":
            double slow = double.Parse(Next(), CultureInfo.InvariantCulture);
            settings = settings with { SlowInputLimit = slow > 0 ? TimeSpan.FromSeconds(slow) : null };
            break;
        case "--replay":
            replay.Add(Next());
            break;
        case "--findings": settings = settings with { FindingsDirectory = Next() }; break;
        case "--corpus": settings = settings with { CorpusFiles = Directory.GetFiles(Next()) }; break;
        case "--target":
            settings = settings with { Targets = Next().Split(',').Select(t => Enum.Parse<FuzzTarget>(t.Replace("-", ""), ignoreCase: true)).ToArray() };
            break;
        case "-h":
        case "--help":
            Console.WriteLine("usage: Qcow2.Fuzz [--target openread,check,write,encrypted] [--iterations N] [--seconds S] [--seed N] [--slow S (0: off; default 10)] [--corpus DIR] [--findings DIR] | --replay FILE [--target ...]");
            return 0;
        default:
            Console.Error.WriteLine($"qcow2-fuzz: unknown option {args[i]}");
            return 2;
    }
}

if (replay.Count > 0)
{
    // Replays saved inputs through the chosen targets (encrypted ones with the seeds' secret), timed.
    bool bad = false;
    foreach (var file in replay)
    {
        foreach (var target in settings.Targets)
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            var (kind, detail) = FuzzCampaign.RunOne(target, File.ReadAllBytes(file), 1, settings);
            Console.WriteLine($"{file} [{target}] {kind} in {System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds:F2} s: {detail}");
            bad |= kind is not ("accepted" or "rejected");
        }
    }

    return bad ? 1 : 0;
}

Console.WriteLine($"seed {settings.Seed}, {settings.Iterations} iterations per target, at most {settings.Duration.TotalSeconds} s");
var report = FuzzCampaign.Run(settings, Console.Out);
Console.WriteLine(report);
return report.Findings.Count == 0 ? 0 : 1;
