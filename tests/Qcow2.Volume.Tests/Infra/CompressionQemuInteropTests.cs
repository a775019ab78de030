using System.Buffers.Binary;
using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Compression;

namespace Qcow2.Volume.Tests.Infra;

/// <summary>
/// Clusters compressed by <c>qemu-img convert -c</c> decompress through our codecs. The image is
/// walked here with a minimal reader written from the spec (header, L1, L2, compressed descriptor),
/// independent of the volume layer.
/// </summary>
public sealed class CompressionQemuInteropTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("zlib", 65536)]
    [InlineData("zlib", 4096)]
    [InlineData("zstd", 65536)]
    [InlineData("zstd", 2097152)]
    public void Decompress_ClustersCompressedByQemuImg_EqualTheSource(string type, int clusterSize)
    {
        int clusters = Math.Max(4, (4 << 20) / clusterSize);
        var raw = new byte[(long)clusters * clusterSize > 8 << 20 ? 8 << 20 : clusters * clusterSize];
        for (int c = 0; c * clusterSize < raw.Length; c++)
        {
            var chunk = CompressionTests.Compressible(clusterSize, c);
            chunk.AsSpan(0, Math.Min(clusterSize, raw.Length - c * clusterSize)).CopyTo(raw.AsSpan(c * clusterSize));
        }
        var rawPath = _dir.File("src.raw");
        var qcowPath = _dir.File("c.qcow2");
        File.WriteAllBytes(rawPath, raw);
        QemuTools.Img("convert", "-c", "-f", "raw", "-O", "qcow2",
            "-o", $"compression_type={type},cluster_size={clusterSize}", rawPath, qcowPath);

        var image = File.ReadAllBytes(qcowPath);
        var codec = CompressionCodecs.Get(type == "zlib" ? CompressionType.Zlib : CompressionType.Zstd);
        int compressed = 0;
        var cluster = new byte[clusterSize];
        foreach (var (guest, host, length) in CompressedClusters(image))
        {
            codec.Decompress(image.AsSpan((int)host, (int)Math.Min(length, image.Length - host)), cluster);
            Assert.Equal(raw.AsSpan((int)guest, clusterSize).ToArray(), cluster);
            compressed++;
        }
        Assert.True(compressed >= raw.Length / clusterSize - 1, $"only {compressed} compressed clusters found");
    }

    /// <summary>(guest offset, host offset, bytes to the end of the last sector) of each compressed cluster.</summary>
    private static IEnumerable<(long Guest, long Host, long Length)> CompressedClusters(byte[] image)
    {
        int clusterBits = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(20));
        long clusterSize = 1L << clusterBits;
        int l1Size = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(36));
        long l1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(40));
        int l2Entries = (int)(clusterSize / 8);
        // Spec "Compressed Clusters Descriptor": x = 62 - (cluster_bits - 8).
        int x = 62 - (clusterBits - 8);
        const ulong OffsetMask = (1UL << 56) - 1 & ~0x1FFUL;
        var result = new List<(long, long, long)>();
        for (int i = 0; i < l1Size; i++)
        {
            ulong l1 = BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan((int)l1Offset + 8 * i));
            long l2Offset = (long)(l1 & OffsetMask);
            if (l2Offset == 0) continue;
            for (int j = 0; j < l2Entries; j++)
            {
                ulong l2 = BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan((int)l2Offset + 8 * j));
                if ((l2 & (1UL << 62)) == 0) continue;
                ulong descriptor = l2 & ((1UL << 62) - 1);
                long host = (long)(descriptor & ((1UL << x) - 1));
                long sectors = (long)(descriptor >> x) + 1;
                long length = sectors * 512 - (host & 511);
                result.Add((((long)i * l2Entries + j) * clusterSize, host, length));
            }
        }
        return result;
    }
}
