using System.Text.Json.Nodes;
using Qcow2.Tests.Shared;

namespace Qcow2.Cli.Tests;

/// <summary>
/// A relative <c>data_file</c> name given to <c>create</c> and <c>convert</c> lands where qemu-img 7.2
/// puts it: relative to the working directory, not to the image's directory, and is stored as qemu-img
/// stores it. Each tool runs in a working directory of its own tree (<c>ours/w</c>, <c>theirs/w</c>) with
/// the image in a subdirectory, and the two trees must end up holding the same files.
/// </summary>
public sealed class CreateDataFileCwdTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Ours => System.IO.Path.Combine(_dir.Path, "ours");

    private string Theirs => System.IO.Path.Combine(_dir.Path, "theirs");

    private string WorkDir(string root) => System.IO.Path.Combine(root, "w");

    private void MakeTrees()
    {
        foreach (var root in new[] { Ours, Theirs })
        {
            Directory.CreateDirectory(System.IO.Path.Combine(root, "w", "sub"));
            Directory.CreateDirectory(System.IO.Path.Combine(root, "w", "d2"));
        }
    }

    /// <summary>Every file under <paramref name="root"/>, relative to it, sorted.</summary>
    private static string[] Files(string root) =>
        Directory.GetFiles(root, "*", SearchOption.AllDirectories)
            .Select(f => System.IO.Path.GetRelativePath(root, f))
            .Order(StringComparer.Ordinal)
            .ToArray();

    /// <summary>The data file name qemu-img reads from the image (info, run in <paramref name="workDir"/>).</summary>
    private static string StoredName(string workDir, string image)
    {
        var info = JsonNode.Parse(Cli.QemuOk(workDir, "info", "--output=json", image))!;
        return (string)info["format-specific"]!["data"]!["data-file"]!;
    }

    private static void AssertQemuCheckClean(string workDir, string image)
    {
        var (code, o, e) = Cli.Qemu(workDir, "check", image);
        Assert.True(code == 0, $"qemu-img check {image} in {workDir}: {code}\n{o}{e}");
        Assert.Contains("No errors were found on the image.", o);
    }

    [Theory]
    [InlineData("rel.data")]
    [InlineData("d2/y.data")]
    [InlineData("../up.data")]
    [InlineData("file:fp.data")]
    public void Create_RelativeDataFileImageInSubdirectory_LandsAndIsStoredAsQemuImgDoes(string name)
    {
        MakeTrees();
        Cli.QemuOk(WorkDir(Theirs), "create", "-q", "-f", "qcow2", "-o", $"data_file={name}", "sub/img.qcow2", "1M");
        var ours = Cli.Run(WorkDir(Ours), "create", "-q", "-f", "qcow2", "-o", $"data_file={name}", "sub/img.qcow2", "1M");
        Assert.True(ours.Code == 0, ours.Err);

        Assert.Equal(Files(Theirs), Files(Ours));
        Assert.Equal(StoredName(WorkDir(Theirs), "sub/img.qcow2"), StoredName(WorkDir(Ours), "sub/img.qcow2"));
        // The same header, tables and all (a 1 MiB image's layout is qemu-img's).
        Assert.Equal(
            File.ReadAllBytes(System.IO.Path.Combine(WorkDir(Theirs), "sub", "img.qcow2")),
            File.ReadAllBytes(System.IO.Path.Combine(WorkDir(Ours), "sub", "img.qcow2")));

        AssertQemuCheckClean(WorkDir(Ours), "sub/img.qcow2");
        // Written through qemu-io from the working directory: the data goes to the file created there.
        Cli.QemuIo(WorkDir(Ours), "sub/img.qcow2", "write -P 0x5a 64k 128k");
        Cli.QemuOk(WorkDir(Ours), "create", "-q", "-f", "raw", "ref.raw", "1M");
        var refIo = Cli.RunTool(QemuTools.QemuIo, WorkDir(Ours), new[] { "-f", "raw", "-c", "write -P 0x5a 64k 128k", "ref.raw" });
        Assert.Equal(0, refIo.Code);
        var (code, o, e) = Cli.Qemu(WorkDir(Ours), "compare", "-f", "qcow2", "-F", "raw", "sub/img.qcow2", "ref.raw");
        Assert.True(code == 0, $"qemu-img compare: {code}\n{o}{e}");
        string dataFile = System.IO.Path.Combine(WorkDir(Ours), name.StartsWith("file:", StringComparison.Ordinal) ? name[5..] : name);
        var data = File.ReadAllBytes(dataFile);
        Assert.All(data.AsSpan(64 << 10, 128 << 10).ToArray(), b => Assert.Equal(0x5a, b));
    }

    [Fact]
    public void Convert_RelativeDataFileTargetInSubdirectory_LandsAndIsStoredAsQemuImgDoes()
    {
        MakeTrees();
        foreach (var root in new[] { Ours, Theirs })
        {
            Cli.QemuOk(WorkDir(root), "create", "-q", "-f", "raw", "src.raw", "1M");
            var io = Cli.RunTool(QemuTools.QemuIo, WorkDir(root), new[] { "-f", "raw", "-c", "write -P 0xab 0 64k", "-c", "write -P 0xcd 512k 4k", "src.raw" });
            Assert.Equal(0, io.Code);
        }
        Cli.QemuOk(WorkDir(Theirs), "convert", "-O", "qcow2", "-o", "data_file=conv.data", "src.raw", "sub/conv.qcow2");
        var ours = Cli.Run(WorkDir(Ours), "convert", "-O", "qcow2", "-o", "data_file=conv.data", "src.raw", "sub/conv.qcow2");
        Assert.True(ours.Code == 0, ours.Err);

        Assert.Equal(Files(Theirs), Files(Ours));
        Assert.Equal(StoredName(WorkDir(Theirs), "sub/conv.qcow2"), StoredName(WorkDir(Ours), "sub/conv.qcow2"));
        AssertQemuCheckClean(WorkDir(Ours), "sub/conv.qcow2");
        var (code, o, e) = Cli.Qemu(WorkDir(Ours), "compare", "src.raw", "sub/conv.qcow2");
        Assert.True(code == 0, $"qemu-img compare: {code}\n{o}{e}");
        Assert.Equal(
            File.ReadAllBytes(System.IO.Path.Combine(WorkDir(Theirs), "conv.data")),
            File.ReadAllBytes(System.IO.Path.Combine(WorkDir(Ours), "conv.data")));
    }

    [Fact]
    public void Create_DifferentFileOfThatNameBesideImage_FailsAndCreatesNothing()
    {
        // qemu-img would create w/rel.data, but our opening would take sub/rel.data (it looks beside
        // the image first): refused rather than making an image that opens the wrong data file.
        MakeTrees();
        string beside = System.IO.Path.Combine(WorkDir(Ours), "sub", "rel.data");
        File.WriteAllText(beside, "another image's data");
        var before = Files(Ours);

        var ours = Cli.Run(WorkDir(Ours), "create", "-q", "-f", "qcow2", "-o", "data_file=rel.data", "sub/img.qcow2", "1M");

        Assert.Equal(1, ours.Code);
        Assert.Contains("beside the image", ours.Err);
        Assert.Equal(before, Files(Ours));
        Assert.Equal("another image's data", File.ReadAllText(beside));
    }
}
