namespace Qcow2.Volume.Check;

/// <summary>The category of a <see cref="CheckFinding"/>.</summary>
public enum CheckFindingKind
{
    /// <summary>A cluster's stored refcount is higher than its references (a leak).</summary>
    Leak,
    /// <summary>A cluster's stored refcount is lower than its references (zero included).</summary>
    RefcountTooLow,
    /// <summary>A refcount would overflow the refcount width.</summary>
    RefcountOverflow,
    /// <summary>A COPIED flag of an L1 or L2 entry disagrees with the refcount.</summary>
    CopiedFlag,
    /// <summary>An L1 entry is malformed (reserved bits, unaligned L2 offset).</summary>
    L1Entry,
    /// <summary>An L2 entry is malformed (reserved bits, unaligned offset, bad subcluster bitmap, compressed flags).</summary>
    L2Entry,
    /// <summary>A referenced region lies past the end of the file.</summary>
    PastEndOfFile,
    /// <summary>The refcount table or a refcount block is damaged.</summary>
    RefcountStructure,
    /// <summary>The snapshot table or a snapshot entry is damaged.</summary>
    SnapshotTable,
    /// <summary>The bitmap directory or a bitmap table is damaged.</summary>
    Bitmap,
    /// <summary>The check itself could not read or process something (I/O, memory limit).</summary>
    CheckError,
    /// <summary>Something informational about the repair (e.g. the refcount structure was rebuilt).</summary>
    Information,
}

/// <summary>One thing the check found (and possibly repaired).</summary>
/// <param name="Kind">The category.</param>
/// <param name="Offset">The byte offset in the image file the finding is about, or -1.</param>
/// <param name="Message">A human-readable description, in the spirit of qemu-img's messages.</param>
/// <param name="Repaired">Whether the repair fixed it.</param>
public readonly record struct CheckFinding(CheckFindingKind Kind, long Offset, string Message, bool Repaired = false)
{
    /// <inheritdoc/>
    public override string ToString() => Repaired ? $"Repaired {Kind}: {Message}" : $"{Kind}: {Message}";
}

/// <summary>
/// The outcome of <see cref="Qcow2Checker.Check"/>, with the numbers qemu-img check reports. After a
/// repair that changed something, the counts (<see cref="Corruptions"/>, <see cref="Leaks"/>,
/// <see cref="CheckErrors"/> and the totals) come from a second, read-only pass over the repaired image,
/// while <see cref="CorruptionsFixed"/> and <see cref="LeaksFixed"/> come from the repair pass: exactly
/// what qemu-img prints after "Double checking the fixed image now...".
/// </summary>
public sealed class CheckResult
{
    /// <summary>Clusters used whose refcount is too low, and other structural errors left unrepaired.</summary>
    public long Corruptions { get; internal set; }

    /// <summary>Clusters whose refcount is higher than their uses, left unrepaired.</summary>
    public long Leaks { get; internal set; }

    /// <summary>Things the check could not examine (I/O errors, memory limits, unreadable refcount blocks).</summary>
    public long CheckErrors { get; internal set; }

    /// <summary>Corruptions repaired.</summary>
    public long CorruptionsFixed { get; internal set; }

    /// <summary>Leaks repaired.</summary>
    public long LeaksFixed { get; internal set; }

    /// <summary>Guest clusters of the virtual disk (virtual size rounded up to clusters).</summary>
    public long TotalClusters { get; internal set; }

    /// <summary>Guest clusters of the active image with host storage (normal, preallocated-zero and compressed).</summary>
    public long AllocatedClusters { get; internal set; }

    /// <summary>Allocated clusters not directly after the previous one of the same L2 table, and every compressed cluster.</summary>
    public long FragmentedClusters { get; internal set; }

    /// <summary>Compressed clusters of the active image.</summary>
    public long CompressedClusters { get; internal set; }

    /// <summary>One byte past the last host cluster that is used or has a refcount.</summary>
    public long ImageEndOffset { get; internal set; }

    /// <summary>
    /// When the check could not complete (qemu-img prints "Check failed: ..." and reports nothing else),
    /// the reason in qemu-img's words (e.g. "Input/output error"); otherwise null.
    /// </summary>
    public string? FailureMessage { get; internal set; }

    /// <summary>
    /// With <see cref="FailureMessage"/>: what made the check fail, as qemu-img words it before
    /// "Check failed" (its first line is an error report, further lines are hints); null when the
    /// failure has no such explanation.
    /// </summary>
    public string? FailureDetail { get; internal set; }

    /// <summary>
    /// Refcounts of clusters past the end of the file that a leak repair set to zero. qemu-img check
    /// ignores these (neither reports nor repairs them), so they are not part of
    /// <see cref="LeaksFixed"/> and the report stays the same as qemu-img's.
    /// </summary>
    public long RefcountsPastEndCleared { get; internal set; }

    /// <summary>Whether the repair rebuilt the refcount table and blocks.</summary>
    public bool RefcountStructureRebuilt { get; internal set; }

    /// <summary>Whether a repair pass ran and changed the image.</summary>
    public bool Repaired => CorruptionsFixed + LeaksFixed > 0 || RefcountStructureRebuilt;

    /// <summary>Everything found, in order; repaired ones are flagged.</summary>
    public IReadOnlyList<CheckFinding> Findings => FindingList;

    internal List<CheckFinding> FindingList { get; set; } = new();

    /// <summary>Findings not kept because <see cref="CheckOptions.MaxFindings"/> was reached.</summary>
    public long FindingsOmitted { get; internal set; }

    /// <summary>True when nothing is wrong: no corruptions, leaks, check errors, and the check completed.</summary>
    public bool IsClean => Corruptions == 0 && Leaks == 0 && CheckErrors == 0 && FailureMessage is null;

    /// <summary>
    /// qemu-img check's exit code for this result: 0 clean, 1 check failed or check errors, 2 corruptions,
    /// 3 leaks only.
    /// </summary>
    public int ExitCode => FailureMessage is not null || CheckErrors > 0 ? 1 : Corruptions > 0 ? 2 : Leaks > 0 ? 3 : 0;
}
