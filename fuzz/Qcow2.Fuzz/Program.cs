using System.Globalization;
using Qcow2.Fuzz;

// qcow2 fuzz campaign: mutates small valid images and runs them through open/read, check/repair
// and write, reporting anything but the toolkit's typed errors, hangs, excessive allocation, and
// writes that corrupt a clean image. Exit code 1 when anything was found.
var settings = new FuzzSettings();
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--seed": settings = settings with { Seed = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
        case "--iterations": settings = settings with { Iterations = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
        case "--seconds": settings = settings with { Duration = TimeSpan.FromSeconds(double.Parse(Next(), CultureInfo.InvariantCulture)) }; break;
        case "--findings": settings = settings with { FindingsDirectory = Next() }; break;
        case "--corpus": settings = settings with { CorpusFiles = Directory.GetFiles(Next()) }; break;
        case "--target":
            settings = settings with { Targets = Next().Split(',').Select(t => Enum.Parse<FuzzTarget>(t.Replace("-", ""), ignoreCase: true)).ToArray() };
            break;
        case "-h":
        case "--help":
            Console.WriteLine("usage: Qcow2.Fuzz [--target openread,check,write] [--iterations N] [--seconds S] [--seed N] [--corpus DIR] [--findings DIR]");
            return 0;
        default:
            Console.Error.WriteLine($"qcow2-fuzz: unknown option {args[i]}");
            return 2;
    }
}

Console.WriteLine($"seed {settings.Seed}, {settings.Iterations} iterations per target, at most {settings.Duration.TotalSeconds} s");
var report = FuzzCampaign.Run(settings, Console.Out);
Console.WriteLine(report);
return report.Findings.Count == 0 ? 0 : 1;
