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
    public IReadOnlyList<FuzzTarget> Targets { get; init; } = [FuzzTarget.OpenRead, FuzzTarget.Check, FuzzTarget.Write, FuzzTarget.Encrypted];

    /// <summary>Where to save inputs that failed (null: keep them in memory only).</summary>
    public string? FindingsDirectory { get; init; }

    /// <summary>Extra seed images (files) to mutate, besides the ones the campaign builds itself.</summary>
    public IReadOnlyList<string> CorpusFiles { get; init; } = [];

    /// <summary>One input may take at most this long before it counts as a hang.</summary>
    public TimeSpan HangTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>
    /// An input that finishes but took longer than this is a finding ("slow"); null: only hangs count.
    /// The encrypted target's worst legitimate input spends the library's whole PBKDF2 budget per open
    /// (a few seconds); anything slower means a bound is missing.
    /// </summary>
    public TimeSpan? SlowInputLimit { get; init; }

    /// <summary>
    /// The PBKDF2 budget of the encrypted target's keyed opens (<see cref="Qcow2.Volume.Qcow2OpenOptions.MaxKeyDerivationWork"/>,
    /// hash-block iterations): 2^22, under two seconds of hashing on a slow core, so mutated iteration
    /// counts exercise the bound without making every such input cost the library's default budget
    /// (2^28, about 30 s and more). The seeds need about 3000.
    /// </summary>
    public long KeyDerivationWork { get; init; } = 1L << 22;

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

    /// <summary>
    /// Encrypted seeds (LUKS xts and cbc-essiv, legacy AES): the keyless metadata-only open (data reads
    /// must be refused), then, on a memory copy, an open with the secret (sometimes a wrong one), reads,
    /// writes read back, zero writes, discards, a check that must stay clean, a reopen that must read the
    /// last write back, and for unclean images a repair after which the secret must still unlock.
    /// </summary>
    Encrypted,
}
