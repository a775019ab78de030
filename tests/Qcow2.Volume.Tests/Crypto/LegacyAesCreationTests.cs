using System.Text;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Crypto;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>Legacy AES images made by Qcow2Encryption.AddLegacyAesEncryption, against qemu-img's own (encrypt.format=aes).</summary>
public sealed class LegacyAesCreationTests
{
    private const string Secret = "aes-pw";

    private static byte[] SecretBytes => Encoding.UTF8.GetBytes(Secret);

    private static void QemuCreateAes(string path, string size, string extra = "") =>
        QemuTools.Img("create", "-q", "-f", "qcow2", "--object", $"secret,id=s0,data={Secret}",
            "-o", "encrypt.format=aes,encrypt.key-secret=s0" + extra, path, size);

    [Theory]
    [InlineData("1.1", 65536, 4L << 20)]
    [InlineData("0.10", 65536, 4L << 20)]
    [InlineData("1.1", 4096, 100L << 20)]
    public void AddLegacyAesEncryption_FreshImage_ByteIdenticalToQemuImg(string compat, int clusterSize, long size)
    {
        using var dir = new TempDir();
        string ours = dir.File("ours.qcow2");
        string theirs = dir.File("theirs.qcow2");
        Qcow2Creator.Create(ours, new Qcow2CreateOptions { Size = size, Compat = compat, ClusterSize = clusterSize });
        Qcow2Encryption.AddLegacyAesEncryption(ours, SecretBytes);
        QemuCreateAes(theirs, size.ToString(System.Globalization.CultureInfo.InvariantCulture), $",compat={compat},cluster_size={clusterSize}");
        Assert.Equal(File.ReadAllBytes(theirs), File.ReadAllBytes(ours));
    }

    [Fact]
    public void AddLegacyAesEncryption_Storage_QemuIoReadsWhatWeWrote()
    {
        using var dir = new TempDir();
        string path = dir.File("aes.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 4 << 20 });
        using (var file = FileStorage.Open(path, writable: true))
            Qcow2Encryption.AddLegacyAesEncryption(file, SecretBytes);
        using (var image = Qcow2Image.Open(path, new Qcow2OpenOptions { EncryptionSecret = SecretBytes }))
        {
            Assert.Equal(Qcow2.Spans.CryptMethod.Aes, image.Info.Encryption);
            var data = new byte[100_000];
            data.AsSpan().Fill(0x3c);
            image.Write(70_000, data);
        }
        QemuTools.IoEncrypted(path, Secret, "read -P 0x3c 70000 100000", "read -P 0 0 70000", "read -P 0 170000 100000");
        // No plaintext on the host.
        Assert.Equal(-1, File.ReadAllBytes(path).AsSpan().IndexOf(Enumerable.Repeat((byte)0x3c, 512).ToArray()));
    }

    [Fact]
    public void AddLegacyAesEncryption_AlreadyEncrypted_Throws()
    {
        using var dir = new TempDir();
        string path = dir.File("aes.qcow2");
        QemuCreateAes(path, "1M");
        byte[] before = File.ReadAllBytes(path);
        Assert.Throws<InvalidOperationException>(() => Qcow2Encryption.AddLegacyAesEncryption(path, SecretBytes));
        Assert.Equal(before, File.ReadAllBytes(path));
    }

    [Fact]
    public void AddLegacyAesEncryption_ImageWithData_ThrowsAndLeavesItPlain()
    {
        using var dir = new TempDir();
        string path = dir.File("plain.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20 });
        using (var image = Qcow2Image.Open(path)) image.Write(4096, new byte[] { 1, 2, 3 });
        byte[] before = File.ReadAllBytes(path);
        Assert.Throws<InvalidOperationException>(() => Qcow2Encryption.AddLegacyAesEncryption(path, SecretBytes));
        Assert.Equal(before, File.ReadAllBytes(path));
    }
}
