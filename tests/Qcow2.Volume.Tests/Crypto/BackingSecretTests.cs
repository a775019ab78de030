using System.Text;
using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Crypto;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>
/// Qcow2OpenOptions.BackingSecretResolver: a LUKS overlay and its LUKS backing file with different
/// secrets, read as qemu-img reads them with backing.encrypt.key-secret.
/// </summary>
public sealed class BackingSecretTests(BackingSecretTests.Chain chain) : IClassFixture<BackingSecretTests.Chain>
{
    /// <summary>The chain every test opens read-only (qemu-img's LUKS creation costs seconds here).</summary>
    public sealed class Chain : IDisposable
    {
        private readonly TempDir _dir = new();

        public Chain() => (Base, Top) = MakeChain(_dir);

        public string Base { get; }

        public string Top { get; }

        /// <summary>qemu-img convert of the chain with both secrets.</summary>
        public byte[] QemuContent => _qemuContent ??= QemuConvertChain(_dir, Top);

        private byte[]? _qemuContent;

        public void Dispose() => _dir.Dispose();
    }

    private const string BaseSecret = "pw";          // QemuTools.CreateLuksImage's secret
    private const string TopSecret = "top-secret";

    private static byte[] Bytes(string s) => Encoding.UTF8.GetBytes(s);

    /// <summary>base.qcow2 (qemu-img, 0x12 at 0..1M) under top.qcow2 (ours, its own secret, 0x34 at 512k..1.5M).</summary>
    private static (string Base, string Top) MakeChain(TempDir dir)
    {
        string @base = dir.File("base.qcow2");
        string top = dir.File("top.qcow2");
        QemuTools.CreateLuksImage(@base, "4M");
        QemuTools.IoEncrypted(@base, BaseSecret, "write -P 0x12 0 1M");
        Qcow2Creator.Create(top, new Qcow2CreateOptions { Size = 4 << 20, BackingFile = "base.qcow2", BackingFormat = "qcow2" });
        Qcow2Encryption.AddLuksEncryption(top, new LuksCreateOptions { Secret = Bytes(TopSecret), Iterations = 1000 });
        using var image = Qcow2Image.Open(top, Options(BaseSecret) with { ReadOnly = false });
        image.Write(512 << 10, Enumerable.Repeat((byte)0x34, 1 << 20).ToArray());
        return (@base, top);
    }

    private static Qcow2OpenOptions Options(string? backingSecret, List<ExternalFileRequest>? seen = null) => new()
    {
        ReadOnly = true,
        ExternalFilePolicy = ExternalFilePolicy.AllowAll,
        EncryptionSecret = Bytes(TopSecret),
        BackingSecretResolver = r =>
        {
            seen?.Add(r);
            return backingSecret is null ? null : Bytes(backingSecret);
        },
    };

    private static byte[] QemuConvertChain(TempDir dir, string top)
    {
        string raw = dir.File("qemu.raw");
        QemuTools.Img("convert", "--object", $"secret,id=t,data={TopSecret}", "--object", $"secret,id=b,data={BaseSecret}",
            "--image-opts", $"driver=qcow2,file.filename={top},encrypt.key-secret=t,backing.encrypt.key-secret=b", "-O", "raw", raw);
        return File.ReadAllBytes(raw);
    }

    [Fact]
    public void Open_ResolverGivesBackingItsOwnSecret_ReadsAsQemuImgConvert()
    {
        var (@base, top) = (chain.Base, chain.Top);
        var seen = new List<ExternalFileRequest>();
        using var image = Qcow2Image.Open(top, Options(BaseSecret, seen));
        var ours = new byte[image.Size];
        image.Read(0, ours);
        byte[] expected = chain.QemuContent;
        Assert.Equal(0x12, expected[0]);
        Assert.Equal(0x34, expected[1 << 20]);
        Assert.Equal(expected, ours);
        var request = Assert.Single(seen);
        Assert.Equal(ExternalFileKind.Backing, request.Kind);
        Assert.Equal("base.qcow2", request.NameInImage);
        Assert.Equal(Path.GetFullPath(@base), Path.GetFullPath(request.ResolvedPath));
        Assert.False(image.IsLocked);
        Assert.False(((Qcow2Image)image.Backing!).IsLocked);
    }

    [Fact]
    public void Open_ResolverGivesNoSecret_BackingLockedAndItsDataRefused()
    {
        string top = chain.Top;
        using var image = Qcow2Image.Open(top, Options(backingSecret: null));
        Assert.False(image.IsLocked);
        Assert.True(((Qcow2Image)image.Backing!).IsLocked);
        // The overlay's own clusters read; what would come from the backing file does not.
        var own = new byte[64 << 10];
        image.Read(1 << 20, own);
        Assert.All(own, b => Assert.Equal(0x34, b));
        Assert.Throws<Qcow2UnsupportedImageException>(() => image.Read(0, new byte[4096]));
    }

    [Fact]
    public void Open_ResolverGivesWrongSecret_KeyExceptionNamesTheBackingFile()
    {
        var (@base, top) = (chain.Base, chain.Top);
        var e = Assert.Throws<Qcow2KeyException>(() => Qcow2Image.Open(top, Options("wrong")).Dispose());
        Assert.Equal(Path.GetFullPath(@base), e.BackingFile);
    }

    [Fact]
    public void Open_NoResolver_ChainSharesTheSecretAndBackingRefusesIt()
    {
        var (@base, top) = (chain.Base, chain.Top);
        var options = new Qcow2OpenOptions { ReadOnly = true, ExternalFilePolicy = ExternalFilePolicy.AllowAll, EncryptionSecret = Bytes(TopSecret) };
        var e = Assert.Throws<Qcow2KeyException>(() => Qcow2Image.Open(top, options).Dispose());
        Assert.Equal(Path.GetFullPath(@base), e.BackingFile);
        // The top image itself accepted the secret: without its backing chain it opens.
        using var alone = Qcow2Image.Open(top, options with { OpenBackingChain = false });
        Assert.False(alone.IsLocked);
    }

    [Fact]
    public void Open_TopWrongSecret_KeyExceptionWithoutBackingFile()
    {
        string top = chain.Top;
        var e = Assert.Throws<Qcow2KeyException>(() => Qcow2Image.Open(top, Options(BaseSecret) with { EncryptionSecret = Bytes("nope") }).Dispose());
        Assert.Null(e.BackingFile);
    }
}
