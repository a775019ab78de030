using Qcow2.Spans;
using Qcow2.Volume;
using Qcow2.Volume.Storage;

namespace Qcow2.Cli.Framework;

// Stand-ins for library API that DESIGN.md names but Qcow2.Volume does not have yet
// (Qcow2Measure). Each is replaced by the
// library's type when it lands; until then the commands that need them fail with a one-line
// "not available yet" error instead of not building.

/// <summary>
/// Stand-in for DESIGN's Qcow2Measure (Operations/): the metadata comes from Qcow2.Spans'
/// MetadataSizeCalculator; this adds the source's allocated clusters and its bitmaps.
/// </summary>
internal static class Qcow2Measure
{
    public readonly record struct Result(long Required, long FullyAllocated, long? Bitmaps);

    public static Result Measure(Qcow2CreateOptions options, IDiskImage? source)
    {
        int clusterBits = System.Numerics.BitOperations.Log2((uint)options.ClusterSize);
        if (options.ClusterSize <= 0 || (1 << clusterBits) != options.ClusterSize)
            throw new ArgumentException("Cluster size must be a power of two between 512 and 2048k");
        if (options.RefcountBits <= 0 || !System.Numerics.BitOperations.IsPow2(options.RefcountBits) || options.RefcountBits > 64)
            throw new ArgumentException("Refcount width must be a power of two and may not exceed 64 bits");
        int refcountOrder = System.Numerics.BitOperations.Log2((uint)options.RefcountBits);
        long clusterSize = options.ClusterSize;
        long virtualSize = options.Size;

        long allocated = 0;
        if (options.Preallocation is Preallocation.Full or Preallocation.Falloc)
        {
            allocated = RoundUp(virtualSize, clusterSize);
        }
        else if (source is not null)
        {
            // Data clusters of the target: every cluster touched by a range holding data.
            long limit = Math.Min(source.Size, virtualSize);
            long countedEnd = 0;
            for (long offset = 0; offset < limit;)
            {
                var st = source.GetBlockStatus(offset, limit - offset);
                long len = Math.Clamp(st.Length, 1, limit - offset);
                bool zero = (st.Flags & BlockStatusFlags.Zero) != 0 || (st.Flags & BlockStatusFlags.Allocated) == 0;
                if (!zero && (st.Flags & BlockStatusFlags.Data) != 0)
                {
                    long from = Math.Max(offset / clusterSize * clusterSize, countedEnd);
                    long to = RoundUp(offset + len, clusterSize);
                    if (to > from) allocated += to - from;
                    countedEnd = Math.Max(countedEnd, to);
                }
                offset += len;
            }
        }

        if (!MetadataSizeCalculator.TryCalculate(clusterBits, refcountOrder, options.ExtendedL2, virtualSize, allocated, 0, out var size))
            throw new ArgumentException("The image size is too large for this cluster size");

        long? bitmaps = null;
        if (source is Qcow2Image q)
        {
            long total = 0, directory = 0;
            foreach (var b in q.Bitmaps)
            {
                long bits = (q.Size + b.Granularity - 1) / b.Granularity;
                long clusters = ((bits + 7) / 8 + clusterSize - 1) / clusterSize;
                total += clusters * clusterSize + RoundUp(clusters * 8, clusterSize);
                directory += RoundUp(24 + System.Text.Encoding.UTF8.GetByteCount(b.Name), 8);
            }
            bitmaps = total + RoundUp(directory, clusterSize);
        }
        return new Result(size.Required, size.FullyAllocated, bitmaps);
    }

    private static long RoundUp(long value, long unit) => (value + unit - 1) / unit * unit;
}
