using System.Buffers.Binary;
using System.Text;
using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Crypto;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>
/// A damaged or hostile LUKS header is refused with a typed error before any slow or large work, and a
/// refused open writes nothing.
/// </summary>
public sealed class LuksHeaderValidationTests(EncryptedImageTemplates templates) : IClassFixture<EncryptedImageTemplates>
{
    // LUKS1 phdr offsets (luks1-notes.md, section 1) and key slot offsets (section 2).
    private const int CipherNameAt = 8, MkDigestAt = 112, MkIterationsAt = 164, SlotsAt = 208, SlotSize = 48;
    private const int SlotActiveAt = 0, SlotIterationsAt = 4, SlotKeyOffsetAt = 40, SlotStripesAt = 44;

    private static readonly byte[] Secret = Encoding.UTF8.GetBytes(EncryptedImageTemplates.Secret);

    private byte[] Image()
    {
        using var dir = new TempDir();
        return File.ReadAllBytes(templates.Copy(dir.Path, ""));
    }

    /// <summary>The LUKS region offset, from the full disk encryption header extension (found independently of the library).</summary>
    private static int LuksOffset(byte[] image)
    {
        int at = image.AsSpan(0, 65536).IndexOf(new byte[] { 0x05, 0x37, 0xbe, 0x77 });
        Assert.True(at > 0);
        return checked((int)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(at + 8)));
    }

    private static T OpenRefused<T>(byte[] image, byte[]? secret = null)
        where T : Exception
    {
        byte[] before = (byte[])image.Clone();
        var storage = new MemoryStorage(image, writable: true);
        var e = Assert.Throws<T>(() => Qcow2Image.Open(storage, new Qcow2OpenOptions { EncryptionSecret = secret ?? Secret }));
        Assert.Equal(before, storage.ToArray());
        return e;
    }

    [Fact]
    public void Open_CorrectSecret_Unlocks()
    {
        var image = Image();
        using var img = Qcow2Image.Open(new MemoryStorage(image, writable: true), new Qcow2OpenOptions { EncryptionSecret = Secret });
        Assert.False(img.IsReadOnly);
    }

    [Fact]
    public void Open_WrongSecret_ThrowsKeyException() =>
        OpenRefused<Qcow2KeyException>(Image(), "pW"u8.ToArray());

    [Fact]
    public void Open_DamagedKeyMaterial_ThrowsKeyException()
    {
        var image = Image();
        int luks = LuksOffset(image);
        long material = BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(luks + SlotsAt + SlotKeyOffsetAt)) * 512L;
        image[luks + material + 5000] ^= 0x40;
        OpenRefused<Qcow2KeyException>(image);
    }

    [Fact]
    public void Open_DamagedMasterKeyDigest_ThrowsKeyException()
    {
        var image = Image();
        image[LuksOffset(image) + MkDigestAt + 3] ^= 1;
        OpenRefused<Qcow2KeyException>(image);
    }

    [Theory]
    [InlineData(3999u)]
    [InlineData(0u)]
    [InlineData(uint.MaxValue)]
    public void Open_SlotStripesNotQemus_ThrowsCorrupt(uint stripes)
    {
        var image = Image();
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(LuksOffset(image) + SlotsAt + SlotStripesAt), stripes);
        var e = OpenRefused<Qcow2CorruptImageException>(image);
        Assert.Contains("stripes", e.Structure, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_SlotStateGarbage_ThrowsCorrupt()
    {
        var image = Image();
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(LuksOffset(image) + SlotsAt + SlotSize * 3 + SlotActiveAt), 0x12345678);
        OpenRefused<Qcow2CorruptImageException>(image);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(0xFFFFFFF0u)]
    public void Open_KeyMaterialOutsideRegion_ThrowsCorrupt(uint sector)
    {
        var image = Image();
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(LuksOffset(image) + SlotsAt + SlotKeyOffsetAt), sector);
        OpenRefused<Qcow2CorruptImageException>(image);
    }

    [Fact]
    public void Open_AbsurdSlotIterations_ThrowsUnsupportedWithoutHashing()
    {
        var image = Image();
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(LuksOffset(image) + SlotsAt + SlotIterationsAt), uint.MaxValue);
        // Four billion PBKDF2 rounds would take hours: the refusal must come first.
        var e = OpenRefused<Qcow2UnsupportedImageException>(image);
        Assert.Equal("encryption", e.Feature);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(uint.MaxValue)]
    public void Open_BadDigestIterations_Refused(uint iterations)
    {
        var image = Image();
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(LuksOffset(image) + MkIterationsAt), iterations);
        if (iterations == 0) OpenRefused<Qcow2CorruptImageException>(image);
        else OpenRefused<Qcow2UnsupportedImageException>(image);
    }

    [Theory]
    [InlineData("twofish")]
    [InlineData("serpent")]
    [InlineData("cast5")]
    [InlineData("des3_ede")]
    public void Open_OtherCipher_ThrowsUnsupportedNamingIt(string cipher)
    {
        var image = Image();
        var field = image.AsSpan(LuksOffset(image) + CipherNameAt, 32);
        field.Clear();
        Encoding.ASCII.GetBytes(cipher).CopyTo(field);
        var e = OpenRefused<Qcow2UnsupportedImageException>(image);
        Assert.Contains(cipher, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_UnknownHash_ThrowsUnsupportedNamingIt()
    {
        var image = Image();
        var field = image.AsSpan(LuksOffset(image) + 72, 32);
        field.Clear();
        "whirlpool"u8.CopyTo(field);
        var e = OpenRefused<Qcow2UnsupportedImageException>(image);
        Assert.Contains("whirlpool", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_UnencryptedImageWithSecret_IgnoresTheSecret()
    {
        using var dir = new TempDir();
        string image = dir.File("plain.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", image, "1M");
        QemuTools.Io(image, "qcow2", "write -P 0x17 0 4k");
        using var img = Qcow2Image.Open(image, new Qcow2OpenOptions { EncryptionSecret = Secret });
        byte[] data = new byte[4096];
        img.Read(0, data);
        Assert.All(data, b => Assert.Equal(0x17, b));
    }

    [Fact]
    public void Open_WrongSecret_MessageIsQemus()
    {
        // qemu-io's words for the same image and secret, so a CLI can print the message as qemu-img does.
        using var dir = new TempDir();
        string image = templates.Copy(dir.Path, "");
        var args = new List<string>(QemuTools.EncryptedImageArgs(image, "wrong")) { "-c", "read 0 512" };
        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuIo, args.ToArray());
        Assert.NotEqual(0, code);
        var e = Assert.Throws<Qcow2KeyException>(() => Qcow2Image.Open(image, new Qcow2OpenOptions { EncryptionSecret = "wrong"u8.ToArray() }));
        Assert.Contains(e.Message, stdout + stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_EncryptedWithoutSecretReadWrite_RefusedAsBefore()
    {
        var image = Image();
        byte[] before = (byte[])image.Clone();
        var storage = new MemoryStorage(image, writable: true);
        Assert.Equal("encryption", Assert.Throws<Qcow2UnsupportedImageException>(() => Qcow2Image.Open(storage)).Feature);
        Assert.Equal(before, storage.ToArray());
    }
}
