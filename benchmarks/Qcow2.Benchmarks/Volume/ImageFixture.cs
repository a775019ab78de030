using Qcow2.Volume;
using Qcow2.Volume.Storage;

namespace Qcow2.Benchmarks.Volume;

/// <summary>Builds the images the volume benchmarks run on: fully written, in memory or in a temp file.</summary>
internal static class ImageFixture
{
    public const long DiskSize = 64L << 20;

    /// <summary>A qcow2 image whose every cluster is allocated (written with a pattern).</summary>
    public static (IStorage Storage, string? Path) CreateAllocated(bool inMemory, int clusterSize = 65536, bool extendedL2 = false, bool compressed = false)
    {
        IStorage storage;
        string? path = null;
        if (inMemory)
        {
            storage = new MemoryStorage("bench");
        }
        else
        {
            path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"qcow2-bench-{Guid.NewGuid():N}.qcow2");
            storage = FileStorage.Create(path);
        }

        var options = new Qcow2CreateOptions { Size = DiskSize, ClusterSize = clusterSize, ExtendedL2 = extendedL2 };
        Qcow2Creator.Create(storage, options);
        using (var image = Qcow2Image.Open(storage))
        {
            var chunk = new byte[clusterSize];
            for (long offset = 0; offset < DiskSize; offset += clusterSize)
            {
                for (int i = 0; i < chunk.Length; i += 512) chunk[i] = (byte)(offset >> 16);
                if (compressed) image.WriteCompressed(offset, chunk);
                else image.Write(offset, chunk);
            }

            image.Flush();
        }

        return (storage, path);
    }

    /// <summary>Random 4 KiB-aligned offsets, fixed seed.</summary>
    public static long[] RandomOffsets(int count, int alignment, long limit)
    {
        var random = new Random(42);
        var offsets = new long[count];
        for (int i = 0; i < count; i++) offsets[i] = random.NextInt64(limit / alignment) * alignment;
        return offsets;
    }
}
