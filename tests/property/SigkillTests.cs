using System.Diagnostics;
using Qcow2.CrashWriter;
using Qcow2.Property.Tests.Model;
using Qcow2.Tests.Shared;
using Xunit.Abstractions;

namespace Qcow2.Property.Tests;

/// <summary>
/// A real process writing to an image is killed with SIGKILL mid-workload: qemu-img check finds no
/// corruption (leaks are allowed), and what the writer reported flushed reads back through
/// <c>qemu-img convert</c>.
/// </summary>
public class SigkillTests(ITestOutputHelper output)
{
    private const long Size = 4 << 20;
    private const int ClusterSize = 4096;

    [Fact]
    public void WriterProcess_KilledWithSigkill_LeavesNoCorruptionAndKeepsFlushedData()
    {
        var rounds = 3;
        for (var round = 0; round < rounds; round++)
        {
            var seed = 1000 + round;
            using var dir = new TempDir();
            var path = dir.File("killed.qcow2");
            QemuTools.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size={ClusterSize}", path, Size.ToString(System.Globalization.CultureInfo.InvariantCulture));

            var flushed = RunAndKill(path, seed, waitForFlushes: 20 + round * 15);
            output.WriteLine($"round {round}: seed {seed}, killed after {flushed} durable operations");

            var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "check", "-f", "qcow2", path);
            Assert.True(code is 0 or 3, $"qemu-img check after SIGKILL (seed {seed}) exited {code}:{Environment.NewLine}{stdout}{stderr}");

            // What was flushed must be there, except where later operations (that may have run) wrote.
            var ops = Workload.Ops(seed, Size, ClusterSize).Take(flushed + 4 * Workload.FlushInterval).ToArray();
            var model = new ReferenceDisk(Size);
            foreach (var op in ops.Take(flushed))
            {
                switch (op.Kind)
                {
                    case WorkloadOpKind.Write: model.Write(op.Offset, op.Data()); break;
                    case WorkloadOpKind.WriteZeroes: model.WriteZeroes(op.Offset, op.Length); break;
                    case WorkloadOpKind.Discard: model.Discard(op.Offset, op.Length); break;
                }
            }
            var maybeRan = ops.Skip(flushed).Where(o => o.Kind != WorkloadOpKind.Flush).ToArray();
            var raw = dir.File("killed.raw");
            QemuTools.Img("convert", "-f", "qcow2", "-O", "raw", path, raw);
            var mismatch = model.Verify(0, File.ReadAllBytes(raw), o => maybeRan.Any(r => o >= r.Offset && o - r.Offset < r.Length));
            Assert.True(mismatch is null, $"seed {seed}: flushed data lost: {mismatch}");
        }
    }

    /// <summary>Starts the writer, waits until it reports <paramref name="waitForFlushes"/> operations durable, kills it; returns the last count it reported.</summary>
    private static int RunAndKill(string path, int seed, int waitForFlushes)
    {
        var writer = Path.Combine(AppContext.BaseDirectory, "CrashWriter.dll");
        Assert.True(File.Exists(writer), $"the writer is not built next to the tests: {writer}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(writer);
        psi.ArgumentList.Add(path);
        psi.ArgumentList.Add(seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var process = Process.Start(psi)!;
        var last = 0;
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            var deadline = Stopwatch.StartNew();
            while (last < waitForFlushes)
            {
                var line = process.StandardOutput.ReadLine();
                if (line is null)
                    throw new InvalidOperationException($"the writer exited early ({(process.WaitForExit(5000) ? process.ExitCode : -1)}): {stderr.Result}");
                if (line.StartsWith("flushed ", StringComparison.Ordinal)) last = int.Parse(line.AsSpan(8), System.Globalization.CultureInfo.InvariantCulture);
                if (deadline.Elapsed > TimeSpan.FromMinutes(1)) throw new TimeoutException("the writer made no progress in a minute");
            }
        }
        finally
        {
            // Process.Kill sends SIGKILL on Linux: no finally blocks, no flush, no close in the writer.
            process.Kill();
            process.WaitForExit();
        }
        // Lines already written before the kill may still be in the pipe.
        string? rest;
        while ((rest = process.StandardOutput.ReadLine()) is not null)
            if (rest.StartsWith("flushed ", StringComparison.Ordinal)) last = int.Parse(rest.AsSpan(8), System.Globalization.CultureInfo.InvariantCulture);
        return last;
    }
}
