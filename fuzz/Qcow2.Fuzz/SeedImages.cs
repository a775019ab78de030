using Qcow2.Spans;
using Qcow2.Volume;
using Qcow2.Volume.Storage;

namespace Qcow2.Fuzz;

/// <summary>
/// Builds the valid images the campaign starts from: small images of varied geometry, written
/// through the library so that they hold L2 tables, refcount blocks, zero and compressed clusters.
/// </summary>
public static class SeedImages
{
    /// <summary>A named seed image.</summary>
    public sealed record Seed(string Name, byte[] Bytes);

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
            for (int i = 0; i < data.Length; i++) data[i] = (byte)(i * 7 + 3);
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
}
