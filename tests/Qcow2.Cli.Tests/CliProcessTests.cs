using System.Diagnostics;
using System.Text;
using Qcow2.Tests.Shared;

namespace Qcow2.Cli.Tests;

/// <summary>Runs the built qcow2.dll (copied next to the tests) as a process, in a chosen directory.</summary>
internal static class Cli
{
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "qcow2.dll");

    public static (int Code, string Out, string Err) Run(string workDir, params string[] args) =>
        RunTool("dotnet", workDir, new[] { Dll }.Concat(args).ToArray());

    public static (int Code, string Out, string Err) Qemu(string workDir, params string[] args) =>
        RunTool(QemuTools.QemuImg, workDir, args);

    public static (int Code, string Out, string Err) RunWithInput(string workDir, string input, params string[] args) =>
        RunTool("dotnet", workDir, new[] { Dll }.Concat(args).ToArray(), input);

    public static (int Code, string Out, string Err) RunTool(string tool, string workDir, string[] args, string input = "")
    {
        var psi = new ProcessStartInfo(tool)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workDir,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.Write(input);
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} {string.Join(' ', args)} did not finish");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>qemu-img must succeed (test setup).</summary>
    public static string QemuOk(string workDir, params string[] args)
    {
        var (code, o, e) = Qemu(workDir, args);
        if (code != 0) throw new InvalidOperationException($"qemu-img {string.Join(' ', args)}: {code} {e}");
        return o;
    }

    public static void QemuIo(string workDir, string file, params string[] commands)
    {
        var args = new List<string> { "-f", "qcow2" };
        foreach (var c in commands) { args.Add("-c"); args.Add(c); }
        args.Add(file);
        var (code, o, e) = RunTool(QemuTools.QemuIo, workDir, args.ToArray());
        if (code != 0 || o.Contains("failed", StringComparison.Ordinal))
            throw new InvalidOperationException($"qemu-io {string.Join(' ', args)}: {code} {o}{e}");
    }
}

/// <summary>Images made by qemu-img/qemu-io for the interoperability tests.</summary>
internal sealed class QemuImages : IDisposable
{
    public TempDir Dir { get; } = new();

    public string Path => Dir.Path;

    public QemuImages()
    {
        Cli.QemuOk(Path, "create", "-q", "-f", "qcow2", "base.qcow2", "64M");
        Cli.QemuIo(Path, "base.qcow2", "write -P 0xab 0 1M", "write -z 2M 64k", "write -c -P 0x11 4M 64k", "write -P 0x22 10M 4k");
        Cli.QemuOk(Path, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "overlay.qcow2");
        Cli.QemuIo(Path, "overlay.qcow2", "write -P 0x33 512k 128k");
        Cli.QemuOk(Path, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k,refcount_bits=8,lazy_refcounts=on,compression_type=zstd", "small.qcow2", "8M");
        Cli.QemuIo(Path, "small.qcow2", "write -P 0x44 4k 20k");
        Cli.QemuOk(Path, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "v2.qcow2", "16M");
        Cli.QemuOk(Path, "create", "-q", "-f", "qcow2", "-o", "extended_l2=on,data_file=ext.data", "ext.qcow2", "16M");
        Cli.QemuOk(Path, "snapshot", "-c", "snap1", "base.qcow2");
        Cli.QemuOk(Path, "bitmap", "--add", "base.qcow2", "bm0");
        Cli.QemuOk(Path, "create", "-q", "-f", "raw", "disk.raw", "4M");
    }

    public static readonly string[] Qcow2Images = { "base.qcow2", "overlay.qcow2", "small.qcow2", "v2.qcow2", "ext.qcow2" };

    public void Dispose() => Dir.Dispose();
}

public sealed class CliInteropTests : IClassFixture<CliInteropTests.Fixture>
{
    public sealed class Fixture : IDisposable
    {
        internal QemuImages Images { get; } = new();
        public void Dispose() => Images.Dispose();
    }

    private readonly QemuImages _images;

    public CliInteropTests(Fixture fixture) => _images = fixture.Images;

    private string P => _images.Path;

    public static IEnumerable<object[]> Qcow2Files() => QemuImages.Qcow2Images.Select(f => new object[] { f });

    // No field is excluded: actual-size is the file's st_blocks, which both tools read from the
    // same file; date-sec/date-nsec come from the same snapshot table.
    [Theory]
    [MemberData(nameof(Qcow2Files))]
    [InlineData("disk.raw")]
    public void Info_Json_EqualsQemuImg(string file)
    {
        var ours = Cli.Run(P, "info", "--output=json", file);
        var qemu = Cli.Qemu(P, "info", "--output=json", file);
        Assert.Equal(0, ours.Code);
        Assert.Equal(qemu.Out, ours.Out);
    }

    [Fact]
    public void Info_BackingChainJsonAndHuman_EqualQemuImg()
    {
        foreach (var args in new[] { new[] { "info", "--backing-chain", "--output=json", "overlay.qcow2" }, new[] { "info", "--backing-chain", "overlay.qcow2" }, new[] { "info", "base.qcow2" } })
        {
            var ours = Cli.Run(P, args);
            var qemu = Cli.Qemu(P, args);
            Assert.Equal(0, ours.Code);
            Assert.Equal(qemu.Out, ours.Out);
        }
    }

    [Fact]
    public void Info_OverlayWithMissingBacking_EqualsQemuImgAndBackingChainFailsAsQemuImg()
    {
        using var dir = new TempDir();
        Cli.QemuOk(dir.Path, "create", "-f", "qcow2", "gone.qcow2", "16M");
        Cli.QemuOk(dir.Path, "create", "-f", "qcow2", "-b", "gone.qcow2", "-F", "qcow2", "mid.qcow2");
        Cli.QemuOk(dir.Path, "create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2");
        File.Delete(Path.Combine(dir.Path, "gone.qcow2"));
        foreach (var args in new[]
        {
            new[] { "info", "mid.qcow2" }, new[] { "info", "--output=json", "mid.qcow2" }, new[] { "info", "top.qcow2" },
            new[] { "info", "--backing-chain", "mid.qcow2" }, new[] { "info", "--backing-chain", "--output=json", "top.qcow2" },
            new[] { "info", "--backing-chain", Path.Combine(dir.Path, "top.qcow2") },
        })
        {
            var ours = Cli.Run(dir.Path, args);
            var qemu = Cli.Qemu(dir.Path, args);
            Assert.Equal(qemu.Code, ours.Code);
            Assert.Equal(qemu.Out, ours.Out);
            Assert.Equal(qemu.Err.Replace("qemu-img: ", "qcow2: ", StringComparison.Ordinal), ours.Err);
        }
    }

    [Fact]
    public void Info_LuksImage_EqualsQemuImgAndCheckMapMatchQemuWithKey()
    {
        using var dir = new TempDir();
        QemuTools.CreateLuksImage(dir.File("l.qcow2"), "16M");
        Cli.QemuOk(dir.Path, "create", "-f", "qcow2", "--object", "secret,id=s0,data=pw", "-o", "encrypt.format=aes,encrypt.key-secret=s0", "aes.qcow2", "16M");
        foreach (var args in new[]
        {
            new[] { "info", "l.qcow2" }, new[] { "info", "--output=json", "l.qcow2" },
            new[] { "info", "aes.qcow2" }, new[] { "info", "--output=json", "aes.qcow2" },
        })
        {
            var ours = Cli.Run(dir.Path, args);
            var qemu = Cli.Qemu(dir.Path, args);
            Assert.Equal(0, ours.Code);
            Assert.Equal(qemu.Out, ours.Out);
        }
        // qemu-img needs the key to open the image for check and map; we read the metadata without it.
        foreach (var cmd in new[] { new[] { "check" }, new[] { "map", "--output=json" } })
        {
            var ours = Cli.Run(dir.Path, cmd.Append("l.qcow2").ToArray());
            var qemu = Cli.Qemu(dir.Path, cmd.Concat(new[] { "--object", "secret,id=s0,data=pw", "--image-opts", "driver=qcow2,file.filename=l.qcow2,encrypt.key-secret=s0" }).ToArray());
            Assert.Equal(qemu.Code, ours.Code);
            Assert.Equal(qemu.Out, ours.Out);
        }
    }

    [Theory]
    [MemberData(nameof(Qcow2Files))]
    public void Map_Json_EqualsQemuImg(string file)
    {
        var ours = Cli.Run(P, "map", "--output=json", file);
        var qemu = Cli.Qemu(P, "map", "--output=json", file);
        Assert.Equal(0, ours.Code);
        Assert.Equal(qemu.Out, ours.Out);
    }

    [Theory]
    [MemberData(nameof(Qcow2Files))]
    public void Map_Human_EqualsQemuImg(string file)
    {
        var ours = Cli.Run(P, "map", file);
        var qemu = Cli.Qemu(P, "map", file);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(qemu.Out, ours.Out);
    }

    [Fact]
    public void Map_RangeAndHuman_EqualQemuImg()
    {
        var ours = Cli.Run(P, "map", "--output=json", "--start-offset=1000", "--max-length=3M", "overlay.qcow2");
        var qemu = Cli.Qemu(P, "map", "--output=json", "--start-offset=1000", "--max-length=3M", "overlay.qcow2");
        Assert.Equal(qemu.Out, ours.Out);
        // Human output of an image holding a compressed cluster: the same lines, then the same refusal (exit 1).
        ours = Cli.Run(P, "map", "base.qcow2");
        qemu = Cli.Qemu(P, "map", "base.qcow2");
        Assert.Equal(qemu.Out, ours.Out);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal("qcow2: File contains external, encrypted or compressed clusters.\n", ours.Err);
    }

    [Theory]
    [InlineData("--size", "1G", "-O", "qcow2")]
    [InlineData("--size", "100G", "-O", "qcow2", "-o", "cluster_size=4k,refcount_bits=1")]
    [InlineData("-O", "qcow2", "base.qcow2")]
    [InlineData("-O", "qcow2", "v2.qcow2")]
    [InlineData("-O", "qcow2", "overlay.qcow2")]
    [InlineData("-O", "qcow2", "-o", "cluster_size=16k,extended_l2=on", "small.qcow2")]
    [InlineData("-O", "qcow2", "-o", "preallocation=full", "small.qcow2")]
    [InlineData("base.qcow2")]
    public void Measure_JsonAndHuman_EqualQemuImg(params string[] args)
    {
        foreach (var output in new[] { "--output=json", "--output=human" })
        {
            var full = new[] { "measure", output }.Concat(args).ToArray();
            var ours = Cli.Run(P, full);
            var qemu = Cli.Qemu(P, full);
            Assert.Equal(0, ours.Code);
            Assert.Equal(qemu.Out, ours.Out);
        }
    }

    [Theory]
    [InlineData("-c")]
    [InlineData("-S", "0")]
    [InlineData("-t", "writeback")]
    [InlineData("-t", "unsafe", "-c")]
    public void Convert_ToQcow2_QemuSaysIdenticalAndClean(params string[] flags)
    {
        string target = "conv" + string.Join("", flags).Replace("-", "_") + ".qcow2";
        var args = new[] { "convert", "-O", "qcow2" }.Concat(flags).Concat(new[] { "overlay.qcow2", target }).ToArray();
        var ours = Cli.Run(P, args);
        Assert.True(ours.Code == 0, ours.Err);
        var cmp = Cli.Qemu(P, "compare", "overlay.qcow2", target);
        Assert.Equal("Images are identical.\n", cmp.Out);
        Assert.Equal(0, cmp.Code);
        var check = Cli.Qemu(P, "check", target);
        Assert.Equal(0, check.Code);
    }

    [Fact]
    public void Convert_SeveralSourcesToRaw_Concatenates()
    {
        var ours = Cli.Run(P, "convert", "small.qcow2", "disk.raw", "cat.raw");
        Assert.True(ours.Code == 0, ours.Err);
        Assert.Equal((8L << 20) + (4L << 20), new FileInfo(System.IO.Path.Combine(P, "cat.raw")).Length);
        // The first 8 MiB equal small.qcow2.
        var cmp = Cli.Qemu(P, "compare", "-f", "qcow2", "-F", "raw", "small.qcow2", "cat.raw");
        Assert.Equal(0, cmp.Code);
    }

    [Fact]
    public void Convert_WithBackingFile_OnlyTopLayerCopiedAndContentsEqual()
    {
        var ours = Cli.Run(P, "convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", "overlay.qcow2", "rebased.qcow2");
        Assert.True(ours.Code == 0, ours.Err);
        Assert.Equal(0, Cli.Qemu(P, "compare", "overlay.qcow2", "rebased.qcow2").Code);
        Assert.Equal(0, Cli.Qemu(P, "check", "rebased.qcow2").Code);
        var info = Cli.QemuOk(P, "info", "--output=json", "rebased.qcow2");
        Assert.Contains("\"backing-filename\": \"base.qcow2\"", info);
        // Only the overlay's own 128 KiB were written: the base's data stays in the backing file.
        var map = Cli.QemuOk(P, "map", "--output=json", "rebased.qcow2");
        Assert.Contains("{ \"start\": 524288, \"length\": 131072, \"depth\": 0, \"present\": true, \"zero\": false, \"data\": true", map);
        Assert.Contains("{ \"start\": 0, \"length\": 524288, \"depth\": 1,", map);
    }

    [Fact]
    public void Convert_NoCreateTargetIsZero_WritesIntoExistingImage()
    {
        Cli.QemuOk(P, "create", "-q", "-f", "qcow2", "existing.qcow2", "64M");
        var ours = Cli.Run(P, "convert", "-n", "--target-is-zero", "-O", "qcow2", "overlay.qcow2", "existing.qcow2");
        Assert.True(ours.Code == 0, ours.Err);
        Assert.Equal(0, Cli.Qemu(P, "compare", "overlay.qcow2", "existing.qcow2").Code);
        Assert.Equal(0, Cli.Qemu(P, "check", "existing.qcow2").Code);
        // --target-is-zero without -n is refused, as by qemu-img.
        Assert.Equal(1, Cli.Run(P, "convert", "--target-is-zero", "-O", "qcow2", "overlay.qcow2", "never.qcow2").Code);
    }

    [Fact]
    public void Convert_Snapshot_CopiesTheSnapshotContents()
    {
        // snap1 was taken before the bitmap; writing after it makes the active layer differ.
        Cli.QemuOk(P, "convert", "-O", "qcow2", "base.qcow2", "snapsrc.qcow2");
        Cli.QemuOk(P, "snapshot", "-c", "before", "snapsrc.qcow2");
        Cli.QemuIo(P, "snapsrc.qcow2", "write -P 0x99 0 64k");
        var ours = Cli.Run(P, "convert", "-l", "snapshot.name=before", "-O", "qcow2", "snapsrc.qcow2", "fromsnap.qcow2");
        Assert.True(ours.Code == 0, ours.Err);
        Assert.Equal(0, Cli.Qemu(P, "compare", "base.qcow2", "fromsnap.qcow2").Code);
        Assert.Equal(1, Cli.Qemu(P, "compare", "snapsrc.qcow2", "fromsnap.qcow2").Code);

        // A snapshot that does not exist: qemu-img's message and exit code, for convert and measure.
        foreach (var args in new[]
        {
            new[] { "convert", "-l", "snapshot.name=nosuch", "-O", "qcow2", "snapsrc.qcow2", "nosnap.qcow2" },
            new[] { "measure", "-l", "snapshot.name=nosuch", "-O", "qcow2", "snapsrc.qcow2" },
        })
        {
            var mine = Cli.Run(P, args);
            var qemu = Cli.Qemu(P, args);
            Assert.Equal(qemu.Code, mine.Code);
            Assert.Equal("qcow2: Failed to load snapshot: Can't find snapshot\n", mine.Err);
            Assert.Equal(qemu.Err.Replace("qemu-img: ", "qcow2: ", StringComparison.Ordinal), mine.Err);
        }
    }

    [Fact]
    public void Convert_ProgressWithRedirectedOutput_PrintsNothing()
    {
        var ours = Cli.Run(P, "convert", "-p", "-O", "qcow2", "small.qcow2", "quiet.qcow2");
        Assert.Equal(0, ours.Code);
        Assert.Equal("", ours.Out);
        Assert.Equal("", ours.Err);
    }

    [Theory]
    [InlineData("base.qcow2")]
    [InlineData("overlay.qcow2")]
    [InlineData("small.qcow2")]
    public void IoMap_EqualsQemuIo(string file)
    {
        var ours = Cli.Run(P, "io", "-r", "-c", "map", file);
        var qemu = Cli.RunTool(QemuTools.QemuIo, P, new[] { "-r", "-c", "map", file });
        Assert.Equal(0, ours.Code);
        Assert.Equal(qemu.Out, ours.Out);
    }

    [Fact]
    public void IoRead_PatternAndDump_EqualQemuIoApartFromTiming()
    {
        string[] cmds = { "read -P 0xab 0 4k", "read -P 0xac 512 1k", "read -v 1M-16 40", "read -P 0x22 10M 4k" };
        var args = cmds.SelectMany(c => new[] { "-c", c.Replace("1M-16", "1048560") }).ToArray();
        var ours = Cli.Run(P, new[] { "io", "-r" }.Concat(args).Append("base.qcow2").ToArray());
        var qemu = Cli.RunTool(QemuTools.QemuIo, P, new[] { "-r" }.Concat(args).Append("base.qcow2").ToArray());
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(StripTiming(qemu.Out), StripTiming(ours.Out));
    }

    // The statistics line holds times and rates; everything up to "ops;" is deterministic.
    private static string StripTiming(string s) =>
        string.Join("\n", s.Split('\n').Select(l => l.Contains(" ops; ", StringComparison.Ordinal) ? l[..l.IndexOf(" ops; ", StringComparison.Ordinal)] : l));

    [Theory]
    [InlineData("base.qcow2", "overlay.qcow2")]
    [InlineData("base.qcow2", "base.qcow2")]
    [InlineData("small.qcow2", "disk.raw")]
    [InlineData("v2.qcow2", "disk.raw")]
    [InlineData("base.qcow2", "missing.qcow2")]
    public void Compare_ExitCodeAndMessage_AgreeWithQemuImg(string a, string b)
    {
        var ours = Cli.Run(P, "compare", a, b);
        var qemu = Cli.Qemu(P, "compare", a, b);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(qemu.Out, ours.Out);
        var oursStrict = Cli.Run(P, "compare", "-s", a, b);
        var qemuStrict = Cli.Qemu(P, "compare", "-s", a, b);
        Assert.Equal(qemuStrict.Code, oursStrict.Code);
        Assert.Equal(qemuStrict.Out, oursStrict.Out);
    }

    [Theory]
    [MemberData(nameof(Qcow2Files))]
    [InlineData("disk.raw")]
    public void Check_ReportAndExitCode_EqualQemuImg(string file)
    {
        foreach (var output in new[] { "--output=human", "--output=json" })
        {
            var ours = Cli.Run(P, "check", output, file);
            var qemu = Cli.Qemu(P, "check", output, file);
            Assert.Equal(qemu.Code, ours.Code);
            Assert.Equal(qemu.Out, ours.Out);
        }
    }
}

public sealed class CliCheckRepairTests
{
    /// <summary>A one-cluster image whose refcount block is patched: refcount of cluster <paramref name="cluster"/> set to <paramref name="value"/>.</summary>
    private static string MakePatched(TempDir dir, string name, int cluster, ushort value)
    {
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", name, "1M");
        Cli.QemuIo(dir.Path, name, "write 0 64k");
        Patch(dir, name, cluster, value);
        return name;
    }

    private static void Patch(TempDir dir, string name, int cluster, ushort value)
    {
        string path = dir.File(name);
        var bytes = File.ReadAllBytes(path);
        // The refcount table's offset is at header byte 48; its first entry points to block 0.
        long table = (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(48));
        long block = (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)table));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan((int)block + 2 * cluster), value);
        File.WriteAllBytes(path, bytes);
    }

    [Fact]
    public void CheckRepairLeaks_LeakAndCorruption_CheckFailsWithExitOneLikeQemuImg()
    {
        using var dir = new TempDir();
        MakePatched(dir, "a.qcow2", 0, 2);
        Patch(dir, "a.qcow2", 5, 0);
        File.Copy(dir.File("a.qcow2"), dir.File("b.qcow2"));
        var ours = Cli.Run(dir.Path, "check", "-r", "leaks", "a.qcow2");
        var qemu = Cli.Qemu(dir.Path, "check", "-r", "leaks", "b.qcow2");
        Assert.Equal(1, qemu.Code);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Contains("qcow2: Check failed: ", ours.Err);
        // Without repair the same image reports its corruptions (exit 2) in both tools.
        Assert.Equal(Cli.Qemu(dir.Path, "check", "b.qcow2").Code, Cli.Run(dir.Path, "check", "a.qcow2").Code);
    }

    [Theory]
    [InlineData(0, (ushort)2)]   // refcount above the references: a leak (exit 3)
    [InlineData(5, (ushort)0)]   // the data cluster's refcount dropped: corruption (exit 2)
    [InlineData(5, (ushort)1)]   // untouched value: clean (exit 0)
    public void Check_PatchedRefcount_ExitCodeAndJsonAgreeWithQemuImg(int cluster, ushort value)
    {
        using var dir = new TempDir();
        string f = MakePatched(dir, "p.qcow2", cluster, value);
        var ours = Cli.Run(dir.Path, "check", "--output=json", f);
        var qemu = Cli.Qemu(dir.Path, "check", "--output=json", f);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(qemu.Out, ours.Out);
    }

    [Fact]
    public void CheckRepairLeaks_LeakingImage_RepairedAndQemuAgrees()
    {
        using var dir = new TempDir();
        string f = MakePatched(dir, "l.qcow2", 0, 2);
        var ours = Cli.Run(dir.Path, "check", "-r", "leaks", f);
        Assert.Equal(0, ours.Code);
        Assert.StartsWith("The following inconsistencies were found and repaired:\n\n    1 leaked clusters\n    0 corruptions\n", ours.Out);
        Assert.Equal(0, Cli.Qemu(dir.Path, "check", f).Code);
    }
}

public sealed class CliBehaviourTests
{
    [Fact]
    public void Help_EveryCommand_ExitsZeroWithUsage()
    {
        using var dir = new TempDir();
        var top = Cli.Run(dir.Path, "--help");
        Assert.Equal(0, top.Code);
        foreach (var name in new[] { "info", "create", "convert", "map", "compare", "measure", "check", "io", "bench", "demo" })
        {
            Assert.Contains("  " + name + " ", top.Out);
            var r = Cli.Run(dir.Path, name, "--help");
            Assert.Equal(0, r.Code);
            Assert.StartsWith("usage: qcow2 " + name + " ", r.Out);
        }
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("truncated")]
    [InlineData("badclusterbits")]
    public void Info_MalformedImage_OneLineErrorNoStackTrace(string kind)
    {
        using var dir = new TempDir();
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "m.qcow2", "1M");
        var bytes = File.ReadAllBytes(dir.File("m.qcow2"));
        switch (kind)
        {
            case "garbage": bytes.AsSpan(4, 100).Fill(0xff); break;
            case "truncated": bytes = bytes[..40]; break;
            default: bytes[23] = 40; break; // cluster_bits = 40
        }
        File.WriteAllBytes(dir.File("m.qcow2"), bytes);
        string[][] commands =
        {
            new[] { "info", "-f", "qcow2", "m.qcow2" },
            new[] { "map", "-f", "qcow2", "m.qcow2" },
            new[] { "check", "-f", "qcow2", "m.qcow2" },
            new[] { "measure", "-f", "qcow2", "-O", "qcow2", "m.qcow2" },
            new[] { "compare", "-f", "qcow2", "-F", "qcow2", "m.qcow2", "m.qcow2" },
            new[] { "convert", "-f", "qcow2", "-O", "qcow2", "m.qcow2", "out.qcow2" },
            new[] { "io", "-f", "qcow2", "-c", "read 0 512", "m.qcow2" },
            new[] { "bench", "-f", "qcow2", "-c", "1", "m.qcow2" },
        };
        foreach (var args in commands)
        {
            var r = Cli.Run(dir.Path, args);
            Assert.NotEqual(0, r.Code);
            Assert.StartsWith("qcow2: ", r.Err);
            Assert.Single(r.Err.TrimEnd('\n').Split('\n'));
            Assert.DoesNotContain("   at ", r.Err);
        }
    }

    [Fact]
    public void Errors_MissingFileAndBadOption_OneLineAndQemuExitCodes()
    {
        using var dir = new TempDir();
        var r = Cli.Run(dir.Path, "info", "nope.qcow2");
        Assert.Equal(1, r.Code);
        Assert.Equal("qcow2: Could not open 'nope.qcow2': No such file or directory\n", r.Err);
        r = Cli.Run(dir.Path, "compare", "a", "b");
        Assert.Equal(2, r.Code);
        r = Cli.Run(dir.Path, "create", "-f", "qcow2", "x.qcow2", "12q");
        Assert.Equal(1, r.Code);
        Assert.StartsWith("qcow2: Invalid image size specified.", r.Err);
        r = Cli.Run(dir.Path, "nosuchcommand");
        Assert.Equal(1, r.Code);
    }

    [Fact]
    public void Create_UnsafeWithMissingBacking_SucceedsAsQemuImg()
    {
        using var dir = new TempDir();
        var ours = Cli.Run(dir.Path, "create", "-f", "qcow2", "-u", "-b", "missing.qcow2", "-F", "qcow2", "ours.qcow2", "1G");
        var qemu = Cli.Qemu(dir.Path, "create", "-f", "qcow2", "-u", "-b", "missing.qcow2", "-F", "qcow2", "qemu.qcow2", "1G");
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(0, ours.Code);
        Assert.Equal(qemu.Out.Replace("qemu.qcow2", "ours.qcow2", StringComparison.Ordinal), ours.Out);
        // The same header bytes as qemu-img's (the first cluster holds header, extensions and backing name).
        var a = File.ReadAllBytes(System.IO.Path.Combine(dir.Path, "ours.qcow2")).AsSpan(0, 65536).ToArray();
        var b = File.ReadAllBytes(System.IO.Path.Combine(dir.Path, "qemu.qcow2")).AsSpan(0, 65536).ToArray();
        Assert.Equal(b, a);
        // Without -u, the missing backing file is an error, and no image is left behind.
        var failed = Cli.Run(dir.Path, "create", "-f", "qcow2", "-b", "missing.qcow2", "-F", "qcow2", "bad.qcow2", "1G");
        Assert.Equal(1, failed.Code);
        Assert.False(File.Exists(System.IO.Path.Combine(dir.Path, "bad.qcow2")));
    }

    [Fact]
    public void CreateThenIo_WritesReadableByQemuIo()
    {
        using var dir = new TempDir();
        var c = Cli.Run(dir.Path, "create", "-f", "qcow2", "-o", "cluster_size=4k", "n.qcow2", "16M");
        Assert.Equal(0, c.Code);
        Assert.Equal("Formatting 'n.qcow2', fmt=qcow2 cluster_size=4096 extended_l2=off compression_type=zlib size=16777216 lazy_refcounts=off refcount_bits=16\n", c.Out);
        var io = Cli.Run(dir.Path, "io", "-c", "write -P 0x5a 1M 64k", "-c", "write -c -P 7 4M 4k", "-c", "read -P 0x5a 1M 64k", "-c", "read -P 1 1M 512", "n.qcow2");
        Assert.Equal(1, io.Code); // the last read's pattern does not match
        Assert.Contains("wrote 65536/65536 bytes at offset 1048576\n64 KiB, 1 ops; ", io.Out);
        Assert.Contains("Pattern verification failed at offset 1048576, 512 bytes\n", io.Out);
        Cli.QemuIo(dir.Path, "n.qcow2", "read -P 0x5a 1M 64k", "read -P 7 4M 4k", "read -P 0 0 1M");
        Assert.Equal(0, Cli.Qemu(dir.Path, "check", "n.qcow2").Code);
    }

    [Fact]
    public void Io_CommandsOnStdin_RunUntilQuit()
    {
        using var dir = new TempDir();
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "s.qcow2", "1M");
        var r = Cli.RunWithInput(dir.Path, "write -P 9 0 4k\nread -P 9 0 4k\nquit\nwrite -P 1 0 4k\n", "io", "s.qcow2");
        Assert.Equal(0, r.Code);
        Assert.Contains("wrote 4096/4096 bytes at offset 0\n", r.Out);
        Assert.Contains("read 4096/4096 bytes at offset 0\n", r.Out);
        // The write after quit did not run: qemu-io still reads the pattern 9.
        Cli.QemuIo(dir.Path, "s.qcow2", "read -P 9 0 4k");
    }

    [Fact]
    public void Bench_SmallRun_PrintsQemuSummaryAndCacheStatistics()
    {
        using var dir = new TempDir();
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "b.qcow2", "16M");
        var r = Cli.Run(dir.Path, "bench", "-w", "-c", "200", "-d", "4", "-s", "8k", "-o", "l2-cache-size=1M", "b.qcow2");
        Assert.Equal(0, r.Code);
        Assert.StartsWith("Sending 200 write requests, 8192 bytes each, 4 in parallel (starting at offset 0, step size 8192)\nRun completed in ", r.Out);
        Assert.Contains("L2 cache: ", r.Out);
        Assert.Equal(0, Cli.Qemu(dir.Path, "check", "b.qcow2").Code);
    }

    [Theory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public void CreateOptionsHelp_EveryLineAsQemuImgPrintsIt(string format)
    {
        using var dir = new TempDir();
        var ours = Cli.Run(dir.Path, "create", "-f", format, "-o", "help");
        var qemu = Cli.Qemu(dir.Path, "create", "-f", format, "-o", "help");
        Assert.Equal(0, ours.Code);
        var lines = ours.Out.TrimEnd('\n').Split('\n');
        Assert.Equal($"Supported {format} options:", lines[0]);
        foreach (var line in lines.Skip(1))
        {
            // raw's preallocation is a protocol-level option qemu-img lists only with a file name.
            if (format == "raw" && line.Contains("preallocation", StringComparison.Ordinal)) continue;
            Assert.Contains(line + "\n", qemu.Out);
        }
    }

    [Theory]
    [InlineData("-c", "10")]
    [InlineData("-w", "-c", "10", "-d", "2", "-s", "1k", "-S", "3k", "-o", "5k", "--pattern=3")]
    public void Bench_SummaryLine_EqualsQemuImg(params string[] args)
    {
        using var dir = new TempDir();
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "b.qcow2", "4M");
        var full = new[] { "bench" }.Concat(args).Append("b.qcow2").ToArray();
        var ours = Cli.Run(dir.Path, full);
        var qemu = Cli.Qemu(dir.Path, full);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(qemu.Out.Split('\n')[0], ours.Out.Split('\n')[0]);
        Assert.StartsWith("Run completed in ", ours.Out.Split('\n')[1]);
    }

    [Fact]
    public void Demo_FreshDirectory_ExitsZero()
    {
        using var dir = new TempDir();
        var r = Cli.Run(dir.Path, "demo");
        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Contains("Images are identical.", r.Out);
        Assert.Contains("No errors were found on the image.", r.Out);
    }

    [Fact]
    public void Csproj_IsPackableAsQcow2Tool()
    {
        // The repository root is recorded at build time (source paths are mapped to /_/ in CI builds).
        string? dir = typeof(CliBehaviourTests).Assembly
            .GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .Cast<System.Reflection.AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "RepositoryRoot")?.Value;
        Assert.True(dir is not null && File.Exists(System.IO.Path.Combine(dir, "Qcow2Toolkit.sln")), "repository root not recorded: " + dir);
        string csproj = File.ReadAllText(System.IO.Path.Combine(dir!, "src", "Qcow2.Cli", "Qcow2.Cli.csproj"));
        Assert.Contains("<PackAsTool>true</PackAsTool>", csproj);
        Assert.Contains("<ToolCommandName>qcow2</ToolCommandName>", csproj);
        Assert.Contains("<AssemblyName>qcow2</AssemblyName>", csproj);
    }

}
