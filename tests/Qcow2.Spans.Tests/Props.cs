using FsCheck;
using FsCheck.Fluent;
using Microsoft.FSharp.Core;

namespace Qcow2.Spans.Tests;

/// <summary>FsCheck driven from [Fact]s with one fixed seed, so that every failure replays.</summary>
internal static class Props
{
    /// <summary>The replay seed of every property in this project.</summary>
    public const ulong Seed = 0x5EED_5BA5_0002_2026UL;

    public static void Check<T>(Gen<T> gen, Action<T> property, int cases = 300)
    {
        var config = Config.QuickThrowOnFailure
            .WithMaxTest(cases)
            .WithQuietOnSuccess(true)
            .WithReplay(FSharpOption<Replay>.Some(new Replay(new Rnd(Seed), FSharpOption<int>.None)));
        FsCheck.Check.One(config, Prop.ForAll(gen.ToArbitrary(), property));
    }

    /// <summary>Uniform over all 64-bit values (FsCheck's default ulong stays small).</summary>
    public static Gen<ulong> UInt64 =>
        from hi in Gen.Choose(int.MinValue, int.MaxValue)
        from lo in Gen.Choose(int.MinValue, int.MaxValue)
        select ((ulong)(uint)hi << 32) | (uint)lo;

    /// <summary>Non-negative longs below 2^bits, biased to small and edge values.</summary>
    public static Gen<long> NonNegative(int bits) =>
        Gen.Frequency(
            (6, UInt64.Select(u => (long)(u & ((1UL << bits) - 1)))),
            (1, Gen.Choose(0, 4096).Select(i => (long)i)),
            (1, Gen.Choose(0, 4096).Select(i => (long)(((1UL << bits) - 1) - (ulong)i))));

    /// <summary>Deterministic pseudo-random bytes of a generated length.</summary>
    public static Gen<byte[]> Bytes(int minLength, int maxLength) =>
        from seed in Gen.Choose(int.MinValue, int.MaxValue)
        from len in Gen.Choose(minLength, maxLength)
        select MakeBytes(seed, len);

    public static byte[] MakeBytes(int seed, int length)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }
}
