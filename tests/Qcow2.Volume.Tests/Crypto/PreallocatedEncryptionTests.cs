using System.Buffers.Binary;
using System.Text;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Crypto;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>
/// Encryption added to preallocated images (preallocation=metadata/falloc/full, data_file_raw=on), as
/// qemu-img creates them: the same host layout as qemu-img's (LUKS region after the preallocated data,
/// same file length), and the preallocated clusters read as zeros through qemu-io (qemu-img's own
/// images read the decryption of host zeros there instead).
/// </summary>
public sealed class PreallocatedEncryptionTests
{
    private const string Secret = "pw";   // QemuTools.CreateLuksImage's secret
    private const long Size = 4 << 20;

    private static byte[] SecretBytes => Encoding.UTF8.GetBytes(Secret);

    private static LuksCreateOptions Luks => new() { Secret = SecretBytes, Iterations = 1000, HashAlg = "sha512" };

    private static Preallocation Parse(string mode) => mode switch
    {
        "metadata" => Preallocation.Metadata,
        "falloc" => Preallocation.Falloc,
        _ => Preallocation.Full,
    };

    /// <summary>The host offset and length of the LUKS region, from the full disk encryption header extension (spec: type 0x0537be77).</summary>
    private static (long Offset, long Length) LuksRegion(string image)
    {
        byte[] head = new byte[4096];
        using (var f = File.OpenRead(image)) f.ReadExactly(head);
        // Extensions follow the header: 72 bytes in version 2, header_length (byte 100) in version 3.
        int pos = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(4)) == 2 ? 72 : (int)BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(100));
        while (pos + 8 <= head.Length)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(pos));
            int len = (int)BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(pos + 4));
            if (type == 0) break;
            if (type == 0x0537be77)
                return ((long)BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(pos + 8)), (long)BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(pos + 16)));
            pos += 8 + ((len + 7) & ~7);
        }
        throw new InvalidDataException("no full disk encryption header extension");
    }

    [Theory]
    [InlineData("metadata", "1.1")]
    [InlineData("falloc", "1.1")]
    [InlineData("full", "0.10")]
    public void AddLuksEncryption_Preallocated_LayoutAsQemuImgAndReadsZeros(string mode, string compat)
    {
        using var dir = new TempDir();
        string ours = dir.File("ours.qcow2");
        string theirs = dir.File("theirs.qcow2");
        Qcow2Creator.Create(ours, new Qcow2CreateOptions { Size = Size, Compat = compat, Preallocation = Parse(mode) });
        Qcow2Encryption.AddLuksEncryption(ours, Luks);
        QemuTools.CreateLuksImage(theirs, "4M", $",preallocation={mode},compat={compat}");

        Assert.Equal(LuksRegion(theirs), LuksRegion(ours));
        Assert.Equal(new FileInfo(theirs).Length, new FileInfo(ours).Length);
        var (code, output) = QemuTools.CheckEncrypted(ours, Secret);
        Assert.True(code == 0, output);
        QemuTools.IoEncrypted(ours, Secret, "read -P 0 0 4M");

        // Writes land in the preallocated clusters: the file does not grow.
        long length = new FileInfo(ours).Length;
        using (var image = Qcow2Image.Open(ours, new Qcow2OpenOptions { EncryptionSecret = SecretBytes }))
            image.Write(100_000, Enumerable.Repeat((byte)0x5d, 70_000).ToArray());
        Assert.Equal(length, new FileInfo(ours).Length);
        QemuTools.IoEncrypted(ours, Secret, "read -P 0 0 100000", "read -P 0x5d 100000 70000", "read -P 0 170000 4024304");
    }

    [Theory]
    [InlineData("metadata", "1.1")]
    [InlineData("falloc", "0.10")]
    public void AddLegacyAesEncryption_Preallocated_ReadsZerosAndKeepsLayout(string mode, string compat)
    {
        using var dir = new TempDir();
        string ours = dir.File("ours.qcow2");
        string plain = dir.File("plain.qcow2");
        var create = new Qcow2CreateOptions { Size = Size, Compat = compat, Preallocation = Parse(mode) };
        Qcow2Creator.Create(ours, create);
        Qcow2Creator.Create(plain, create);
        Qcow2Encryption.AddLegacyAesEncryption(ours, SecretBytes);
        Assert.Equal(new FileInfo(plain).Length, new FileInfo(ours).Length);
        QemuTools.IoEncrypted(ours, Secret, "read -P 0 0 4M");
        var (code, output) = QemuTools.CheckEncrypted(ours, Secret);
        Assert.True(code == 0, output);
    }

    [Theory]
    [InlineData("luks")]
    [InlineData("aes")]
    public void AddEncryption_DataFileRaw_QemuReadsZerosThenOurData(string format)
    {
        using var dir = new TempDir();
        string image = dir.File("img.qcow2");
        string data = dir.File("img.data");
        Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = Size, DataFile = data, DataFileRaw = true });
        var open = new Qcow2OpenOptions { ExternalFilePolicy = ExternalFilePolicy.AllowAll, OpenBackingChain = false };
        if (format == "luks") Qcow2Encryption.AddLuksEncryption(image, Luks, open);
        else Qcow2Encryption.AddLegacyAesEncryption(image, SecretBytes, open);

        QemuTools.IoEncrypted(image, Secret, "read -P 0 0 4M");
        using (var q = Qcow2Image.Open(image, open with { EncryptionSecret = SecretBytes }))
        {
            Assert.True(q.Info.DataFileRaw);
            q.Write(1 << 20, Enumerable.Repeat((byte)0x77, 65536).ToArray());
        }
        QemuTools.IoEncrypted(image, Secret, "read -P 0 0 1M", "read -P 0x77 1M 64k", "read -P 0 1088k 2944k");
        // The data file holds ciphertext only: no run of the pattern, and not the plaintext zeros either.
        byte[] raw = File.ReadAllBytes(data);
        Assert.Equal(-1, raw.AsSpan().IndexOf(Enumerable.Repeat((byte)0x77, 64).ToArray()));
        Assert.Equal(-1, raw.AsSpan().IndexOf(new byte[512]));
    }

    [Fact]
    public void AddLuksEncryption_PreallocatedClusterWithData_RefusedAndUnchanged()
    {
        using var dir = new TempDir();
        string image = dir.File("img.qcow2");
        Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = Size, Preallocation = Preallocation.Metadata });
        using (var q = Qcow2Image.Open(image)) q.Write(3 << 20, new byte[] { 9 });
        byte[] before = File.ReadAllBytes(image);
        Assert.Throws<InvalidOperationException>(() => Qcow2Encryption.AddLuksEncryption(image, Luks));
        Assert.Equal(before, File.ReadAllBytes(image));
    }
}
