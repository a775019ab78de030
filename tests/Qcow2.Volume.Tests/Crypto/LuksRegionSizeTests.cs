using System.Globalization;
using System.Text.Json;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Crypto;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>LuksCreateOptions.GetRegionBytes / GetMeasureBytes against qemu-img's payload offsets and measure.</summary>
public sealed class LuksRegionSizeTests
{
    /// <summary>qemu-img measure --output=json; retried when QEMU's PBKDF2 calibration fails (see QemuTools.CreateLuksImage).</summary>
    private static (long Required, long Fully) QemuMeasure(string size, string options)
    {
        for (int attempt = 1; ; attempt++)
        {
            var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "measure", "--object", "secret,id=s0,data=pw", "-O", "qcow2",
                "--size", size, "-o", options, "--output=json");
            if (code == 0)
            {
                using var json = JsonDocument.Parse(stdout);
                return (json.RootElement.GetProperty("required").GetInt64(), json.RootElement.GetProperty("fully-allocated").GetInt64());
            }
            if (attempt == 10 || !stderr.Contains("Unable to get accurate CPU usage", StringComparison.Ordinal))
                throw new InvalidOperationException($"qemu-img measure exited {code}: {stderr}");
        }
    }

    [Theory]
    // Each qemu-img LUKS measure costs seconds of PBKDF2 calibration here: a few cases cover key sizes
    // 16/32/64 and clusters smaller and larger than the region.
    [InlineData("aes-256", "xts", 65536)]
    [InlineData("serpent-256", "xts", 4096)]
    [InlineData("cast5-128", "cbc", 2097152)]
    public void GetMeasureBytes_AsQemuImgMeasureAddsForLuks(string alg, string mode, int clusterSize)
    {
        string cs = ",cluster_size=" + clusterSize.ToString(CultureInfo.InvariantCulture);
        var plain = QemuMeasure("1G", "cluster_size=" + clusterSize.ToString(CultureInfo.InvariantCulture));
        var luks = QemuMeasure("1G", $"encrypt.format=luks,encrypt.key-secret=s0,encrypt.hash-alg=sha512,encrypt.iter-time=10,encrypt.cipher-alg={alg},encrypt.cipher-mode={mode}" + cs);
        var o = new LuksCreateOptions { Secret = [], CipherAlg = alg, CipherMode = mode };
        Assert.Equal(luks.Required - plain.Required, o.GetMeasureBytes(clusterSize));
        Assert.Equal(luks.Fully - plain.Fully, o.GetMeasureBytes(clusterSize));
    }

    [Theory]
    [InlineData("aes-128", "cbc")]
    [InlineData("aes-256", "xts")]
    public void GetRegionBytes_EqualsQemuImgMeasureAtSmallestClusters(string alg, string mode)
    {
        // With 512-byte clusters nothing is rounded: the difference is the payload offset itself.
        var plain = QemuMeasure("64M", "cluster_size=512");
        var luks = QemuMeasure("64M", $"encrypt.format=luks,encrypt.key-secret=s0,encrypt.hash-alg=sha512,encrypt.iter-time=10,encrypt.cipher-alg={alg},encrypt.cipher-mode={mode},cluster_size=512");
        Assert.Equal(luks.Fully - plain.Fully, new LuksCreateOptions { Secret = [], CipherAlg = alg, CipherMode = mode }.GetRegionBytes());
    }

    [Fact]
    public void GetRegionBytes_OurOwnImage_EqualsTheRegionWeWrite()
    {
        using var dir = new TempDir();
        string image = dir.File("ours.qcow2");
        Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = 1 << 20 });
        var o = new LuksCreateOptions { Secret = "pw"u8.ToArray(), CipherAlg = "aes-128", CipherMode = "cbc", Iterations = 1000 };
        Qcow2Encryption.AddLuksEncryption(image, o);
        using var q = Qcow2Image.Open(image, new Qcow2OpenOptions { ReadOnly = true });
        Assert.Equal(o.GetRegionBytes(), q.Info.Luks!.PayloadOffset);
    }

    [Theory]
    [InlineData("rot13", "xts", 65536)]
    [InlineData("aes-256", "gcm", 65536)]
    [InlineData("aes-256", "xts", 1000)]
    [InlineData("aes-256", "xts", 4 << 20)]
    public void GetMeasureBytes_Invalid_ThrowsArgumentException(string alg, string mode, int clusterSize)
    {
        var o = new LuksCreateOptions { Secret = [], CipherAlg = alg, CipherMode = mode };
        Assert.ThrowsAny<ArgumentException>(() => o.GetMeasureBytes(clusterSize));
    }
}
