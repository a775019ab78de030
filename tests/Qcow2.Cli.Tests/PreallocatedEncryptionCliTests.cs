using Qcow2.Tests.Shared;
using static Qcow2.Cli.Tests.ToolComparison;

namespace Qcow2.Cli.Tests;

/// <summary>
/// qcow2 create with encryption and preallocation (metadata, falloc, full) or data_file_raw=on, side by
/// side with qemu-img: the same "Formatting" line, the same file lengths, a clean qemu-img check, and
/// preallocated clusters that read as zeros through qemu-io (qemu-img's own read as noise there).
/// </summary>
public sealed class PreallocatedEncryptionCliTests
{
    private static readonly string[] Secret = { "--object", "secret,id=s0,data=pw" };

    private const string QemuLuks = "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,encrypt.hash-alg=sha512";

    /// <summary>qemu-img create, retried when its PBKDF2 calibration fails (see QemuTools.CreateLuksImage).</summary>
    private static (int Code, string Out, string Err) QemuCreate(string dir, string[] args)
    {
        for (int attempt = 1; ; attempt++)
        {
            var r = Cli.Qemu(dir, args);
            if (r.Code == 0 || attempt == 10 || !r.Err.Contains("Unable to get accurate CPU usage", StringComparison.Ordinal)) return r;
        }
    }

    private static void QemuIoOk(string dir, string opts, params string[] commands)
    {
        var args = new List<string>(Secret) { "--image-opts", opts };
        foreach (var c in commands) { args.Add("-c"); args.Add(c); }
        var r = Cli.RunTool(QemuTools.QemuIo, dir, args.ToArray());
        Assert.True(r.Code == 0 && !r.Out.Contains("failed", StringComparison.OrdinalIgnoreCase), r.Out + r.Err);
    }

    [Theory]
    [InlineData(QemuLuks + ",preallocation=metadata")]
    [InlineData(QemuLuks + ",preallocation=full,compat=0.10")]
    [InlineData(QemuLuks + ",preallocation=metadata,cluster_size=16384,extended_l2=on")]
    [InlineData(QemuLuks + ",data_file=x.data,data_file_raw=on")]
    [InlineData("encrypt.format=aes,encrypt.key-secret=s0,preallocation=metadata")]
    public void Create_EncryptedPreallocated_AsQemuImgLaysItOutAndReadsZeros(string options)
    {
        using var ours = new TempDir();
        using var theirs = new TempDir();
        string[] args = With("create", "-f", "qcow2", Secret, "-o", options, "x.qcow2", "4M");
        var q = QemuCreate(theirs.Path, args);
        var r = Cli.Run(ours.Path, args);
        Assert.True(q.Code == 0, q.Err);
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(q.Out, r.Out);
        Assert.Equal(new FileInfo(theirs.File("x.qcow2")).Length, new FileInfo(ours.File("x.qcow2")).Length);
        if (options.Contains("data_file", StringComparison.Ordinal))
            Assert.Equal(new FileInfo(theirs.File("x.data")).Length, new FileInfo(ours.File("x.data")).Length);

        // Run in the image's directory: qemu resolves the data file name against the working directory here.
        string opts = "driver=qcow2,file.filename=x.qcow2,encrypt.key-secret=s0";
        var check = Cli.Qemu(ours.Path, With("check", Secret, "--image-opts", opts));
        Assert.True(check.Code == 0, check.Out + check.Err);
        QemuIoOk(ours.Path, opts, "read -P 0 0 4M");

        // Our io writes into the preallocated clusters, qemu-io reads it back.
        var io = Cli.Run(ours.Path, With("io", Secret, "--image-opts", opts, "-c", "write -P 0x6b 3000 5000"));
        Assert.True(io.Code == 0, io.Err);
        QemuIoOk(ours.Path, opts, "read -P 0 0 3000", "read -P 0x6b 3000 5000", "read -P 0 8000 4186304");
    }

    [Fact]
    public void Convert_ToEncryptedPreallocatedTarget_QemuImgComparesEqual()
    {
        using var dir = new TempDir();
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "src.qcow2", "4M");
        Cli.QemuIo(dir.Path, "src.qcow2", "write -P 0x42 64k 192k", "write -P 0x43 3M 4k");
        var r = Cli.Run(dir.Path, With("convert", "-O", "qcow2", Secret, "-o", QemuLuks + ",preallocation=full", "src.qcow2", "enc.qcow2"));
        Assert.True(r.Code == 0, r.Err);
        var cmp = Cli.Qemu(dir.Path, With("compare", Secret, "--image-opts",
            "driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=s0", "driver=qcow2,file.filename=src.qcow2"));
        Assert.True(cmp.Code == 0, cmp.Out + cmp.Err);
    }
}
