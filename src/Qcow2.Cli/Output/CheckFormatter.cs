using System.Globalization;
using System.Text;
using Qcow2.Cli.Framework;

namespace Qcow2.Cli.Output;

/// <summary>The numbers <c>check</c> reports.</summary>
internal sealed record CheckReport
{
    public required string Filename { get; init; }
    public required string Format { get; init; }
    public long CheckErrors { get; init; }
    public long Corruptions { get; init; }
    public long Leaks { get; init; }
    public long CorruptionsFixed { get; init; }
    public long LeaksFixed { get; init; }
    public long? ImageEndOffset { get; init; }
    public long TotalClusters { get; init; }
    public long AllocatedClusters { get; init; }
    public long FragmentedClusters { get; init; }
    public long CompressedClusters { get; init; }

    /// <summary>qemu-img check's exit code for this result.</summary>
    public int ExitCode =>
        CheckErrors != 0 ? ExitCodes.CheckFailed :
        Corruptions != 0 ? ExitCodes.CheckCorrupted :
        Leaks != 0 ? ExitCodes.CheckLeaks : ExitCodes.Success;
}

/// <summary>check's JSON and human output, as qemu-img 7.2 prints them.</summary>
internal static class CheckFormatter
{
    public static string Json(CheckReport r)
    {
        var d = new QDict(KeyOrder.Check);
        d.Add("filename", r.Filename);
        d.Add("format", r.Format);
        d.Add("check-errors", r.CheckErrors);
        if (r.ImageEndOffset is { } end) d.Add("image-end-offset", end);
        if (r.Corruptions != 0) d.Add("corruptions", r.Corruptions);
        if (r.Leaks != 0) d.Add("leaks", r.Leaks);
        if (r.CorruptionsFixed != 0) d.Add("corruptions-fixed", r.CorruptionsFixed);
        if (r.LeaksFixed != 0) d.Add("leaks-fixed", r.LeaksFixed);
        if (r.TotalClusters != 0) d.Add("total-clusters", r.TotalClusters);
        if (r.AllocatedClusters != 0) d.Add("allocated-clusters", r.AllocatedClusters);
        if (r.FragmentedClusters != 0) d.Add("fragmented-clusters", r.FragmentedClusters);
        if (r.CompressedClusters != 0) d.Add("compressed-clusters", r.CompressedClusters);
        return QJson.ToPrettyJson(d) + "\n";
    }

    /// <summary>The text printed before the final report when something was repaired.</summary>
    public static string RepairPreamble(long leaksFixed, long corruptionsFixed)
    {
        var inv = CultureInfo.InvariantCulture;
        return "The following inconsistencies were found and repaired:\n\n" +
               "    " + leaksFixed.ToString(inv) + " leaked clusters\n" +
               "    " + corruptionsFixed.ToString(inv) + " corruptions\n\n" +
               "Double checking the fixed image now...\n";
    }

    public static string Human(CheckReport r)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        if (r.Corruptions == 0 && r.Leaks == 0 && r.CheckErrors == 0)
            sb.Append("No errors were found on the image.\n");
        if (r.Corruptions != 0)
            sb.Append('\n').Append(r.Corruptions.ToString(inv)).Append(" errors were found on the image.\n")
              .Append("Data may be corrupted, or further writes to the image may corrupt it.\n");
        if (r.Leaks != 0)
            sb.Append('\n').Append(r.Leaks.ToString(inv)).Append(" leaked clusters were found on the image.\n")
              .Append("This means waste of disk space, but no harm to data.\n");
        if (r.CheckErrors != 0)
            sb.Append('\n').Append(r.CheckErrors.ToString(inv)).Append(" internal errors have occurred during the check.\n");
        if (r.TotalClusters != 0 && r.AllocatedClusters != 0)
        {
            double alloc = r.AllocatedClusters * 100.0 / r.TotalClusters;
            double frag = r.FragmentedClusters * 100.0 / r.AllocatedClusters;
            double comp = r.CompressedClusters * 100.0 / r.AllocatedClusters;
            sb.Append(r.AllocatedClusters.ToString(inv)).Append('/').Append(r.TotalClusters.ToString(inv))
              .Append(" = ").Append(NumberFormat.Fixed(alloc, 2)).Append("% allocated, ")
              .Append(NumberFormat.Fixed(frag, 2)).Append("% fragmented, ")
              .Append(NumberFormat.Fixed(comp, 2)).Append("% compressed clusters\n");
        }
        if (r.ImageEndOffset is { } end)
            sb.Append("Image end offset: ").Append(end.ToString(inv)).Append('\n');
        return sb.ToString();
    }
}

/// <summary>measure's output.</summary>
internal static class MeasureFormatter
{
    public static string Json(long required, long fullyAllocated, long? bitmaps)
    {
        var d = new QDict(KeyOrder.Measure).Add("required", required).Add("fully-allocated", fullyAllocated);
        if (bitmaps is { } b) d.Add("bitmaps", b);
        return QJson.ToPrettyJson(d) + "\n";
    }

    public static string Human(long required, long fullyAllocated, long? bitmaps)
    {
        var inv = CultureInfo.InvariantCulture;
        var s = "required size: " + required.ToString(inv) + "\n" +
                "fully allocated size: " + fullyAllocated.ToString(inv) + "\n";
        if (bitmaps is { } b) s += "bitmaps size: " + b.ToString(inv) + "\n";
        return s;
    }
}
