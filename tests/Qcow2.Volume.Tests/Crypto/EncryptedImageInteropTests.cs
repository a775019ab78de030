using System.Text;
using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Crypto;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>
/// Encrypted images against qemu-img/qemu-io 7.2: data QEMU wrote reads the same through this library,
/// and data this library writes reads the same through QEMU, with qemu-img check clean.
/// </summary>
public sealed class EncryptedImageInteropTests(EncryptedImageTemplates templates) : IClassFixture<EncryptedImageTemplates>
{
    private const string Secret = EncryptedImageTemplates.Secret;

    private static Qcow2OpenOptions Unlocked(bool readOnly = false) =>
        new() { EncryptionSecret = Encoding.UTF8.GetBytes(Secret), ReadOnly = readOnly };

    /// <summary>LUKS variants qemu-img creates (on top of the helper's SHA-512 PBKDF2).</summary>
    public static TheoryData<string> LuksVariants => new()
    {
        "",                                                                          // aes-256-xts-plain64
        ",encrypt.cipher-alg=aes-128",                                               // aes-128-xts-plain64
        ",encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256", // aes-256-cbc-essiv:sha256
        ",encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain",    // aes-128-cbc-plain
        ",extended_l2=on",                                                           // subcluster COW regions
    };

    private string CreateImage(TempDir dir, string kind) => templates.Copy(dir.Path, kind);

    private static byte[] ReadAll(Qcow2Image img)
    {
        var data = new byte[img.Size];
        img.Read(0, data);
        return data;
    }

    [Theory]
    [MemberData(nameof(LuksVariants))]
    [InlineData("aes")]
    public void Read_QemuWrittenData_MatchesQemuConvert(string kind)
    {
        using var dir = new TempDir();
        string image = CreateImage(dir, kind);
        QemuTools.IoEncrypted(image, Secret,
            "write -P 0x5a 0 64k", "write -P 0x11 1000 100", "write -P 0x22 200k 300k", "write -z 320k 64k", "write -P 0x33 3m 1m");
        byte[] expected = QemuTools.ReadEncryptedWithQemu(image, Secret);
        Assert.Equal(0x5a, expected[0]);   // the oracle really decrypted

        using var img = Qcow2Image.Open(image, Unlocked(readOnly: true));
        Assert.Equal(expected, ReadAll(img));
        // Unaligned reads crossing sectors and clusters.
        byte[] part = new byte[70001];
        img.Read(999, part);
        Assert.True(part.AsSpan().SequenceEqual(expected.AsSpan(999, part.Length)));
    }

    [Theory]
    [MemberData(nameof(LuksVariants))]
    [InlineData("aes")]
    public void Write_OurData_QemuReadsItBackAndChecksClean(string kind)
    {
        using var dir = new TempDir();
        string image = CreateImage(dir, kind);
        QemuTools.IoEncrypted(image, Secret, "write -P 0x77 0 128k");
        byte[] model = QemuTools.ReadEncryptedWithQemu(image, Secret);
        var rng = new Random(2024);

        using (var img = Qcow2Image.Open(image, Unlocked()))
        {
            Assert.False(img.IsReadOnly);
            void Write(long offset, int length)
            {
                byte[] data = new byte[length];
                rng.NextBytes(data);
                img.Write(offset, data);
                data.CopyTo(model, offset);
            }
            Write(0, 65536);            // overwrite in place, whole cluster
            Write(70000, 1234);         // in place, partial sectors at both ends
            Write(300001, 5);           // new cluster, inside one sector
            Write(1 << 20, 200000);     // several new clusters
            Write(4 * 1024 * 1024 - 700, 700);   // the very end
            img.WriteZeroes(65536, 65536);
            Array.Clear(model, 65536, 65536);
            img.WriteZeroes(400000, 1000);
            Array.Clear(model, 400000, 1000);
            img.Discard(2 << 20, 1 << 20);       // nothing there: stays zero
            Assert.Equal(model, ReadAll(img));
        }

        Assert.Equal(model, QemuTools.ReadEncryptedWithQemu(image, Secret));
        var (code, output) = QemuTools.CheckEncrypted(image, Secret);
        Assert.True(code == 0, output);
        using (var again = Qcow2Image.Open(image, Unlocked(readOnly: true)))
            Assert.Equal(model, ReadAll(again));
    }

    [Fact]
    public void Write_PartialClusterOverBacking_CopiesDecryptedBackingData()
    {
        using var dir = new TempDir();
        string baseImage = dir.File("base.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", baseImage, "4M");
        QemuTools.Io(baseImage, "qcow2", "write -P 0x61 0 4M");
        string image = dir.File("top.qcow2");
        QemuTools.CreateLuksImage(image, "4M", ",backing_file=base.qcow2,backing_fmt=qcow2");

        byte[] model = new byte[4 << 20];
        Array.Fill(model, (byte)0x61);
        var options = Unlocked() with { ExternalFilePolicy = Qcow2.Volume.Chain.ExternalFilePolicy.AllowAll };
        using (var img = Qcow2Image.Open(image, options))
        {
            byte[] data = Enumerable.Range(0, 3000).Select(i => (byte)(i * 7)).ToArray();
            img.Write(100_000, data);
            data.CopyTo(model, 100_000);
            Assert.Equal(model, ReadAll(img));
        }
        Assert.Equal(model, QemuTools.ReadEncryptedWithQemu(image, Secret));
        var (code, output) = QemuTools.CheckEncrypted(image, Secret);
        Assert.True(code == 0, output);
    }

    /// <summary>With an external data file the host offset (the IV's sector) is the guest offset in the data file.</summary>
    [Fact]
    public void ReadWrite_ExternalDataFile_RoundTripsWithQemu()
    {
        using var dir = new TempDir();
        string image = dir.File("df.qcow2");
        string data = dir.File("df.raw");
        QemuTools.CreateLuksImage(image, "4M", ",data_file=" + data);
        QemuTools.IoEncrypted(image, Secret, "write -P 0x42 0 100k", "write -P 0x43 2m 64k");
        byte[] model = QemuTools.ReadEncryptedWithQemu(image, Secret);
        Assert.Equal(0x42, model[0]);
        var options = Unlocked() with { ExternalFilePolicy = Qcow2.Volume.Chain.ExternalFilePolicy.AllowAll };
        using (var img = Qcow2Image.Open(image, options))
        {
            Assert.Equal(model, ReadAll(img));
            byte[] bytes = Enumerable.Range(0, 5000).Select(i => (byte)(i * 3)).ToArray();
            img.Write(99_999, bytes);
            bytes.CopyTo(model, 99_999);
            img.Write(3_000_000, bytes);
            bytes.CopyTo(model, 3_000_000);
        }
        Assert.Equal(model, QemuTools.ReadEncryptedWithQemu(image, Secret));
        var (code, output) = QemuTools.CheckEncrypted(image, Secret);
        Assert.True(code == 0, output);
    }

    [Fact]
    public async Task ReadWriteAsync_Unaligned_RoundTripsWithQemu()
    {
        using var dir = new TempDir();
        string image = CreateImage(dir, "");
        QemuTools.IoEncrypted(image, Secret, "write -P 0x21 0 256k");
        byte[] model = QemuTools.ReadEncryptedWithQemu(image, Secret);
        await using (var img = Qcow2Image.Open(image, Unlocked()))
        {
            byte[] bytes = Enumerable.Range(0, 70_000).Select(i => (byte)(i * 11)).ToArray();
            await img.WriteAsync(12_345, bytes);
            bytes.CopyTo(model, 12_345);
            await img.WriteAsync(300_007, bytes.AsMemory(0, 3));
            bytes.AsSpan(0, 3).CopyTo(model.AsSpan(300_007));
            byte[] back = new byte[90_001];
            await img.ReadAsync(5_003, back);
            Assert.True(back.AsSpan().SequenceEqual(model.AsSpan(5_003, back.Length)));
        }
        Assert.Equal(model, QemuTools.ReadEncryptedWithQemu(image, Secret));
    }

    [Fact]
    public void OpenSnapshot_QemuSnapshotOfLuksImage_ReadsItsDecryptedContent()
    {
        using var dir = new TempDir();
        string image = CreateImage(dir, "");
        QemuTools.IoEncrypted(image, Secret, "write -P 0x01 0 128k");
        var args = new List<string> { "snapshot" };
        args.AddRange(QemuTools.EncryptedImageArgs(image, Secret));
        args.AddRange(["-c", "snap1"]);
        QemuTools.Img(args.ToArray());
        byte[] atSnapshot = QemuTools.ReadEncryptedWithQemu(image, Secret);
        QemuTools.IoEncrypted(image, Secret, "write -P 0x02 0 64k");

        byte[] now;
        using (var img = Qcow2Image.Open(image, Unlocked()))
        {
            now = ReadAll(img);
            Assert.Equal(0x02, now[0]);
            Assert.Equal(0x01, now[65536]);
            using (var snap = img.OpenSnapshot("snap1"))
            {
                byte[] old = new byte[snap.Size];
                snap.Read(0, old);
                Assert.Equal(atSnapshot, old);
            }
            // A write to a cluster shared with the snapshot copies it (COW) and re-encrypts at its new host offset.
            img.Write(65536 + 100, new byte[] { 9 });
            now[65536 + 100] = 9;
            Assert.Equal(now, ReadAll(img));
        }
        Assert.Equal(now, QemuTools.ReadEncryptedWithQemu(image, Secret));
        var (code, output) = QemuTools.CheckEncrypted(image, Secret);
        Assert.True(code == 0, output);
    }

    [Fact]
    public void Write_ConcurrentPartialSectorWrites_NoneIsLost()
    {
        using var dir = new TempDir();
        string image = CreateImage(dir, "");
        byte[] model = new byte[4 << 20];
        using (var img = Qcow2Image.Open(image, Unlocked()))
        {
            // 64 writers, each 13 bytes at a distinct place; many share sectors (read-modify-write).
            Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
            {
                long offset = 4096 + i * 37;
                byte[] data = Enumerable.Repeat((byte)(i + 1), 13).ToArray();
                img.WriteAsync(offset, data).AsTask().GetAwaiter().GetResult();
            });
            for (int i = 0; i < 64; i++) model.AsSpan(4096 + i * 37, 13).Fill((byte)(i + 1));
            Assert.Equal(model, ReadAll(img));
        }
        Assert.Equal(model, QemuTools.ReadEncryptedWithQemu(image, Secret));
    }

    [Fact]
    public void Open_WrongSecret_ThrowsKeyExceptionAndLeavesFileUnchanged()
    {
        using var dir = new TempDir();
        string image = CreateImage(dir, "");
        byte[] before = File.ReadAllBytes(image);
        var e = Assert.Throws<Qcow2KeyException>(() => Qcow2Image.Open(image, new Qcow2OpenOptions { EncryptionSecret = "wrong"u8.ToArray() }));
        Assert.Contains("cannot unlock", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(image));
    }

    [Fact]
    public void Open_NoSecret_StaysMetadataOnly()
    {
        using var dir = new TempDir();
        string image = CreateImage(dir, "");
        using var img = Qcow2Image.Open(image, new Qcow2OpenOptions { ReadOnly = true });
        Assert.Equal("encryption", Assert.Throws<Qcow2UnsupportedImageException>(() => img.Read(0, new byte[512])).Feature);
    }

    [Fact]
    public void WriteCompressed_EncryptedImage_Refused()
    {
        using var dir = new TempDir();
        string image = CreateImage(dir, "");
        byte[] before = File.ReadAllBytes(image);
        using (var img = Qcow2Image.Open(image, Unlocked()))
        {
            var e = Assert.Throws<Qcow2UnsupportedImageException>(() => img.WriteCompressed(0, new byte[65536]));
            Assert.Equal("encryption", e.Feature);
        }
        var (code, output) = QemuTools.CheckEncrypted(image, Secret);
        Assert.True(code == 0, output);
    }

    /// <summary>QEMU 7.2 stores compressed clusters of encrypted images unencrypted; they read as QEMU reads them.</summary>
    [Fact]
    public void Read_QemuCompressedClusterInEncryptedImage_ReadsAsQemu()
    {
        using var dir = new TempDir();
        string image = CreateImage(dir, "");
        QemuTools.IoEncrypted(image, Secret, "write -c -P 0x5a 64k 64k", "write -P 0x12 0 4k");
        byte[] expected = QemuTools.ReadEncryptedWithQemu(image, Secret);
        Assert.Equal(0x5a, expected[65536]);
        using var img = Qcow2Image.Open(image, Unlocked(readOnly: true));
        Assert.Equal(expected, ReadAll(img));
    }
}
