using Qcow2.Spans;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Check;

/// <summary>
/// Checks a qcow2 image's metadata for consistency and optionally repairs it, reporting what
/// <c>qemu-img check</c> reports. Works directly on the storage (no image object), so it can run
/// before an image is opened, e.g. to repair the refcounts of a dirty (lazy refcounts) image.
/// </summary>
/// <remarks>
/// The check rebuilds every cluster's reference count from the metadata that uses it (header,
/// L1/L2 tables of the active image and of each snapshot, snapshot table, refcount table and
/// blocks, bitmap directory/tables/data, encryption header) into a compact array with one
/// refcount-width slot per host cluster, then compares it with the stored refcounts block by block.
/// </remarks>
public static class Qcow2Checker
{
    /// <summary>Checks (and with <see cref="CheckOptions.Repair"/> repairs) the image in <paramref name="storage"/>.</summary>
    /// <param name="storage">The image file. Must be writable when repairing.</param>
    /// <param name="options">What to repair; progress.</param>
    /// <returns>The counts and findings. Problems in the metadata are results, not exceptions.</returns>
    /// <exception cref="ArgumentNullException">A null argument.</exception>
    /// <exception cref="ArgumentException">Repair requested on read-only storage.</exception>
    /// <exception cref="Qcow2CorruptImageException">The header itself is unusable (not qcow2, tables that cannot be located).</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The header uses an unsupported version or feature.</exception>
    /// <exception cref="IOException">The storage failed.</exception>
    public static CheckResult Check(IStorage storage, CheckOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(storage);
        options ??= CheckOptions.ReadOnly;
        if (options.Repair is < RepairMode.None or > RepairMode.All)
            throw new ArgumentException($"Unknown repair mode {options.Repair}.", nameof(options));
        if (options.MaxFindings < 0)
            throw new ArgumentException("MaxFindings must not be negative.", nameof(options));
        if (options.Repair != RepairMode.None && !storage.CanWrite)
            throw new ArgumentException("Repair needs writable storage.", nameof(storage));

        var progress = options.Progress;
        bool repairing = options.Repair != RepairMode.None;
        var first = new CheckRun(storage, options.Repair, options.MaxRefcountArrayBytes,
            progress is null ? null : new ScaledProgress(progress, 0, repairing ? 0.6 : 1.0), options.MaxFindings).Run();
        if (!repairing || first.FailureMessage is not null || !first.Repaired)
        {
            progress?.Report(1.0);
            return first;
        }

        // As qemu-img does after a repair: check the result again, read-only, and report those
        // numbers together with what the repair fixed.
        var second = new CheckRun(storage, RepairMode.None, options.MaxRefcountArrayBytes,
            progress is null ? null : new ScaledProgress(progress, 0.6, 0.4), options.MaxFindings).Run();
        second.CorruptionsFixed = first.CorruptionsFixed;
        second.LeaksFixed = first.LeaksFixed;
        second.RefcountStructureRebuilt = first.RefcountStructureRebuilt;
        second.RefcountsPastEndCleared = first.RefcountsPastEndCleared;
        var findings = new List<CheckFinding>(first.FindingList.Count + second.FindingList.Count);
        // qemu-img prints everything the repairing pass found (what it found, then what it repaired),
        // then what the double check finds.
        findings.AddRange(first.FindingList);
        findings.AddRange(second.FindingList);
        if (findings.Count > options.MaxFindings)
        {
            second.FindingsOmitted += findings.Count - options.MaxFindings;
            findings.RemoveRange(options.MaxFindings, findings.Count - options.MaxFindings);
        }
        second.FindingsOmitted += first.FindingsOmitted;
        second.FindingList = findings;
        progress?.Report(1.0);
        return second;
    }

    private sealed class ScaledProgress(IProgress<double> inner, double start, double span) : IProgress<double>
    {
        public void Report(double value) => inner.Report(start + span * Math.Clamp(value, 0, 1));
    }
}
