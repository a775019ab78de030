using Qcow2.Tests.Shared;
using static Qcow2.Cli.Tests.ToolComparison;

namespace Qcow2.Cli.Tests;

/// <summary>
/// backing.encrypt.key-secret with a secret of its own (the library's BackingSecretResolver), side by
/// side with qemu-img: a LUKS overlay (secret "top", id t) on a LUKS backing file (secret "pw", id s0).
/// </summary>
public sealed class BackingSecretCliTests : IClassFixture<BackingSecretCliTests.Fixture>
{
    private static readonly string[] Secrets = { "--object", "secret,id=s0,data=pw", "--object", "secret,id=t,data=top" };

    public sealed class Fixture : IDisposable
    {
        internal TempDir Dir { get; } = new();

        /// <summary>base.qcow2 (0x12 at 0..1M), top.qcow2 over it with its own secret (0x34 at 512k..1.5M), plain.qcow2 unencrypted over it.</summary>
        public Fixture()
        {
            QemuTools.CreateLuksImage(Dir.File("base.qcow2"), "4M");
            QemuTools.IoEncrypted(Dir.File("base.qcow2"), "pw", "write -P 0x12 0 1M");
            Cli.QemuOk(Dir.Path, With("create", "-q", "-f", "qcow2", Secrets, "-o",
                "encrypt.format=luks,encrypt.key-secret=t,encrypt.iter-time=10,encrypt.hash-alg=sha512,backing_file=base.qcow2,backing_fmt=qcow2",
                "top.qcow2"));
            var io = Cli.RunTool(QemuTools.QemuIo, Dir.Path, With(Secrets, "--image-opts",
                "driver=qcow2,file.filename=top.qcow2,encrypt.key-secret=t,backing.encrypt.key-secret=s0", "-c", "write -P 0x34 512k 1M"));
            if (io.Code != 0 || io.Out.Contains("failed", StringComparison.Ordinal)) throw new InvalidOperationException(io.Out + io.Err);
            Cli.QemuOk(Dir.Path, "create", "-q", "-f", "qcow2", "-o", "backing_file=base.qcow2,backing_fmt=qcow2", "plain.qcow2");
        }

        public void Dispose() => Dir.Dispose();
    }

    private readonly Fixture _fixture;

    public BackingSecretCliTests(Fixture fixture) => _fixture = fixture;

    [Fact]
    public void Convert_BackingWithItsOwnSecret_ByteEqualToQemuImg()
    {
        string dir = _fixture.Dir.Path;
        string opts = "driver=qcow2,file.filename=top.qcow2,encrypt.key-secret=t,backing.encrypt.key-secret=s0";
        Cli.QemuOk(dir, With("convert", Secrets, "--image-opts", "-O", "raw", opts, "own-theirs.raw"));
        var ours = Cli.Run(dir, With("convert", Secrets, "--image-opts", "-O", "raw", opts, "own-ours.raw"));
        Assert.True(ours.Code == 0, ours.Err);
        byte[] expected = File.ReadAllBytes(_fixture.Dir.File("own-theirs.raw"));
        Assert.Equal(0x12, expected[0]);
        Assert.Equal(0x34, expected[1 << 20]);
        Assert.Equal(expected, File.ReadAllBytes(_fixture.Dir.File("own-ours.raw")));
    }

    [Fact]
    public void Compare_UnencryptedOverlayWithBackingSecret_SameAsQemuImg()
    {
        string dir = _fixture.Dir.Path;
        string[] args = With("compare", Secrets, "--image-opts", "driver=qcow2,file.filename=plain.qcow2,backing.encrypt.key-secret=s0",
            "driver=qcow2,file.filename=base.qcow2,encrypt.key-secret=s0");
        var theirs = Cli.Qemu(dir, args);
        var ours = Cli.Run(dir, args);
        Assert.Equal(0, theirs.Code);
        Assert.Equal(theirs.Code, ours.Code);
        Assert.Equal(theirs.Out, ours.Out);
    }

    [Theory]
    // The overlay's own secret does not open the backing file: without backing.encrypt.key-secret qemu-img gives it none.
    [InlineData("driver=qcow2,file.filename=top.qcow2,encrypt.key-secret=t")]
    // A wrong backing secret.
    [InlineData("driver=qcow2,file.filename=top.qcow2,encrypt.key-secret=t,backing.encrypt.key-secret=t")]
    // An undefined one.
    [InlineData("driver=qcow2,file.filename=top.qcow2,encrypt.key-secret=t,backing.encrypt.key-secret=nope")]
    // An unencrypted overlay has no secret to lend its encrypted backing file.
    [InlineData("driver=qcow2,file.filename=plain.qcow2")]
    public void Convert_BackingSecretMissingOrWrong_FailsAsQemuImg(string opts)
    {
        string dir = _fixture.Dir.Path;
        string[] args = With("convert", Secrets, "--image-opts", "-O", "raw", opts, "fail.raw");
        var theirs = Cli.Qemu(dir, args);
        var ours = Cli.Run(dir, args);
        AssertSameFailure(theirs, ours);
        Assert.Contains("Could not open backing file: ", ours.Err);
    }

    [Fact]
    public void Info_EncryptedBackingWithoutSecret_OpensForMetadataAsQemuImg()
    {
        string dir = _fixture.Dir.Path;
        var theirs = Cli.Qemu(dir, "info", "--output=json", "plain.qcow2");
        var ours = Cli.Run(dir, "info", "--output=json", "plain.qcow2");
        Assert.Equal(0, theirs.Code);
        Assert.True(ours.Code == 0, ours.Err);
    }

    [Fact]
    public void Convert_RawBackingWhoseBytesLookLikeAnEncryptedHeader_ByteEqualToQemuImg()
    {
        using var dir = new TempDir();
        // Bytes 20..35 as a qcow2 header would hold cluster_bits 16, a size and crypt_method 1.
        var raw = new byte[1 << 20];
        raw[23] = 16;
        raw[30] = 0x10;
        raw[35] = 1;
        raw[4096] = 0x99;
        File.WriteAllBytes(dir.File("base.raw"), raw);
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "-o", "backing_file=base.raw,backing_fmt=raw", "over.qcow2");
        Cli.QemuOk(dir.Path, "convert", "-O", "raw", "over.qcow2", "theirs.raw");
        var ours = Cli.Run(dir.Path, "convert", "-O", "raw", "over.qcow2", "ours.raw");
        Assert.True(ours.Code == 0, ours.Err);
        Assert.Equal(File.ReadAllBytes(dir.File("theirs.raw")), File.ReadAllBytes(dir.File("ours.raw")));
        Assert.Equal(raw, File.ReadAllBytes(dir.File("ours.raw")));
    }
}
