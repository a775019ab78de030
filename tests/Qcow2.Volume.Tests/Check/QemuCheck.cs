using System.Text.Json;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Check;

namespace Qcow2.Volume.Tests.Check;

/// <summary>The numbers of one qemu-img check run, parsed from its JSON output.</summary>
internal sealed record QemuCheckReport(
    int ExitCode, bool Failed, long Corruptions, long Leaks, long CheckErrors, long CorruptionsFixed, long LeaksFixed,
    long TotalClusters, long AllocatedClusters, long FragmentedClusters, long CompressedClusters, long ImageEndOffset, string StdErr)
{
    /// <summary>Runs <c>qemu-img check --output=json [-r mode]</c> on a file.</summary>
    public static QemuCheckReport Run(string path, RepairMode repair = RepairMode.None)
    {
        var args = new List<string> { "check", "--output=json", "-f", "qcow2" };
        if (repair != RepairMode.None) { args.Add("-r"); args.Add(repair == RepairMode.All ? "all" : "leaks"); }
        args.Add(path);
        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, args.ToArray());
        if (string.IsNullOrWhiteSpace(stdout))
            return new QemuCheckReport(code, true, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        long Get(string name) => root.TryGetProperty(name, out var v) ? v.GetInt64() : 0;
        return new QemuCheckReport(code, false, Get("corruptions"), Get("leaks"), Get("check-errors"),
            Get("corruptions-fixed"), Get("leaks-fixed"), Get("total-clusters"), Get("allocated-clusters"),
            Get("fragmented-clusters"), Get("compressed-clusters"), Get("image-end-offset"), stderr);
    }

    /// <summary>The same fields of our result, for a whole-record comparison in assertions.</summary>
    public static QemuCheckReport From(CheckResult r, string stderr = "") =>
        new(r.ExitCode, r.FailureMessage is not null, r.Corruptions, r.Leaks, r.CheckErrors, r.CorruptionsFixed, r.LeaksFixed,
            r.TotalClusters, r.AllocatedClusters, r.FragmentedClusters, r.CompressedClusters, r.ImageEndOffset, stderr);

    /// <summary>The fields qemu-img prints (a failed check prints none of them).</summary>
    public string Numbers(bool withImageEnd = true) => Failed
        ? "check failed"
        : $"corruptions={Corruptions} leaks={Leaks} check-errors={CheckErrors} corruptions-fixed={CorruptionsFixed} leaks-fixed={LeaksFixed} " +
          $"total={TotalClusters} allocated={AllocatedClusters} fragmented={FragmentedClusters} compressed={CompressedClusters}" +
          (withImageEnd ? $" end={ImageEndOffset}" : "");
}
