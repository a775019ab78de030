using System.Text;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Operations;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>Block status of encrypted images: QEMU gives no host offsets for them (their bytes on disk are not the guest's).</summary>
public sealed class EncryptedImageStatusTests(EncryptedImageTemplates templates) : IClassFixture<EncryptedImageTemplates>
{
    private const string Secret = EncryptedImageTemplates.Secret;

    [Theory]
    [InlineData("", true)]
    [InlineData("", false)]
    [InlineData("aes", true)]
    public void MapJson_EncryptedImage_MatchesQemuImg(string kind, bool withSecret)
    {
        using var dir = new TempDir();
        string image = templates.Copy(dir.Path, kind);
        QemuTools.IoEncrypted(image, Secret,
            "write -P 1 0 64k", "write -c -P 2 64k 64k", "write -z 128k 64k", "write -P 3 192k 64k", "write -z 192k 64k", "write -P 4 1m 4k");
        var args = new List<string> { "map", "--output=json" };
        args.AddRange(QemuTools.EncryptedImageArgs(image, Secret));
        string expected = QemuTools.Img(args.ToArray());

        var options = new Qcow2OpenOptions { ReadOnly = true, EncryptionSecret = withSecret ? Encoding.UTF8.GetBytes(Secret) : null };
        using var img = Qcow2Image.Open(image, options);
        var w = new StringWriter { NewLine = "\n" };
        ImageMapper.WriteJson(ImageMapper.Map(img), w);
        Assert.Equal(expected.ReplaceLineEndings("\n"), w.ToString());
        Assert.All(ImageMapper.Map(img), e => Assert.Null(e.Offset));
        // qemu-img's human map refuses too (its message is checked by the mapper's own tests).
        Assert.Throws<NotSupportedException>(() => ImageMapper.WriteHuman(ImageMapper.Map(img), new StringWriter()));
    }
}
