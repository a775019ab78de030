namespace Qcow2.Volume.Check;

/// <summary>What <see cref="Qcow2Checker.Check"/> may change (qemu-img check's <c>-r</c>).</summary>
public enum RepairMode
{
    /// <summary>Read only: report, change nothing.</summary>
    None = 0,

    /// <summary>Free leaked clusters (refcount higher than the references), and fix COPIED flags when that is then safe.</summary>
    Leaks = 1,

    /// <summary>
    /// Everything that can be repaired: leaks, refcounts that are too low, COPIED flags, L2 entries that
    /// cannot be valid, and a rebuild of the whole refcount structure when it is itself damaged.
    /// </summary>
    All = 2,
}

/// <summary>Options of <see cref="Qcow2Checker.Check"/>.</summary>
public sealed class CheckOptions
{
    /// <summary>What may be repaired. Anything but <see cref="RepairMode.None"/> needs writable storage.</summary>
    public RepairMode Repair { get; init; }

    /// <summary>Receives the fraction done (0..1) as the check proceeds; may be null.</summary>
    public IProgress<double>? Progress { get; init; }

    /// <summary>
    /// Upper bound for the bytes of the in-memory refcount array (one refcount-width slot per host cluster).
    /// An image that needs more is refused with a check error instead of exhausting memory.
    /// Default: the largest single array .NET allows (about 2 GiB).
    /// </summary>
    public long MaxRefcountArrayBytes { get; init; } = Array.MaxLength;

    /// <summary>
    /// How many findings the result keeps (a badly damaged large image can have millions); the rest
    /// are only counted in <see cref="CheckResult.FindingsOmitted"/>. The counts are always complete.
    /// </summary>
    public int MaxFindings { get; init; } = 100_000;

    /// <summary>Options for a read-only check.</summary>
    public static CheckOptions ReadOnly { get; } = new();
}
