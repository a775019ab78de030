using System.Text.RegularExpressions;
using Qcow2.Tests.Shared;
using static Qcow2.Cli.Tests.ToolComparison;

namespace Qcow2.Cli.Tests;

/// <summary>
/// Encrypted images through the built tool, side by side with qemu-img/qemu-io 7.2: --object
/// secrets, --image-opts option strings, -o encrypt.* on create/convert/measure, and qemu-img's
/// messages for missing, unknown and wrong secrets. qemu-img creates its LUKS images with sha512
/// (see QemuTools.CreateLuksImage: sha256 calibration fails at random on these machines).
/// </summary>
public sealed class EncryptionCliTests : IClassFixture<EncryptionCliTests.Fixture>
{
    /// <summary>Password of every image here; object id s0, as QemuTools uses.</summary>
    private const string Password = "pw";

    private static readonly string[] Secret = { "--object", "secret,id=s0,data=" + Password };

    /// <summary>Fast LUKS options for images we create (our PBKDF calibration is stable with any hash).</summary>
    private const string FastLuks = "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10";

    /// <summary>The options qemu-img's LUKS images get here.</summary>
    private const string QemuLuks = "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,encrypt.hash-alg=sha512";

    public sealed class Fixture : IDisposable
    {
        internal TempDir Dir { get; } = new();

        /// <summary>A LUKS image qemu-img made and qemu-io wrote (q.qcow2), and a legacy AES one (qaes.qcow2).</summary>
        public Fixture()
        {
            QemuTools.CreateLuksImage(Dir.File("q.qcow2"), "8M");
            QemuTools.IoEncrypted(Dir.File("q.qcow2"), Password, "write -P 0x5a 0 100k", "write -P 0x11 3M 64k", "write -z 5M 64k");
            Cli.QemuOk(Dir.Path, "create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=" + Password,
                "-o", "encrypt.format=aes,encrypt.key-secret=s0", "qaes.qcow2", "4M");
            QemuTools.IoEncrypted(Dir.File("qaes.qcow2"), Password, "write -P 0x66 64k 200k");
            File.WriteAllBytes(Dir.File("disk.raw"), new byte[1 << 20]);
        }

        public void Dispose() => Dir.Dispose();
    }

    private readonly Fixture _fixture;

    public EncryptionCliTests(Fixture fixture) => _fixture = fixture;

    private static string Opts(string file, string id = "s0") => $"driver=qcow2,file.filename={file},encrypt.key-secret={id}";

    [Theory]
    [InlineData("")]
    [InlineData(",encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256")]
    [InlineData(",encrypt.cipher-alg=aes-192,encrypt.ivgen-alg=plain,encrypt.hash-alg=sha1")]
    public void Create_Luks_QemuImgChecksCleanAndQemuIoReadsWhatOurIoWrote(string extra)
    {
        using var dir = new TempDir();
        var created = Cli.Run(dir.Path, With("create", "-f", "qcow2", Secret, "-o", FastLuks + extra, "e.qcow2", "4M"));
        Assert.Equal(0, created.Code);
        var (checkCode, checkOut) = QemuTools.CheckEncrypted(dir.File("e.qcow2"), Password);
        Assert.True(checkCode == 0, checkOut);
        Assert.Contains("No errors were found on the image.", checkOut);

        var io = Cli.Run(dir.Path, With("io", Secret, "--image-opts", Opts("e.qcow2"), "-c", "write -P 0x3c 1000 70000", "-c", "write -P 0x7e 2M 4k"));
        Assert.True(io.Code == 0, io.Out + io.Err);
        QemuTools.IoEncrypted(dir.File("e.qcow2"), Password, "read -P 0 0 1000", "read -P 0x3c 1000 70000", "read -P 0x7e 2M 4k", "read -P 0 71000 100k");

        var expected = new byte[4 << 20];
        expected.AsSpan(1000, 70000).Fill(0x3c);
        expected.AsSpan(2 << 20, 4096).Fill(0x7e);
        Assert.Equal(expected, QemuTools.ReadEncryptedWithQemu(dir.File("e.qcow2"), Password));
        Assert.Equal(0, QemuTools.CheckEncrypted(dir.File("e.qcow2"), Password).ExitCode);
    }

    [Theory]
    [InlineData("encrypt.format=aes,encrypt.key-secret=s0")]
    [InlineData("encryption=on,encrypt.key-secret=s0")]
    public void Create_LegacyAes_LaidOutAsQemuImgAndReadableByQemuIo(string options)
    {
        using var dir = new TempDir();
        Assert.Equal(0, Cli.Run(dir.Path, With("create", "-q", "-f", "qcow2", Secret, "-o", options, "ours.qcow2", "4M")).Code);
        Cli.QemuOk(dir.Path, With("create", "-q", "-f", "qcow2", Secret, "-o", options, "theirs.qcow2", "4M"));
        // Legacy AES stores no key material: the empty images are identical.
        Assert.Equal(File.ReadAllBytes(dir.File("theirs.qcow2")), File.ReadAllBytes(dir.File("ours.qcow2")));

        var io = Cli.Run(dir.Path, With("io", Secret, "--image-opts", Opts("ours.qcow2"), "-c", "write -P 0x21 4096 8192"));
        Assert.Equal(0, io.Code);
        QemuTools.IoEncrypted(dir.File("ours.qcow2"), Password, "read -P 0x21 4096 8192", "read -P 0 0 4096");
    }

    [Fact]
    public void Create_FormattingLine_EqualsQemuImgs()
    {
        using var dir = new TempDir();
        string options = QemuLuks + ",encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256,cluster_size=4096";
        var ours = Cli.Run(dir.Path, With("create", "-f", "qcow2", Secret, "-o", options, "a.qcow2", "4M"));
        (int Code, string Out, string Err) qemu;
        int attempt = 0;
        do
        {
            qemu = Cli.Qemu(dir.Path, With("create", "-f", "qcow2", Secret, "-o", options, "a.qcow2", "4M"));
        }
        while (qemu.Code != 0 && qemu.Err.Contains("Unable to get accurate CPU usage", StringComparison.Ordinal) && ++attempt < 10);
        Assert.Equal(0, qemu.Code);
        Assert.Equal(0, ours.Code);
        Assert.Equal(qemu.Out, ours.Out);
        Assert.StartsWith("Formatting 'a.qcow2', fmt=qcow2 encrypt.format=luks encrypt.key-secret=s0 encrypt.cipher-alg=aes-128", ours.Out);
    }

    // Fields that legitimately differ between two LUKS images made with the same options: the
    // uuid is random; the PBKDF2 iteration counts (slot "iters", "master-key-iters") are
    // calibrated to encrypt.iter-time on each tool's own clock; actual-size counts the file's
    // allocated blocks, and qemu-img's writes leave one 4 KiB block fewer sparse (the file lengths,
    // i.e. the layouts, are asserted equal instead). Everything else, every key offset included,
    // must be equal.
    private static readonly Regex VolatileInfo = new("\"(uuid|iters|master-key-iters|actual-size)\": [^,\\n]+", RegexOptions.Compiled);

    [Theory]
    [InlineData("")]
    [InlineData(",encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256,cluster_size=4096")]
    [InlineData(",compat=0.10")]
    public void Info_Json_OurEncryptedImageEqualsQemuImgsMadeWithTheSameOptions(string extra)
    {
        using var oursDir = new TempDir();
        using var qemuDir = new TempDir();
        Assert.Equal(0, Cli.Run(oursDir.Path, With("create", "-q", "-f", "qcow2", Secret, "-o", QemuLuks + extra, "e.qcow2", "4M")).Code);
        QemuTools.CreateLuksImage(qemuDir.File("e.qcow2"), "4M", extra);
        var ours = Cli.Run(oursDir.Path, "info", "--output=json", "e.qcow2");
        var qemu = Cli.Qemu(qemuDir.Path, "info", "--output=json", "e.qcow2");
        Assert.Equal(0, ours.Code);
        Assert.Equal(VolatileInfo.Replace(qemu.Out, "\"$1\": X"), VolatileInfo.Replace(ours.Out, "\"$1\": X"));
        Assert.Contains("\"uuid\"", ours.Out);
        Assert.Equal(new FileInfo(qemuDir.File("e.qcow2")).Length, new FileInfo(oursDir.File("e.qcow2")).Length);
    }

    [Theory]
    [InlineData("info", "--output=json")]
    [InlineData("info", "")]
    [InlineData("map", "--output=json")]
    [InlineData("check", "--output=json")]
    [InlineData("check", "")]
    public void ImageOpts_WithSecret_OutputEqualsQemuImg(string command, string flag)
    {
        string p = _fixture.Dir.Path;
        var args = With(command, Secret, "--image-opts", Opts("q.qcow2"));
        if (flag.Length > 0) args = With(command, flag, Secret, "--image-opts", Opts("q.qcow2"));
        var ours = Cli.Run(p, args);
        var qemu = Cli.Qemu(p, args);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(qemu.Out, ours.Out);
    }

    [Theory]
    [InlineData("q.qcow2")]
    [InlineData("qaes.qcow2")]
    public void Convert_ImageOptsOfQemuMadeImage_ByteEqualToQemuImgConvert(string file)
    {
        string p = _fixture.Dir.Path;
        string ours = "ours-" + Guid.NewGuid().ToString("N") + ".raw", theirs = "theirs-" + Guid.NewGuid().ToString("N") + ".raw";
        try
        {
            var r = Cli.Run(p, With("convert", Secret, "--image-opts", "-O", "raw", Opts(file), ours));
            Assert.True(r.Code == 0, r.Err);
            Cli.QemuOk(p, With("convert", Secret, "--image-opts", "-O", "raw", Opts(file), theirs));
            Assert.Equal(File.ReadAllBytes(Path.Combine(p, theirs)), File.ReadAllBytes(Path.Combine(p, ours)));
            // The source was really decrypted: qemu-io wrote 0x5a / 0x66 there.
            Assert.Contains(File.ReadAllBytes(Path.Combine(p, ours)), b => b is 0x5a or 0x66);

            // And the encrypted image compares equal to its own raw conversion.
            var cmp = Cli.Run(p, With("compare", Secret, "--image-opts", Opts(file), "driver=raw,file.filename=" + ours));
            Assert.Equal(0, cmp.Code);
            Assert.Equal("Images are identical.\n", cmp.Out);
        }
        finally
        {
            File.Delete(Path.Combine(p, ours));
            File.Delete(Path.Combine(p, theirs));
        }
    }

    [Fact]
    public void Convert_EncryptedOverlayOnEncryptedBacking_ByteEqualToQemuImgConvert()
    {
        using var dir = new TempDir();
        QemuTools.CreateLuksImage(dir.File("base.qcow2"), "4M");
        QemuTools.IoEncrypted(dir.File("base.qcow2"), Password, "write -P 0x12 0 1M");
        QemuTools.CreateLuksImage(dir.File("top.qcow2"), "4M", ",backing_file=base.qcow2,backing_fmt=qcow2");
        string opts = Opts("top.qcow2") + ",backing.encrypt.key-secret=s0";
        var io = Cli.RunTool(QemuTools.QemuIo, dir.Path, With(Secret, "--image-opts", opts, "-c", "write -P 0x34 512k 1M"));
        Assert.True(io.Code == 0 && !io.Out.Contains("failed", StringComparison.Ordinal), io.Out + io.Err);
        Cli.QemuOk(dir.Path, With("convert", Secret, "--image-opts", "-O", "raw", opts, "theirs.raw"));
        var ours = Cli.Run(dir.Path, With("convert", Secret, "--image-opts", "-O", "raw", opts, "ours.raw"));
        Assert.True(ours.Code == 0, ours.Err);
        byte[] expected = File.ReadAllBytes(dir.File("theirs.raw"));
        Assert.Equal(0x12, expected[0]);
        Assert.Equal(expected, File.ReadAllBytes(dir.File("ours.raw")));
        // qemu-img needs backing.encrypt.key-secret; we try the image's own secret on a LUKS backing file (its key slots tell whether it fits).
        var without = Cli.Run(dir.Path, With("convert", Secret, "--image-opts", "-O", "raw", Opts("top.qcow2"), "ours2.raw"));
        Assert.Equal(0, without.Code);
        Assert.Equal(expected, File.ReadAllBytes(dir.File("ours2.raw")));
    }

    [Theory]
    [InlineData(FastLuks, "luks")]
    [InlineData("encrypt.format=aes,encrypt.key-secret=s0", "aes")]
    [InlineData("encryption=on,encrypt.key-secret=s0", "aes")]
    public void Convert_ToEncryptedTarget_WritesEncryptedImageQemuImgReadsBack(string options, string format)
    {
        using var dir = new TempDir();
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "src.qcow2", "4M");
        Cli.QemuIo(dir.Path, "src.qcow2", "write -P 0x42 64k 192k", "write -P 0x43 3M 4k");
        var r = Cli.Run(dir.Path, With("convert", "-O", "qcow2", Secret, "-o", options, "src.qcow2", "enc.qcow2"));
        Assert.True(r.Code == 0, r.Err);
        var info = Cli.Qemu(dir.Path, "info", "enc.qcow2");
        Assert.Contains("encrypted: yes", info.Out);
        Assert.Contains("format: " + format, info.Out);
        var cmp = Cli.Qemu(dir.Path, With("compare", Secret, "--image-opts", Opts("enc.qcow2"), "driver=qcow2,file.filename=src.qcow2"));
        Assert.Equal(0, cmp.Code);
        Assert.Equal(0, QemuTools.CheckEncrypted(dir.File("enc.qcow2"), Password).ExitCode);
        // Without the secret the data is not readable as plaintext: the host clusters are ciphertext.
        Assert.DoesNotContain(new byte[] { 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42 }, ChunksOf(File.ReadAllBytes(dir.File("enc.qcow2")), 8));
    }

    private static IEnumerable<byte[]> ChunksOf(byte[] data, int n)
    {
        for (int i = 0; i + n <= data.Length; i += n) yield return data[i..(i + n)];
    }

    [Fact]
    public void Convert_NoCreateIntoEncryptedTargetImageOpts_QemuReadsTheData()
    {
        using var dir = new TempDir();
        QemuTools.CreateLuksImage(dir.File("t.qcow2"), "4M");
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "src.qcow2", "4M");
        Cli.QemuIo(dir.Path, "src.qcow2", "write -P 0x29 1M 128k");
        var r = Cli.Run(dir.Path, With("convert", "-n", Secret, "--target-image-opts", "src.qcow2", Opts("t.qcow2")));
        Assert.True(r.Code == 0, r.Err);
        QemuTools.IoEncrypted(dir.File("t.qcow2"), Password, "read -P 0x29 1M 128k", "read -P 0 0 1M");
    }

    [Fact]
    public void CheckAndMap_EncryptedImageWithoutSecret_WorkOnMetadata()
    {
        // qemu-img needs the secret here; our check and map read metadata only.
        string p = _fixture.Dir.Path;
        var check = Cli.Run(p, "check", "q.qcow2");
        Assert.Equal(0, check.Code);
        Assert.Contains("No errors were found on the image.", check.Out);
        var map = Cli.Run(p, "map", "--output=json", "q.qcow2");
        var qemuMap = Cli.Qemu(p, With("map", "--output=json", Secret, "--image-opts", Opts("q.qcow2")));
        Assert.Equal(0, map.Code);
        Assert.Equal(qemuMap.Out, map.Out);
    }

    [Fact]
    public void Measure_LuksOptions_EqualsQemuImg()
    {
        using var dir = new TempDir();
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "src.qcow2", "64M");
        Cli.QemuIo(dir.Path, "src.qcow2", "write -P 0x42 0 5M", "write -P 0x43 40M 64k");
        foreach (var (size, options) in new[]
        {
            ("1G", QemuLuks + ",encrypt.cipher-alg=aes-128"),
            ("100G", QemuLuks + ",cluster_size=4096"),
            ("4M", "encrypt.format=aes,encrypt.key-secret=s0"),
            ("4M", "encryption=on"),
            ("", QemuLuks + ",cluster_size=16k"),
        })
        {
            var args = size.Length == 0
                ? With("measure", "--output=json", "-O", "qcow2", Secret, "-o", options, "src.qcow2")
                : With("measure", "--output=json", "-O", "qcow2", "--size", size, Secret, "-o", options);
            var ours = Cli.Run(dir.Path, args);
            (int Code, string Out, string Err) qemu;
            int attempt = 0;
            do qemu = Cli.Qemu(dir.Path, args);
            while (qemu.Code != 0 && qemu.Err.Contains("Unable to get accurate CPU usage", StringComparison.Ordinal) && ++attempt < 10);
            Assert.Equal(0, qemu.Code);
            Assert.Equal(qemu.Out, ours.Out);
        }
    }

    [Fact]
    public void Errors_MissingSecret_AsQemuImg()
    {
        string p = _fixture.Dir.Path;
        AssertSameFailure(Cli.Qemu(p, "convert", "-O", "raw", "q.qcow2", "never.raw"), Cli.Run(p, "convert", "-O", "raw", "q.qcow2", "never.raw"));
        AssertSameFailure(Cli.Qemu(p, "compare", "q.qcow2", "qaes.qcow2"), Cli.Run(p, "compare", "q.qcow2", "qaes.qcow2"));
        AssertSameFailure(Cli.Qemu(p, "convert", "-O", "raw", "--image-opts", "driver=qcow2,file.filename=q.qcow2", "never.raw"),
            Cli.Run(p, "convert", "-O", "raw", "--image-opts", "driver=qcow2,file.filename=q.qcow2", "never.raw"));
        var ours = Cli.Run(p, "convert", "-O", "raw", "q.qcow2", "never.raw");
        Assert.Equal("qcow2: Could not open 'q.qcow2': Parameter 'encrypt.key-secret' is required for cipher\n", ours.Err);
        Assert.False(File.Exists(Path.Combine(p, "never.raw")));
    }

    [Fact]
    public void Errors_UnknownSecretId_AsQemuImg()
    {
        string p = _fixture.Dir.Path;
        var args = With("check", Secret, "--image-opts", Opts("q.qcow2", "nosuch"));
        AssertSameFailure(Cli.Qemu(p, args), Cli.Run(p, args));
        Assert.Contains("No secret with id 'nosuch'", Cli.Run(p, args).Err);
        var compare = With("compare", Secret, "--image-opts", Opts("q.qcow2", "nosuch"), Opts("qaes.qcow2"));
        AssertSameFailure(Cli.Qemu(p, compare), Cli.Run(p, compare));
    }

    [Theory]
    [InlineData("check")]
    [InlineData("map")]
    [InlineData("compare")]
    public void Errors_WrongPassword_AsQemuImg(string command)
    {
        string p = _fixture.Dir.Path;
        var args = command == "compare"
            ? With(command, "--object", "secret,id=s0,data=wrong", "--image-opts", Opts("q.qcow2"), Opts("q.qcow2"))
            : With(command, "--object", "secret,id=s0,data=wrong", "--image-opts", Opts("q.qcow2"));
        var ours = Cli.Run(p, args);
        AssertSameFailure(Cli.Qemu(p, args), ours);
        Assert.EndsWith(": Invalid password, cannot unlock any keyslot\n", ours.Err);
    }

    [Theory]
    [InlineData("q.qcow2")]
    [InlineData("--object", "secret,id=s0,data=wrong", "--image-opts", "driver=qcow2,file.filename=q.qcow2,encrypt.key-secret=s0")]
    [InlineData("--object", "secret,id=s0,data=pw", "--image-opts", "driver=qcow2,file.filename=q.qcow2,encrypt.key-secret=s1")]
    [InlineData("--image-opts", "driver=qcow2,file.filename=q.qcow2")]
    [InlineData("--image-opts", "driver=qcow2,file.filename=nonexist.qcow2")]
    [InlineData("--object", "secret,id=s0", "q.qcow2")]
    public void Errors_IoOpen_AsQemuIo(params string[] args)
    {
        string p = _fixture.Dir.Path;
        var full = With(args[..^1], "-c", "read 0 512", args[^1]);
        var qemu = Cli.RunTool(QemuTools.QemuIo, p, full);
        var ours = Cli.Run(p, With("io", full));
        Assert.NotEqual(0, qemu.Code);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(qemu.Err.Replace("qemu-io: ", "qcow2: ", StringComparison.Ordinal), ours.Err);
    }

    [Theory]
    [InlineData("secret,id=s0")]
    [InlineData("secret,id=s0,data=a,file=b")]
    [InlineData("secret,id=s0,data=a,format=hex")]
    [InlineData("secret,id=s0,data=!!!!,format=base64")]
    [InlineData("secret,data=a")]
    [InlineData("secret,id=s0,data=a,foo=1")]
    [InlineData("secret,id=s0,data")]
    [InlineData("id=s0,data=a")]
    [InlineData("nosuchtype,id=s0")]
    [InlineData("secret,id=s0,file=does-not-exist")]
    [InlineData("secret,id=0s,data=a")]
    public void Errors_BadObject_AsQemuImg(string objectDef)
    {
        string p = _fixture.Dir.Path;
        var args = With("info", "--object", objectDef, "q.qcow2");
        AssertSameFailure(Cli.Qemu(p, args), Cli.Run(p, args));
    }

    [Fact]
    public void Object_SecretHelp_AsQemuImg()
    {
        var args = With("info", "--object", "secret,help", "q.qcow2");
        var ours = Cli.Run(_fixture.Dir.Path, args);
        var qemu = Cli.Qemu(_fixture.Dir.Path, args);
        Assert.Equal(0, ours.Code);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(qemu.Out, ours.Out);
    }

    [Fact]
    public void Errors_NeitherFileNorData_MessageAsQemuImg()
    {
        var r = Cli.Run(_fixture.Dir.Path, "check", "--object", "secret,id=s0", "q.qcow2");
        Assert.Equal(1, r.Code);
        Assert.Equal("qcow2: Either 'file' or 'data' must be provided\n", r.Err);
    }

    [Theory]
    [InlineData("info", "--image-opts", "driver=qcow2,file.filename=q.qcow2,foo=bar")]
    [InlineData("info", "--image-opts", "driver=qcow2,file.filename=q.qcow2,foo=1,bar=2")]
    [InlineData("info", "--image-opts", "driver=qcow2,file.filename=q.qcow2,zz=1,aa=2,mm=3")]
    [InlineData("info", "--image-opts", "driver=qcow2,file.filename=q.qcow2,l2-cache-size=1M,xyz=1,abc=2")]
    [InlineData("info", "--image-opts", "file.filename=disk.raw,l2-cache-size=1M,encrypt.key-secret=x")]
    [InlineData("map", "--image-opts", "file.filename=disk.raw,refcount-cache-size=1M")]
    [InlineData("info", "--image-opts", "driver=raw,file.filename=q.qcow2,encrypt.key-secret=s0")]
    [InlineData("info", "--image-opts", "driver=qcow2")]
    [InlineData("info", "--image-opts", "driver=qcow2,file.filename=nonexist.qcow2")]
    [InlineData("info", "--image-opts", "q.qcow2")]
    [InlineData("info", "--image-opts", "driver=nosuch,file.filename=q.qcow2")]
    [InlineData("info", "--image-opts", "driver=qcow2,file.filename=q.qcow2,encrypt.format=aes")]
    [InlineData("info", "--image-opts", "driver=qcow2,file.filename=q.qcow2,l2-cache-size=1M,cache-size=512k")]
    [InlineData("info", "--image-opts", "driver=qcow2,file.filename=q.qcow2,l2-cache-entry-size=1000")]
    [InlineData("info", "--image-opts", "driver=qcow2,file.filename=q.qcow2,l2-cache-size=x")]
    [InlineData("info", "-f", "qcow2", "--image-opts", "driver=qcow2,file.filename=q.qcow2")]
    [InlineData("map", "-f", "qcow2", "--image-opts", "driver=qcow2,file.filename=q.qcow2")]
    [InlineData("convert", "--target-image-opts", "q.qcow2", "driver=qcow2,file.filename=x.qcow2")]
    [InlineData("convert", "-n", "-O", "qcow2", "--target-image-opts", "q.qcow2", "driver=qcow2,file.filename=x.qcow2")]
    [InlineData("convert", "-n", "--target-image-opts", "qaes.qcow2", "driver=qcow2,file.filename=q.qcow2")]
    [InlineData("convert", "-n", "--object", "secret,id=s0,data=pw", "-o", "encrypt.format=luks,encrypt.key-secret=s0", "disk.raw", "q.qcow2")]
    public void Errors_ImageOpts_AsQemuImg(params string[] args)
    {
        string p = _fixture.Dir.Path;
        AssertSameFailure(Cli.Qemu(p, args), Cli.Run(p, args));
    }

    [Theory]
    [InlineData("encrypt.format=luks")]
    [InlineData("encrypt.format=luks,encrypt.key-secret=nope")]
    [InlineData("encryption=on")]
    [InlineData("encrypt.key-secret=s0")]
    [InlineData("encrypt.format=foo,encrypt.key-secret=s0")]
    [InlineData("encrypt.format=aes,encrypt.key-secret=s0,encrypt.cipher-alg=aes-128")]
    [InlineData("encrypt.format=luks,encrypt.key-secret=s0,encrypt.cipher-alg=aes-512")]
    [InlineData("encrypt.format=luks,encrypt.key-secret=s0,encrypt.hash-alg=md4")]
    [InlineData("encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=1k")]
    [InlineData("encryption=on,encrypt.format=luks,encrypt.key-secret=s0")]
    public void Errors_CreateEncryptOptions_AsQemuImgAndNoFileLeft(string options)
    {
        using var dir = new TempDir();
        var args = With("create", "-f", "qcow2", Secret, "-o", options, "x.qcow2", "4M");
        AssertSameFailure(Cli.Qemu(dir.Path, args), Cli.Run(dir.Path, args));
        Assert.False(File.Exists(dir.File("x.qcow2")));
    }

    [Fact]
    public void Errors_ConvertCompressedEncrypted_AsQemuImg()
    {
        string p = _fixture.Dir.Path;
        var args = With("convert", "-c", "-O", "qcow2", Secret, "-o", QemuLuks, "--image-opts", "driver=raw,file.filename=qaes.qcow2", "never.qcow2");
        AssertSameFailure(Cli.Qemu(p, args), Cli.Run(p, args));
        var missing = With("convert", "-O", "qcow2", "-o", "encrypt.format=luks", "--image-opts", "driver=raw,file.filename=qaes.qcow2", "never.qcow2");
        AssertSameFailure(Cli.Qemu(p, missing), Cli.Run(p, missing));
    }

    // "cHc=" is base64 of "pw"; GLib drops an unfinished group ("cHc" is the empty secret) and
    // ignores what follows a complete one ("cHc=cA" is still "pw").
    [Theory]
    [InlineData("format=base64,data=cHc=", true)]
    [InlineData("format=base64,data=cHc=cA", true)]
    [InlineData("format=base64,data=cHc", false)]
    [InlineData("format=raw,data=cHc=", false)]
    [InlineData("format=raw,data=pw", true)]
    [InlineData("data=pw,format=base64", false)]
    public void Secret_Encodings_UnlockAsWithQemuImg(string secretOptions, bool unlocks)
    {
        string p = _fixture.Dir.Path;
        var args = With("check", "--object", "secret,id=s0," + secretOptions, "--image-opts", Opts("q.qcow2"));
        var ours = Cli.Run(p, args);
        var qemu = Cli.Qemu(p, args);
        Assert.Equal(unlocks, qemu.Code == 0);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(qemu.Out, ours.Out);
        Assert.Equal(qemu.Err.Replace("qemu-img: ", "qcow2: ", StringComparison.Ordinal), ours.Err);
    }

    [Fact]
    public void Secret_FromFile_TrailingNewlineIsPartOfTheSecretAsInQemuImg()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("pw.txt"), Password);
        File.WriteAllText(dir.File("pwnl.txt"), Password + "\n");
        string image = Path.Combine(_fixture.Dir.Path, "q.qcow2");
        var good = Cli.Run(dir.Path, "check", "--object", "secret,id=s0,file=pw.txt", "--image-opts", Opts(image));
        Assert.Equal(0, good.Code);
        var args = With("check", "--object", "secret,id=s0,file=pwnl.txt", "--image-opts", Opts(image));
        AssertSameFailure(Cli.Qemu(dir.Path, args), Cli.Run(dir.Path, args));
    }

    [Fact]
    public void Help_CommandsDescribeSecretsAndImageOpts()
    {
        foreach (var command in new[] { "info", "check", "map", "compare", "convert", "io", "bench", "measure" })
        {
            var r = Cli.Run(_fixture.Dir.Path, command, "--help");
            Assert.Equal(0, r.Code);
            Assert.Contains("--object OBJECTDEF", r.Out);
            Assert.Contains("--image-opts", r.Out);
        }
        var create = Cli.Run(_fixture.Dir.Path, "create", "--help");
        Assert.Contains("encrypt.format", create.Out);
        Assert.Contains("without its secret", Cli.Run(_fixture.Dir.Path, "check", "--help").Out);
    }
}
