using System.Diagnostics;
using System.Text;

namespace Qcow2.Tests.Shared;

/// <summary>
/// Runs qemu-img and qemu-io for interoperability tests. These tools are the oracle: when they
/// are missing the test fails loudly (.ci/run installs them), it never skips.
/// </summary>
internal static class QemuTools
{
    public static string QemuImg => Find("qemu-img");
    public static string QemuIo => Find("qemu-io");

    private static string Find(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        throw new InvalidOperationException(
            $"{name} is not installed; the interoperability tests need it (apt-get install -y qemu-utils, as .ci/run does).");
    }

    /// <summary>Runs a tool, returns (exit code, stdout, stderr).</summary>
    public static (int ExitCode, string StdOut, string StdErr) Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) stdout.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) stderr.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} {string.Join(' ', args)} did not finish in 5 minutes");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Runs qemu-img and throws when it fails.</summary>
    public static string Img(params string[] args)
    {
        var (code, stdout, stderr) = Run(QemuImg, args);
        if (code != 0)
            throw new InvalidOperationException($"qemu-img {string.Join(' ', args)} exited {code}: {stderr}{stdout}");
        return stdout;
    }

    /// <summary>
    /// qemu-img create of a LUKS-encrypted qcow2 image (secret "pw", object id s0). QEMU calibrates
    /// PBKDF2 by timing a first round of iterations with the thread CPU clock; on these machines
    /// that round often measures 0 ms with SHA-256 and creation fails with "Unable to get accurate
    /// CPU usage". SHA-512 makes the round long enough; that one failure is still retried.
    /// </summary>
    public static void CreateLuksImage(string path, string size, string extraOptions = "")
    {
        string options = "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=50,encrypt.hash-alg=sha512" + extraOptions;
        for (int attempt = 1; ; attempt++)
        {
            var (code, stdout, stderr) = Run(QemuImg, "create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=pw", "-o", options, path, size);
            if (code == 0) return;
            if (attempt == 10 || !stderr.Contains("Unable to get accurate CPU usage", StringComparison.Ordinal))
                throw new InvalidOperationException($"qemu-img create (LUKS) exited {code}: {stdout}{stderr}");
        }
    }

    /// <summary>The qemu-img/qemu-io arguments that open an encrypted qcow2 file with <paramref name="secret"/> (object id sec0).</summary>
    public static string[] EncryptedImageArgs(string file, string secret) =>
        ["--object", $"secret,id=sec0,data={secret}", "--image-opts", $"driver=qcow2,file.filename={file},encrypt.key-secret=sec0"];

    /// <summary>qemu-io on an encrypted qcow2 file opened with its secret; throws when it fails.</summary>
    public static string IoEncrypted(string file, string secret, params string[] commands)
    {
        var args = new List<string>(EncryptedImageArgs(file, secret));
        foreach (var c in commands) { args.Add("-c"); args.Add(c); }
        var (code, stdout, stderr) = Run(QemuIo, args.ToArray());
        if (code != 0 || stdout.Contains("failed", StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException($"qemu-io {string.Join(' ', args)} exited {code}: {stderr}{stdout}");
        return stdout;
    }

    /// <summary>The guest content of an encrypted qcow2 file as qemu-img convert to raw sees it.</summary>
    public static byte[] ReadEncryptedWithQemu(string file, string secret)
    {
        string raw = file + ".qemu.raw";
        var args = new List<string> { "convert" };
        args.AddRange(EncryptedImageArgs(file, secret));
        args.AddRange(["-O", "raw", raw]);
        Img(args.ToArray());
        try { return File.ReadAllBytes(raw); }
        finally { File.Delete(raw); }
    }

    /// <summary>qemu-img check of an encrypted qcow2 file opened with its secret: (exit code, output).</summary>
    public static (int ExitCode, string Output) CheckEncrypted(string file, string secret)
    {
        var args = new List<string> { "check" };
        args.AddRange(EncryptedImageArgs(file, secret));
        var (code, stdout, stderr) = Run(QemuImg, args.ToArray());
        return (code, stdout + stderr);
    }

    /// <summary>Runs qemu-io with the given commands against a file and throws when it fails.</summary>
    public static string Io(string file, string format, params string[] commands)
    {
        var args = new List<string> { "-f", format };
        foreach (var c in commands) { args.Add("-c"); args.Add(c); }
        args.Add(file);
        var (code, stdout, stderr) = Run(QemuIo, args.ToArray());
        if (code != 0 || stdout.Contains("failed", StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException($"qemu-io {string.Join(' ', args)} exited {code}: {stderr}{stdout}");
        return stdout;
    }
}

/// <summary>A temporary directory removed when disposed.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "qcow2t-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
