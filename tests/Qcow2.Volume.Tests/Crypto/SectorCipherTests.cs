using System.Security.Cryptography;
using Qcow2.Volume.Crypto;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>
/// The sector ciphers against published known answers. XTS: the XTS-AES vectors 1, 2, 3 and 10 of
/// IEEE Std 1619-2007, Annex B (the standard's own values; the same table is carried by the test
/// suites of independent XTS implementations, which is where they were cross-checked). The data unit
/// sequence number is the plain64 IV, so sector number = sequence number. CBC: against .NET's own CBC.
/// </summary>
public sealed class SectorCipherTests
{
    [Theory]
    // Vector 1: Key1 = Key2 = 0, sequence 0, 32 zero bytes.
    [InlineData("00000000000000000000000000000000", "00000000000000000000000000000000", 0L,
        "0000000000000000000000000000000000000000000000000000000000000000",
        "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e")]
    // Vector 2.
    [InlineData("11111111111111111111111111111111", "22222222222222222222222222222222", 0x3333333333L,
        "4444444444444444444444444444444444444444444444444444444444444444",
        "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0")]
    // Vector 3.
    [InlineData("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0", "22222222222222222222222222222222", 0x3333333333L,
        "4444444444444444444444444444444444444444444444444444444444444444",
        "af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89")]
    public void Xts_Ieee1619Vectors_EncryptAndDecrypt(string key1, string key2, long sequence, string plain, string cipher)
    {
        using var xts = new XtsSectorCipher(Convert.FromHexString(key1 + key2), IvGeneratorKind.Plain64, essiv: null);
        byte[] data = Convert.FromHexString(plain);
        xts.Encrypt(data, sequence);
        Assert.Equal(cipher, Convert.ToHexStringLower(data));
        xts.Decrypt(data, sequence);
        Assert.Equal(plain, Convert.ToHexStringLower(data));
    }

    /// <summary>IEEE 1619 vector 10: XTS-AES-256, a whole 512-byte data unit, sequence 0xff.</summary>
    [Fact]
    public void Xts_Ieee1619Vector10_FullSector()
    {
        const string expected =
            "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd" +
            "5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca" +
            "2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f" +
            "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a" +
            "84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae" +
            "9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac" +
            "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed4385" +
            "1ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151";
        byte[] key = Convert.FromHexString(
            "2718281828459045235360287471352662497757247093699959574966967627" +
            "3141592653589793238462643383279502884197169399375105820974944592");
        byte[] data = new byte[512];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)i;
        using var xts = new XtsSectorCipher(key, IvGeneratorKind.Plain64, essiv: null);
        xts.Encrypt(data, 0xff);
        Assert.Equal(expected, Convert.ToHexStringLower(data));
        xts.Decrypt(data, 0xff);
        for (int i = 0; i < data.Length; i++) Assert.Equal((byte)i, data[i]);
    }

    /// <summary>A run of sectors is the same as each sector on its own with its own number (batching is invisible).</summary>
    [Theory]
    [InlineData("xts")]
    [InlineData("cbc")]
    public void Encrypt_ManySectorsAtOnce_EqualsSectorBySector(string mode)
    {
        var rng = new Random(1619);
        byte[] key = new byte[mode == "xts" ? 64 : 32];
        rng.NextBytes(key);
        byte[] plain = new byte[512 * 300];   // more than one 64 KiB batch
        rng.NextBytes(plain);
        using SectorCipher c = mode == "xts"
            ? new XtsSectorCipher(key, IvGeneratorKind.Plain64, null)
            : new CbcSectorCipher(key, IvGeneratorKind.Plain64, null);
        byte[] whole = (byte[])plain.Clone();
        c.Encrypt(whole, 1000);
        for (int s = 0; s < 300; s++)
        {
            byte[] one = plain.AsSpan(s * 512, 512).ToArray();
            c.Encrypt(one, 1000 + s);
            Assert.True(one.AsSpan().SequenceEqual(whole.AsSpan(s * 512, 512)), $"sector {s}");
        }
        c.Decrypt(whole, 1000);
        Assert.Equal(plain, whole);
    }

    /// <summary>
    /// CBC with plain64 IVs is AES-CBC restarted at each sector with the little-endian sector number as
    /// IV (checked sector by sector with .NET's own CBC), over several batches and a short last sector.
    /// </summary>
    [Fact]
    public void Cbc_Plain64_IsAesCbcWithSectorNumberIv()
    {
        byte[] key = Convert.FromHexString("000102030405060708090a0b0c0d0e0f");
        byte[] plain = new byte[300 * 512 + 256];
        new Random(7).NextBytes(plain);
        using var c = new CbcSectorCipher(key, IvGeneratorKind.Plain64, null);
        byte[] data = (byte[])plain.Clone();
        const long first = 0x0102030405L;
        c.Encrypt(data, first);
        using var aes = Aes.Create();
        aes.Key = key;
        for (int s = 0; s * 512 < plain.Length; s++)
        {
            byte[] iv = new byte[16];
            BitConverter.TryWriteBytes(iv, first + s);   // little-endian on every .NET platform we run
            Assert.True(BitConverter.IsLittleEndian);
            int length = Math.Min(512, plain.Length - s * 512);
            byte[] expected = aes.EncryptCbc(plain.AsSpan(s * 512, length), iv, PaddingMode.None);
            Assert.True(expected.AsSpan().SequenceEqual(data.AsSpan(s * 512, length)), $"sector {s}");
        }
        c.Decrypt(data, first);
        Assert.Equal(plain, data);
    }

    /// <summary>plain keeps only the low 32 bits of the sector number; plain64 all of them.</summary>
    [Fact]
    public void Plain_SectorAbove4G_WrapsWherePlain64DoesNot()
    {
        byte[] key = new byte[32];
        using var plain = new XtsSectorCipher(key, IvGeneratorKind.Plain, null);
        using var plain64 = new XtsSectorCipher(key, IvGeneratorKind.Plain64, null);
        byte[] a = new byte[512], b = new byte[512], c = new byte[512];
        plain.Encrypt(a, (1L << 32) + 5);
        plain.Encrypt(b, 5);
        plain64.Encrypt(c, (1L << 32) + 5);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Theory]
    [InlineData("sha1", 32)]
    [InlineData("sha256", 64)]
    [InlineData("sha512", 48)]
    [InlineData("sha256", 20)]
    public void AntiForensic_SplitThenMerge_GivesTheKeyBack(string hashName, int keyBytes)
    {
        Assert.True(CryptoHash.TryGet(hashName, out var hash));
        byte[] key = RandomNumberGenerator.GetBytes(keyBytes);
        byte[] material = new byte[keyBytes * 4000];
        AntiForensicSplitter.Split(key, 4000, hash, material);
        byte[] merged = new byte[keyBytes];
        AntiForensicSplitter.Merge(material, 4000, hash, merged);
        Assert.Equal(key, merged);
        material[1234] ^= 1;   // any damaged stripe loses the key
        AntiForensicSplitter.Merge(material, 4000, hash, merged);
        Assert.NotEqual(key, merged);
    }
}
