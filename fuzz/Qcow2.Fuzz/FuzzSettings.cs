namespace Qcow2.Fuzz;

/// <summary>What to run, for how long, and where to keep what was found.</summary>
public sealed record FuzzSettings
{
    /// <summary>The seed of the whole campaign: the same seed replays the same inputs.</summary>
    public int Seed { get; init; } = 20261121;

    /// <summary>How many mutated inputs to try (per target).</summary>
    public int Iterations { get; init; } = 1000;

    /// <summary>Stop after this long even if iterations remain.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>The targets to exercise.</summary>
    public IReadOnlyList<FuzzTarget> Targets { get; init; } = [FuzzTarget.OpenRead, FuzzTarget.Check, FuzzTarget.Write];

    /// <summary>Where to save inputs that failed (null: keep them in memory only).</summary>
    public string? FindingsDirectory { get; init; }

    /// <summary>Extra seed images (files) to mutate, besides the ones the campaign builds itself.</summary>
    public IReadOnlyList<string> CorpusFiles { get; init; } = [];

    /// <summary>One input may take at most this long before it counts as a hang.</summary>
    public TimeSpan HangTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>One input may allocate at most this many managed bytes.</summary>
    public long AllocationLimit { get; init; } = 1L << 30;
}

/// <summary>The operations a mutated image is put through.</summary>
public enum FuzzTarget
{
    /// <summary>Open read-only, read data and block status, open snapshots.</summary>
    OpenRead,

    /// <summary>Check, then repair a copy, then open the repaired copy.</summary>
    Check,

    /// <summary>Open read-write and write; an image that checked clean must stay clean.</summary>
    Write,
}
