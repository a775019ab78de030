using System.Diagnostics;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Chain;

namespace Qcow2.Volume.Tests.Infra;

/// <summary>
/// Where <see cref="Qcow2Creator.Create(string, Qcow2CreateOptions, string)"/> and
/// <see cref="Qcow2Image.Create(string, Qcow2CreateOptions)"/> create a relative data file name:
/// from the current directory, as <c>qemu-img create</c> does, or from the directory given.
/// </summary>
public sealed class Qcow2CreatorDataFileTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>
    /// A fresh, uniquely named directory under the test process's current directory, so a relative
    /// name can be used without depending on where or how deep the current directory is.
    /// </summary>
    private sealed class CwdSubdirectory : IDisposable
    {
        public string Name { get; } = "qcow2-cwd-" + Guid.NewGuid().ToString("N")[..12];

        public CwdSubdirectory() => Directory.CreateDirectory(Name);

        public void Dispose()
        {
            try { Directory.Delete(Path.GetFullPath(Name), recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static (int Code, string Out, string Err) RunIn(string workDir, string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool)
        {
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} did not finish");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void Create_RelativeDataFileName_CreatedFromCurrentDirectoryAsQemuImgDoes()
    {
        using var cwd = new CwdSubdirectory();
        string cwdPath = Directory.GetCurrentDirectory();
        string ourName = cwd.Name + "/ours.data", theirName = cwd.Name + "/theirs.data";
        var pattern = Enumerable.Range(0, 8192).Select(i => (byte)(i * 7 + 1)).ToArray();

        // qemu-img, run in the same current directory with an image elsewhere: where does it put the file?
        var qemu = RunIn(cwdPath, QemuTools.QemuImg, "create", "-q", "-f", "qcow2", "-o", $"data_file={theirName}", _dir.File("theirs.qcow2"), "1M");
        Assert.True(qemu.Code == 0, qemu.Err);
        Assert.True(File.Exists(Path.GetFullPath(theirName)), "qemu-img created the data file from its current directory");

        string image = _dir.File("ours.qcow2");
        using (var img = Qcow2Image.Create(image, new Qcow2CreateOptions { Size = 1 << 20, DataFile = ourName }))
            img.Write(65536, pattern);

        Assert.True(File.Exists(Path.GetFullPath(ourName)));
        Assert.False(Directory.Exists(_dir.File(cwd.Name)), "nothing created beside the image");
        Assert.Equal(new FileInfo(Path.GetFullPath(theirName)).Length, new FileInfo(Path.GetFullPath(ourName)).Length);
        // The data went to that file (external data files map guest offsets one to one).
        Assert.Equal(pattern, File.ReadAllBytes(Path.GetFullPath(ourName)).AsSpan(65536, pattern.Length).ToArray());

        using (var again = Qcow2Image.Open(image, new Qcow2OpenOptions { ReadOnly = true, ExternalFilePolicy = ExternalFilePolicy.AllowAll }))
        {
            Assert.Equal(ourName, again.Info.DataFile);
            var back = new byte[pattern.Length];
            again.Read(65536, back);
            Assert.Equal(pattern, back);
        }

        // qemu-img, from the same current directory, finds the data file and accepts the image.
        var check = RunIn(cwdPath, QemuTools.QemuImg, "check", image);
        Assert.True(check.Code == 0, check.Out + check.Err);
        Assert.Contains("No errors were found on the image.", check.Out);
        var info = RunIn(cwdPath, QemuTools.QemuImg, "info", image);
        Assert.Contains($"data file: {ourName}", info.Out);
    }

    [Fact]
    public void Create_DataFileDirectoryGiven_CreatedThereAndStoredAsGiven()
    {
        var work = Directory.CreateDirectory(_dir.File("w")).FullName;
        Directory.CreateDirectory(_dir.File("sub"));
        string image = _dir.File("sub/img.qcow2");

        Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = 1 << 20, DataFile = "file:rel.data" }, work);

        Assert.True(File.Exists(Path.Combine(work, "rel.data")));
        Assert.False(File.Exists(_dir.File("sub/rel.data")));
        // As qemu-img stores it: the file: prefix dropped.
        var check = RunIn(work, QemuTools.QemuImg, "info", "--output=json", image);
        Assert.True(check.Code == 0, check.Err);
        Assert.Contains("\"data-file\": \"rel.data\"", check.Out);
    }

    [Fact]
    public void Create_DifferentFileOfThatNameBesideImage_ThrowsIOExceptionAndCreatesNothing()
    {
        var work = Directory.CreateDirectory(_dir.File("w")).FullName;
        Directory.CreateDirectory(_dir.File("sub"));
        string beside = _dir.File("sub/rel.data");
        File.WriteAllText(beside, "another image's data");

        var e = Assert.Throws<IOException>(() =>
            Qcow2Creator.Create(_dir.File("sub/img.qcow2"), new Qcow2CreateOptions { Size = 1 << 20, DataFile = "rel.data" }, work));

        Assert.Contains("beside the image", e.Message);
        Assert.False(File.Exists(_dir.File("sub/img.qcow2")));
        Assert.False(File.Exists(Path.Combine(work, "rel.data")));
        Assert.Equal("another image's data", File.ReadAllText(beside));
    }

    [Fact]
    public void Create_CreationDirectoryIsTheImageDirectory_ReplacesTheExistingDataFile()
    {
        string dir = Directory.CreateDirectory(_dir.File("sub")).FullName;
        string data = Path.Combine(dir, "rel.data");
        File.WriteAllText(data, "old contents");

        Qcow2Creator.Create(Path.Combine(dir, "img.qcow2"), new Qcow2CreateOptions { Size = 1 << 20, DataFile = "rel.data" }, dir);

        Assert.Equal(1 << 20, new FileInfo(data).Length);
        Assert.All(File.ReadAllBytes(data), b => Assert.Equal(0, b));
    }
}
