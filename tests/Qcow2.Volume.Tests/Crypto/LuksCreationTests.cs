using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Crypto;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>LUKS images made by this library (Qcow2Encryption.AddLuksEncryption) open and check clean in qemu-img, both ways.</summary>
public sealed class LuksCreationTests(EncryptedImageTemplates templates) : IClassFixture<EncryptedImageTemplates>
{
    private const string Secret = "s3cret";

    private static LuksCreateOptions Options(uint iterations = 1000) =>
        new() { Secret = Encoding.UTF8.GetBytes(Secret), Iterations = iterations };

    private static string NewPlainImage(TempDir dir, string name = "new.qcow2", string compat = "1.1")
    {
        string image = dir.File(name);
        Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = 4 << 20, Compat = compat });
        return image;
    }

    private static JsonElement QemuEncryptInfo(string image)
    {
        using var json = JsonDocument.Parse(QemuTools.Img("info", "--output=json", image));
        return json.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("encrypt").Clone();
    }

    public static TheoryData<string, string, string, string, string> Variants => new()
    {
        // cipher-alg, cipher-mode, ivgen-alg, ivgen-hash-alg, hash-alg
        { "aes-256", "xts", "plain64", "sha256", "sha256" },
        { "aes-128", "xts", "plain64", "sha256", "sha1" },
        { "aes-256", "cbc", "essiv", "sha256", "sha512" },
        { "aes-128", "cbc", "plain", "sha256", "sha384" },
        { "aes-192", "xts", "plain64", "sha256", "sha256" },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void AddLuksEncryption_QemuOpensReadsAndWrites(string cipher, string mode, string ivgen, string ivHash, string hash)
    {
        using var dir = new TempDir();
        string image = NewPlainImage(dir);
        Qcow2Encryption.AddLuksEncryption(image, Options() with
        {
            CipherAlg = cipher, CipherMode = mode, IvgenAlg = ivgen, IvgenHashAlg = ivHash, HashAlg = hash,
        });

        var enc = QemuEncryptInfo(image);
        Assert.Equal("luks", enc.GetProperty("format").GetString());
        Assert.Equal(cipher, enc.GetProperty("cipher-alg").GetString());
        Assert.Equal(mode, enc.GetProperty("cipher-mode").GetString());
        Assert.Equal(ivgen, enc.GetProperty("ivgen-alg").GetString());
        Assert.Equal(hash, enc.GetProperty("hash-alg").GetString());

        var (code, output) = QemuTools.CheckEncrypted(image, Secret);
        Assert.True(code == 0, output);

        // qemu writes, we read; we write, qemu reads.
        QemuTools.IoEncrypted(image, Secret, "write -P 0x3c 0 100k", "write -P 0x4d 1m 64k");
        byte[] model = QemuTools.ReadEncryptedWithQemu(image, Secret);
        Assert.Equal(0x3c, model[0]);
        using (var img = Qcow2Image.Open(image, new Qcow2OpenOptions { EncryptionSecret = Encoding.UTF8.GetBytes(Secret) }))
        {
            byte[] ours = new byte[img.Size];
            img.Read(0, ours);
            Assert.Equal(model, ours);
            byte[] data = Enumerable.Range(0, 200_000).Select(i => (byte)(i * 31 + 7)).ToArray();
            img.Write(2_000_001, data);
            data.CopyTo(model, 2_000_001);
        }
        Assert.Equal(model, QemuTools.ReadEncryptedWithQemu(image, Secret));
        (code, output) = QemuTools.CheckEncrypted(image, Secret);
        Assert.True(code == 0, output);
    }

    [Fact]
    public void AddLuksEncryption_Defaults_LayOutTheRegionAsQemuImgDoes()
    {
        using var dir = new TempDir();
        string ours = NewPlainImage(dir);
        Qcow2Encryption.AddLuksEncryption(ours, Options());
        string qemus = templates.Copy(dir.Path, "", "qemu.qcow2");   // qemu-img's defaults except the hash
        static (ulong Offset, ulong Length, uint Crypt, ulong L1) Layout(string path)
        {
            byte[] head = File.ReadAllBytes(path).AsSpan(0, 65536).ToArray();
            int at = head.AsSpan().IndexOf(new byte[] { 0x05, 0x37, 0xbe, 0x77 });
            Assert.True(at > 0);
            return (BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(at + 8)), BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(at + 16)),
                BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(32)), BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(40)));
        }
        Assert.Equal(Layout(qemus), Layout(ours));
        Assert.Equal(new FileInfo(qemus).Length, new FileInfo(ours).Length);
        var enc = QemuEncryptInfo(ours);
        Assert.Equal(2_068_480, enc.GetProperty("payload-offset").GetInt64());
        var slots = enc.GetProperty("slots").EnumerateArray().ToList();
        Assert.Equal(8, slots.Count);
        Assert.True(slots[0].GetProperty("active").GetBoolean());
        Assert.All(slots.Skip(1), s => Assert.False(s.GetProperty("active").GetBoolean()));
    }

    [Fact]
    public void AddLuksEncryption_IterTime_CalibratesAndQemuUnlocks()
    {
        using var dir = new TempDir();
        string image = NewPlainImage(dir);
        Qcow2Encryption.AddLuksEncryption(image, new LuksCreateOptions { Secret = Encoding.UTF8.GetBytes(Secret), IterTimeMs = 10 });
        var enc = QemuEncryptInfo(image);
        Assert.True(enc.GetProperty("slots")[0].GetProperty("iters").GetInt64() >= 1000);
        Assert.True(enc.GetProperty("master-key-iters").GetInt64() >= 1000);
        QemuTools.IoEncrypted(image, Secret, "write -P 0x01 0 4k");
        Assert.Throws<Qcow2KeyException>(() => Qcow2Image.Open(image, new Qcow2OpenOptions { EncryptionSecret = "nope"u8.ToArray() }));
    }

    [Fact]
    public void AddLuksEncryption_Version2ImageWithBackingFile_KeepsBackingNameAndQemuReads()
    {
        using var dir = new TempDir();
        string baseImage = dir.File("base.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", baseImage, "4M");
        QemuTools.Io(baseImage, "qcow2", "write -P 0x61 0 4M");
        string image = dir.File("top.qcow2");
        Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = 4 << 20, Compat = "0.10", BackingFile = "base.qcow2", BackingFormat = "qcow2" });
        Qcow2Encryption.AddLuksEncryption(image, Options());

        using (var json = JsonDocument.Parse(QemuTools.Img("info", "--output=json", image)))
        {
            Assert.Equal("base.qcow2", json.RootElement.GetProperty("backing-filename").GetString());
            Assert.Equal("qcow2", json.RootElement.GetProperty("backing-filename-format").GetString());
        }
        byte[] model = new byte[4 << 20];
        Array.Fill(model, (byte)0x61);
        var open = new Qcow2OpenOptions { EncryptionSecret = Encoding.UTF8.GetBytes(Secret), ExternalFilePolicy = Qcow2.Volume.Chain.ExternalFilePolicy.AllowAll };
        using (var img = Qcow2Image.Open(image, open))
        {
            img.Write(70_000, new byte[] { 1, 2, 3 });
            model[70_000] = 1; model[70_001] = 2; model[70_002] = 3;
        }
        Assert.Equal(model, QemuTools.ReadEncryptedWithQemu(image, Secret));
        var (code, output) = QemuTools.CheckEncrypted(image, Secret);
        Assert.True(code == 0, output);
    }

    [Theory]
    [InlineData("twofish-256", "xts", "plain64", "sha256")]
    [InlineData("aes-256", "ecb", "plain64", "sha256")]
    [InlineData("aes-192", "cbc", "plain64", "sha256")]
    [InlineData("aes-256", "xts", "random", "sha256")]
    [InlineData("aes-256", "xts", "plain64", "md5")]
    [InlineData("aes-256", "cbc", "essiv", "sha256")]   // valid: the control case
    public void AddLuksEncryption_UnsupportedOptions_ThrowArgumentExceptionAndLeaveImage(string cipher, string mode, string ivgen, string hash)
    {
        using var dir = new TempDir();
        string image = NewPlainImage(dir);
        byte[] before = File.ReadAllBytes(image);
        var o = Options() with { CipherAlg = cipher, CipherMode = mode, IvgenAlg = ivgen, HashAlg = hash };
        if (cipher == "aes-256" && mode == "cbc" && ivgen == "essiv")
        {
            Qcow2Encryption.AddLuksEncryption(image, o);
            Assert.NotEqual(before.Length, new FileInfo(image).Length);
            return;
        }
        Assert.Throws<ArgumentException>(() => Qcow2Encryption.AddLuksEncryption(image, o));
        Assert.Equal(before, File.ReadAllBytes(image));
    }

    [Fact]
    public void AddLuksEncryption_ImageWithData_Refused()
    {
        using var dir = new TempDir();
        string image = NewPlainImage(dir);
        QemuTools.Io(image, "qcow2", "write -P 0x11 0 4k");
        byte[] before = File.ReadAllBytes(image);
        Assert.Throws<InvalidOperationException>(() => Qcow2Encryption.AddLuksEncryption(image, Options()));
        Assert.Equal(before, File.ReadAllBytes(image));
        Assert.Throws<InvalidOperationException>(() => Qcow2Encryption.AddLuksEncryption(templates.Copy(dir.Path, "", "enc.qcow2"), Options()));
    }
}
