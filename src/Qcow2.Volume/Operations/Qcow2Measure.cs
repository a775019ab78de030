using System.Text;
using Qcow2.Spans;

namespace Qcow2.Volume.Operations;

/// <summary>What <c>qemu-img measure</c> reports for a qcow2 target.</summary>
/// <param name="Required">Bytes the target needs for the given data (metadata of a fully allocated image plus the data).</param>
/// <param name="FullyAllocated">Bytes of a fully allocated target.</param>
/// <param name="Bitmaps">Bytes for the source's persistent bitmaps, or null when qemu-img would not report them.</param>
public readonly record struct MeasureResult(long Required, long FullyAllocated, long? Bitmaps);

/// <summary>
/// <c>qemu-img measure -O qcow2</c>: the metadata size comes from <see cref="MetadataSizeCalculator"/>
/// (QEMU's preallocation arithmetic); this adds what a source image holds, counted as qemu-img
/// counts it, and the space its persistent bitmaps would take.
/// </summary>
public static class Qcow2Measure
{
    /// <summary>Measures a target with <paramref name="options"/>, for a new image (<see cref="Qcow2CreateOptions.Size"/>) or for converting <paramref name="source"/>.</summary>
    /// <param name="options">The target's creation options; with a source its size is the source's.</param>
    /// <param name="source">The image to be converted, or null.</param>
    /// <exception cref="ArgumentException">Invalid options, or an image too large for the cluster size.</exception>
    public static MeasureResult Measure(Qcow2CreateOptions options, IDiskImage? source = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        long sourceSize = source?.Size ?? options.Size;
        // Everything but the size is validated as for creation; the size is the source's.
        (options with { Size = Math.Max(0, sourceSize) }).Validate();
        int clusterBits = System.Numerics.BitOperations.Log2((uint)options.ClusterSize);
        int refcountOrder = System.Numerics.BitOperations.Log2((uint)options.RefcountBits);
        long cs = options.ClusterSize;
        long virtualSize = RoundUp(sourceSize, cs);

        long required = 0;
        if (source is not null)
        {
            if (options.BackingFile is not null)
            {
                // qemu-img cannot know what the new backing file shares with the source: all of it.
                required = virtualSize;
            }
            else
            {
                using var status = new ChainStatus(source);
                for (long offset = 0; offset < sourceSize;)
                {
                    var e = status.Get(offset, sourceSize - offset);
                    long pnum = e.Length;
                    if (!e.Zero && e.Data && e.Allocated)
                    {
                        // qemu-img's count: extend to the end of the cluster, and add the offset into
                        // the first cluster too.
                        pnum = RoundUp(offset + pnum, cs) - offset;
                        required += offset % cs + pnum;
                    }
                    offset += pnum;
                }
            }
        }
        if (options.Preallocation is Preallocation.Full or Preallocation.Falloc) required = virtualSize;

        if (!MetadataSizeCalculator.TryCalculate(clusterBits, refcountOrder, options.ExtendedL2, virtualSize, 0, 0, out var size))
            throw new ArgumentException(Qcow2CreateOptions.TooLarge, nameof(options));
        long fully = size.FullyAllocated;
        long req = fully - virtualSize + required;

        long? bitmaps = null;
        // qemu-img reports bitmaps only when both the target and the source (a version 3 qcow2) can hold them.
        if (options.Version >= 3 && source is Qcow2Image { Info.Version: >= 3 } q)
        {
            long total = 0, directory = 0;
            foreach (var b in q.Bitmaps)
            {
                long bits = DivRoundUp(q.Size, b.Granularity);
                long clusters = DivRoundUp(DivRoundUp(bits, 8), cs);
                total += clusters * cs;                   // the whole bitmap, allocated
                total += RoundUp(clusters * 8, cs);       // its bitmap table
                directory += RoundUp(24 + Encoding.UTF8.GetByteCount(b.Name), 8);
            }
            bitmaps = total + RoundUp(directory, cs);
        }
        return new MeasureResult(req, fully, bitmaps);
    }

    private static long DivRoundUp(long a, long b) => a == 0 ? 0 : (a - 1) / b + 1;

    private static long RoundUp(long a, long b) => DivRoundUp(a, b) * b;
}
