using Qcow2.Tests.Shared;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Check;

/// <summary>Builds images with qemu-img/qemu-io and runs both checkers on copies of them.</summary>
internal static class CheckHarness
{
    /// <summary>
    /// A small image with normal, zero, compressed and (optionally) snapshot-shared clusters, made
    /// by qemu itself. <paramref name="createOptions"/> go to qemu-img create -o.
    /// </summary>
    public static string MakeImage(TempDir dir, string name, string createOptions, bool snapshot = true, bool compressed = true)
    {
        // qemu builds each kind of image once per test run; tests damage their own copies.
        string key = $"{createOptions}|{snapshot}|{compressed}";
        string template = Templates.GetOrAdd(key, _ => new Lazy<string>(() =>
            Build(TemplateDir.File($"t{Templates.Count}-{Guid.NewGuid():N}.qcow2"), createOptions, snapshot, compressed))).Value;
        return Copy(dir, template, name);
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<string>> Templates = new();
    private static readonly TempDir TemplateDir = CreateTemplateDir();

    private static TempDir CreateTemplateDir()
    {
        var dir = new TempDir();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => dir.Dispose();
        return dir;
    }

    private static string Build(string path, string createOptions, bool snapshot, bool compressed)
    {
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o", createOptions, path, "32M");
        var commands = new List<string> { "write -P 1 0 1M", "write -P 2 5M 300k", "write -P 5 9M 64k" };
        if (!createOptions.Contains("compat=0.10")) commands.Add("write -z 8M 1M");
        // Compressed writes must cover whole clusters.
        if (compressed) commands.Add(createOptions.Contains("cluster_size=2097152") ? "write -c -P 3 20M 2M" : "write -c -P 3 20M 128k");
        QemuTools.Io(path, "qcow2", commands.ToArray());
        if (snapshot)
        {
            QemuTools.Img("snapshot", "-c", "s1", path);
            QemuTools.Io(path, "qcow2", "write -P 4 512k 100k");
        }
        return path;
    }

    public static string Copy(TempDir dir, string source, string name)
    {
        string path = dir.File(name);
        File.Copy(source, path, overwrite: true);
        return path;
    }

    /// <summary>Runs our checker on a file.</summary>
    public static CheckResult OurCheck(string path, RepairMode repair = RepairMode.None, IProgress<double>? progress = null)
    {
        using var storage = FileStorage.Open(path, writable: repair != RepairMode.None);
        return Qcow2Checker.Check(storage, new CheckOptions { Repair = repair, Progress = progress });
    }

    /// <summary>The guest contents as qemu-img reads them (convert to raw).</summary>
    public static byte[] ReadRaw(TempDir dir, string path) =>
        TryReadRaw(dir, path, out string error) ?? throw new InvalidOperationException(error);

    /// <summary>The guest contents as qemu-img reads them, or null when qemu-img cannot read the image.</summary>
    public static byte[]? TryReadRaw(TempDir dir, string path, out string error)
    {
        string raw = dir.File(Path.GetFileName(path) + "-" + Guid.NewGuid().ToString("N")[..6] + ".raw");
        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "convert", "-f", "qcow2", "-O", "raw", path, raw);
        error = stderr + stdout;
        if (code != 0) return null;
        var bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }

    /// <summary>
    /// Asserts that <paramref name="repaired"/> equals <paramref name="original"/> except within at most
    /// one guest cluster, which reads as zeros (an entry that could not be valid was dropped).
    /// </summary>
    public static void AssertEqualExceptOneZeroedCluster(byte[] original, byte[] repaired, int clusterSize)
    {
        Assert.Equal(original.Length, repaired.Length);
        long differingCluster = -1;
        for (int i = 0; i < original.Length; i++)
        {
            if (original[i] == repaired[i]) continue;
            long cluster = i / clusterSize;
            Assert.True(differingCluster < 0 || differingCluster == cluster, $"bytes differ in clusters {differingCluster} and {cluster}");
            differingCluster = cluster;
            Assert.Equal(0, repaired[i]);
        }
    }
}
