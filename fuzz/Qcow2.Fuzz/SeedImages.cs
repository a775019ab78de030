using System.Buffers.Binary;
using System.Text;
using Qcow2.Spans;
using Qcow2.Spans.Layout;
using Qcow2.Volume;
using Qcow2.Volume.Crypto;
using Qcow2.Volume.Storage;

namespace Qcow2.Fuzz;

/// <summary>
/// Builds the valid images the campaign starts from: small images of varied geometry, written
/// through the library so that they hold L2 tables, refcount blocks, zero and compressed clusters.
/// </summary>
public static class SeedImages
{
    /// <summary>A named seed image; encrypted seeds carry the secret that unlocks them.</summary>
    public sealed record Seed(string Name, byte[] Bytes, byte[]? Secret = null);

    /// <summary>The secret of every encrypted seed (UTF-8, as QEMU's secret object holds it).</summary>
    public static readonly byte[] EncryptedSecret = Encoding.UTF8.GetBytes("fuzz-secret");

    /// <summary>
    /// PBKDF2 iterations of the LUKS seeds' key slot: QEMU's minimum. The key derivation is the dominant
    /// cost of an encrypted open, and mutations that raise it are the point of some inputs, not of all.
    /// </summary>
    public const uint LuksIterations = 1000;

    /// <summary>
    /// Encrypted seeds: LUKS aes-256-xts-plain64/sha256 (QEMU's default), LUKS aes-128-cbc-essiv:sha256
    /// with sha1 for PBKDF2 and the splitter, and legacy AES (crypt_method 1), all holding data, zero
    /// clusters and a freed cluster written through the library with <see cref="EncryptedSecret"/>.
    /// </summary>
    public static IReadOnlyList<Seed> BuildEncrypted()
    {
        var xts = new LuksCreateOptions { Secret = EncryptedSecret, Iterations = LuksIterations };
        var cbc = xts with { CipherAlg = "aes-128", CipherMode = "cbc", IvgenAlg = "essiv", IvgenHashAlg = "sha256", HashAlg = "sha1" };
        return
        [
            new Seed("luks-xts-64k", MakeEncryptedImage(new Qcow2CreateOptions { Size = 8L << 20 }, xts), EncryptedSecret),
            new Seed("luks-cbc-essiv-4k", MakeEncryptedImage(new Qcow2CreateOptions { Size = 4L << 20, ClusterSize = 4096 }, cbc), EncryptedSecret),
            new Seed("aes-legacy-v2-64k", MakeEncryptedImage(new Qcow2CreateOptions { Size = 8L << 20, Compat = "0.10" }, luks: null), EncryptedSecret),
        ];
    }

    /// <summary>
    /// The data pattern the seeds hold from guest offset 0 (the encrypted seeds' first
    /// <c>3 × cluster</c> bytes, minus the discarded second cluster).
    /// </summary>
    public static byte Pattern(long offset) => (byte)(offset * 7 + 3);

    /// <summary>The built-in seeds plus the given corpus files.</summary>
    public static IReadOnlyList<Seed> Build(IEnumerable<string> corpusFiles)
    {
        var seeds = new List<Seed>();
        var shapes = new (string Name, Qcow2CreateOptions Options)[]
        {
            ("v3-64k", new Qcow2CreateOptions { Size = 8L << 20 }),
            ("v3-4k-rc1", new Qcow2CreateOptions { Size = 4L << 20, ClusterSize = 4096, RefcountBits = 1 }),
            ("v3-512-rc64", new Qcow2CreateOptions { Size = 1L << 20, ClusterSize = 512, RefcountBits = 64 }),
            ("v2-64k", new Qcow2CreateOptions { Size = 8L << 20, Compat = "0.10" }),
            ("v3-32k-ext", new Qcow2CreateOptions { Size = 8L << 20, ClusterSize = 32768, ExtendedL2 = true }),
            ("v3-64k-zstd", new Qcow2CreateOptions { Size = 8L << 20, CompressionType = CompressionType.Zstd }),
            ("v3-64k-lazy", new Qcow2CreateOptions { Size = 8L << 20, LazyRefcounts = true }),
        };
        foreach (var (name, options) in shapes)
        {
            seeds.Add(new Seed(name, MakeImage(options)));
        }

        foreach (var file in corpusFiles)
        {
            seeds.Add(new Seed(Path.GetFileName(file), File.ReadAllBytes(file)));
        }

        return seeds;
    }

    private static byte[] MakeImage(Qcow2CreateOptions options)
    {
        var storage = new MemoryStorage("seed");
        Qcow2Creator.Create(storage, options);
        using (var image = Qcow2Image.Open(storage))
        {
            int cluster = options.ClusterSize;
            var data = new byte[Math.Max(cluster * 3, 8192)];
            for (int i = 0; i < data.Length; i++) data[i] = Pattern(i);
            image.Write(0, data);                                   // normal clusters
            image.Write(image.Size / 2 + 100, data.AsSpan(0, 5000)); // unaligned, a second L2 range
            image.WriteZeroes(cluster * 4, cluster * 2);            // zero clusters
            if (options.Compat != "0.10")
            {
                image.WriteCompressed(cluster * 8, data.AsSpan(0, cluster)); // a compressed cluster
            }
            image.Discard(cluster, cluster);                        // a freed cluster to reuse
            image.Flush();
        }

        return storage.ToArray();
    }

    /// <summary>
    /// A new image made encrypted before any data: LUKS through <see cref="Qcow2Encryption.AddLuksEncryption(IStorage, LuksCreateOptions, Qcow2OpenOptions?)"/>,
    /// or, with <paramref name="luks"/> null, legacy AES by hand as the spec defines it (crypt_method 1
    /// in the header, no header extension, no key material: the secret's first 16 bytes are the key).
    /// </summary>
    private static byte[] MakeEncryptedImage(Qcow2CreateOptions options, LuksCreateOptions? luks)
    {
        var storage = new MemoryStorage("seed");
        Qcow2Creator.Create(storage, options);
        if (luks is not null)
        {
            Qcow2Encryption.AddLuksEncryption(storage, luks);
        }
        else
        {
            Span<byte> method = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(method, Qcow2Constants.CryptAes);
            storage.Write(HeaderView.CryptMethodOffset, method);
        }

        using (var image = Qcow2Image.Open(storage, new Qcow2OpenOptions { EncryptionSecret = EncryptedSecret }))
        {
            int cluster = options.ClusterSize;
            var data = new byte[Math.Max(cluster * 3, 8192)];
            for (int i = 0; i < data.Length; i++) data[i] = Pattern(i);
            image.Write(0, data);                                    // whole clusters
            image.Write(image.Size / 2 + 100, data.AsSpan(0, 5000)); // partial sectors, a second L2 range
            image.WriteZeroes(cluster * 4, cluster * 2);             // zero clusters
            image.Discard(cluster, cluster);                         // a freed cluster to reuse
            image.Flush();
        }

        return storage.ToArray();
    }
}
