using System.Globalization;
using FsCheck;
using FsCheck.Fluent;
using Microsoft.FSharp.Core;
using Xunit.Abstractions;

namespace Qcow2.Property.Tests.Runner;

/// <summary>
/// The knobs of a property run. CI uses the defaults (a fixed seed, a bounded number of small cases);
/// long campaigns set them from the environment:
/// <list type="bullet">
/// <item><c>QCOW2_PROP_SEED</c>: the replay seed (decimal or 0x hex).</item>
/// <item><c>QCOW2_PROP_CASES</c>: cases per property (replaces each test's own default).</item>
/// <item><c>QCOW2_PROP_MAXSIZE</c>: the largest virtual disk size in bytes (at least two clusters are always allowed).</item>
/// <item><c>QCOW2_PROP_MAXCMDS</c>: the most commands in one script.</item>
/// <item><c>QCOW2_PROP_CUTS</c>: power-cut points tried per crash workload (0 = every one).</item>
/// </list>
/// </summary>
internal sealed record PropertySettings
{
    public const ulong DefaultSeed = 0x5EED_0C0D_E202_6001UL;

    public ulong Seed { get; init; } = DefaultSeed;
    public int? Cases { get; init; }
    public long MaxSize { get; init; } = 4 << 20;
    public int MaxCommands { get; init; } = 30;
    public int CutPoints { get; init; } = 48;

    public static PropertySettings FromEnvironment()
    {
        var s = new PropertySettings();
        if (Read("QCOW2_PROP_SEED") is { } seed) s = s with { Seed = seed };
        if (Read("QCOW2_PROP_CASES") is { } cases) s = s with { Cases = checked((int)cases) };
        if (Read("QCOW2_PROP_MAXSIZE") is { } max) s = s with { MaxSize = checked((long)max) };
        if (Read("QCOW2_PROP_MAXCMDS") is { } cmds) s = s with { MaxCommands = Math.Max(1, checked((int)cmds)) };
        if (Read("QCOW2_PROP_CUTS") is { } cuts) s = s with { CutPoints = cuts == 0 ? int.MaxValue : checked((int)cuts) };
        return s;
    }

    public int CasesOr(int ciDefault) => Cases ?? ciDefault;

    /// <summary>The environment line that replays a run with these settings.</summary>
    public string ReplayLine(int cases) =>
        $"QCOW2_PROP_SEED=0x{Seed:x} QCOW2_PROP_CASES={cases} QCOW2_PROP_MAXSIZE={MaxSize} QCOW2_PROP_MAXCMDS={MaxCommands}";

    private static ulong? Read(string name)
    {
        var text = Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrWhiteSpace(text)) return null;
        text = text.Trim();
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            return ulong.Parse(text.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        return ulong.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Checks a property with FsCheck from these settings. A failure is rethrown with the seed, the
    /// replay command and FsCheck's report (the original and the shrunk script).
    /// </summary>
    public void Check<T>(string name, Arbitrary<T> arbitrary, Action<T> property, int ciCases, ITestOutputHelper? output = null)
    {
        var cases = CasesOr(ciCases);
        output?.WriteLine($"{name}: seed 0x{Seed:x}, {cases} cases, max size {MaxSize}, max {MaxCommands} commands");
        var config = Config.QuickThrowOnFailure
            .WithMaxTest(cases)
            .WithStartSize(1)
            .WithEndSize(MaxCommands)
            .WithQuietOnSuccess(true)
            .WithReplay(FSharpOption<Replay>.Some(new Replay(new Rnd(Seed), FSharpOption<int>.None)));
        try
        {
            FsCheck.Check.One(config, Prop.ForAll(arbitrary, property));
        }
        catch (Exception e) when (e is not PropertyFailedException)
        {
            throw new PropertyFailedException(
                $"{name} failed. Replay with: {ReplayLine(cases)} dotnet test tests/property --filter {name}{Environment.NewLine}{e.Message}", e);
        }
    }
}

/// <summary>A property failed; the message holds the seed, the replay line and the shrunk script.</summary>
internal sealed class PropertyFailedException(string message, Exception inner) : Exception(message, inner);
