using System.Diagnostics;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Chain;

namespace Qcow2.Volume.Tests.Operations;

/// <summary>Images made by qemu-img and qemu-io for the operation tests, in one temporary directory.</summary>
internal sealed class OperationImages : IDisposable
{
    private readonly TempDir _dir = new();

    public string Dir => _dir.Path;

    public string File(string name) => _dir.File(name);

    public void Dispose() => _dir.Dispose();

    /// <summary>Runs qemu-img in the directory (so relative names are as qemu-img shows them) and returns stdout.</summary>
    public string Img(params string[] args) => Run(QemuTools.QemuImg, args, expectSuccess: true).StdOut;

    public (int ExitCode, string StdOut, string StdErr) ImgRaw(params string[] args) => Run(QemuTools.QemuImg, args, expectSuccess: false);

    public void Io(string name, string format, params string[] commands)
    {
        var args = new List<string> { "-f", format };
        foreach (var c in commands) { args.Add("-c"); args.Add(c); }
        args.Add(name);
        var r = Run(QemuTools.QemuIo, args.ToArray(), expectSuccess: true);
        if (r.StdOut.Contains("failed", StringComparison.OrdinalIgnoreCase)) throw new InvalidOperationException(r.StdOut);
    }

    private (int ExitCode, string StdOut, string StdErr) Run(string tool, string[] args, bool expectSuccess)
    {
        var psi = new ProcessStartInfo(tool) { WorkingDirectory = Dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderrTask = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = stderrTask.Result;
        p.WaitForExit();
        if (expectSuccess && p.ExitCode != 0)
            throw new InvalidOperationException($"{tool} {string.Join(' ', args)} exited {p.ExitCode}: {stderr}{stdout}");
        return (p.ExitCode, stdout, stderr);
    }

    /// <summary>Opens an image read-only (trusting the files it names, like qemu-img).</summary>
    public IDiskImage Open(string name, string? format = null) =>
        DiskImage.Open(File(name), format, new DiskOpenOptions
        {
            ReadOnly = true,
            Qcow2 = new Qcow2OpenOptions { ExternalFilePolicy = ExternalFilePolicy.AllowAll },
        });

    /// <summary>
    /// A two-layer chain: base.qcow2 (4 MiB: data, a zero cluster) under top.qcow2 (8 MiB, larger
    /// than its backing: data, zero clusters with and without unmap).
    /// </summary>
    public void MakeChain()
    {
        Img("create", "-q", "-f", "qcow2", "base.qcow2", "4M");
        Io("base.qcow2", "qcow2", "write -P 1 0 1M", "write -z 2M 64k", "write -P 7 3M 100k");
        Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "8M");
        Io("top.qcow2", "qcow2", "write -P 2 512k 64k", "write -z 128k 64k", "write -z -u 3M 64k", "write -P 3 6M 192k");
    }
}
