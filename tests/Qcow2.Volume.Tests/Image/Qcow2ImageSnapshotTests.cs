using Qcow2.Tests.Shared;
using static Qcow2.Volume.Tests.Image.ImageTestKit;

namespace Qcow2.Volume.Tests.Image;

/// <summary>Internal snapshots (made with <c>qemu-img snapshot -c</c>) read as <c>qemu-img convert -l</c> reads them.</summary>
public sealed class Qcow2ImageSnapshotTests
{
    [Theory]
    [InlineData("cluster_size=65536")]
    [InlineData("cluster_size=4096,refcount_bits=4")]
    [InlineData("extended_l2=on")]
    [InlineData("compat=0.10")]
    public void OpenSnapshot_EachSnapshot_EqualsQemuConvertOfThatSnapshot(string options)
    {
        using var dir = new TempDir();
        string image = dir.File("s.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", options, image, "3M");
        QemuTools.Io(image, "qcow2", "write -P 0x01 0 1M", "write -P 0x02 2000000 10000");
        QemuTools.Img("snapshot", "-c", "first", image);
        QemuTools.Io(image, "qcow2", "write -P 0x03 500000 700000", "write -z 0 65536");
        QemuTools.Img("snapshot", "-c", "second", image);
        QemuTools.Io(image, "qcow2", "write -P 0x04 100 100", "discard 1048576 1048576");

        using var img = Qcow2Image.Open(image, TrustedReadOnly);
        Assert.Equal(["first", "second"], img.Snapshots.Select(s => s.Name).ToArray());
        AssertSameBytes(QemuRaw(dir, image), ReadAll(img), "active");
        foreach (var s in img.Snapshots)
        {
            using var snap = img.OpenSnapshot(s.Name);
            Assert.True(snap.IsReadOnly);
            AssertSameBytes(QemuRaw(dir, image, snapshot: s.Name), ReadAll(snap), "snapshot " + s.Name);
        }
        // By id too.
        using var byId = img.OpenSnapshot(img.Snapshots[0].Id);
        Assert.Equal(img.Snapshots[0].VirtualSize, byId.Size);
    }

    [Fact]
    public void OpenSnapshot_UnknownName_ThrowsKeyNotFound()
    {
        using var dir = new TempDir();
        string image = dir.File("s.qcow2");
        QemuTools.Img("create", "-f", "qcow2", image, "1M");
        QemuTools.Img("snapshot", "-c", "only", image);
        using var img = Qcow2Image.Open(image, TrustedReadOnly);
        Assert.Throws<KeyNotFoundException>(() => img.OpenSnapshot("missing"));
    }

    [Fact]
    public void OpenSnapshot_SnapshotView_RefusesWrites()
    {
        using var dir = new TempDir();
        string image = dir.File("s.qcow2");
        QemuTools.Img("create", "-f", "qcow2", image, "1M");
        QemuTools.Img("snapshot", "-c", "only", image);
        using var img = Qcow2Image.Open(image, Trusted);
        using var snap = img.OpenSnapshot("only");
        Assert.Throws<InvalidOperationException>(() => snap.Write(0, new byte[10]));
    }
}
