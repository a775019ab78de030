using System.Buffers;
using System.Globalization;

namespace Qcow2.Volume.Operations;

/// <summary>Why two images compared different.</summary>
public enum CompareDifference
{
    /// <summary>They are identical.</summary>
    None,

    /// <summary>The guest contents differ at <see cref="CompareResult.Offset"/>.</summary>
    Content,

    /// <summary>Strict mode: the sizes differ.</summary>
    SizeMismatch,

    /// <summary>Strict mode: the allocation state differs at <see cref="CompareResult.Offset"/>.</summary>
    BlockStatus,
}

/// <summary>The outcome of <see cref="ImageComparer.Compare"/>.</summary>
/// <param name="Difference">What differs, or <see cref="CompareDifference.None"/>.</param>
/// <param name="Offset">Where (the start of the first differing 512-byte sector, as qemu-img reports), or -1.</param>
/// <param name="SizesDiffer">The images have different sizes (a warning when not strict).</param>
/// <param name="Message">qemu-img compare's output for the same images.</param>
public readonly record struct CompareResult(CompareDifference Difference, long Offset, bool SizesDiffer, string Message)
{
    /// <summary>The guest contents are the same.</summary>
    public bool Identical => Difference == CompareDifference.None;

    /// <summary>qemu-img compare's exit code: 0 identical, 1 different.</summary>
    public int ExitCode => Identical ? 0 : 1;
}

/// <summary>Options of <see cref="ImageComparer.Compare"/>.</summary>
public sealed record CompareOptions
{
    /// <summary>qemu-img's -s: different sizes or allocation states are differences too.</summary>
    public bool Strict { get; init; }

    /// <summary>Receives the completed fraction (0 to 1).</summary>
    public IProgress<double>? Progress { get; init; }

    /// <summary>Stop and throw when cancelled.</summary>
    public CancellationToken CancellationToken { get; init; }
}

/// <summary>
/// Compares the guest contents of two images with <c>qemu-img compare</c>'s semantics: ranges both
/// read as zero are skipped, ranges one image does not hold must read as zero in the other, and when
/// the sizes differ the longer image's tail must read as zero (in strict mode different sizes, or
/// allocation states, are differences by themselves).
/// </summary>
public static class ImageComparer
{
    private const int SectorSize = 512;
    /// <summary>qemu-img's IO_BUF_SIZE: the largest range compared at once.</summary>
    private const int ChunkSize = 2 << 20;

    /// <summary>Compares <paramref name="first"/> with <paramref name="second"/>.</summary>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    /// <exception cref="IOException">A storage fails.</exception>
    public static CompareResult Compare(IDiskImage first, IDiskImage second, CompareOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        options ??= new CompareOptions();
        var ct = options.CancellationToken;
        long size1 = first.Size, size2 = second.Size;
        bool sizesDiffer = size1 != size2;
        if (options.Strict && sizesDiffer)
            return new CompareResult(CompareDifference.SizeMismatch, -1, true, "Strict mode: Image size mismatch!\n");

        long common = Math.Min(size1, size2);
        long longest = Math.Max(size1, size2);
        var buf1 = ArrayPool<byte>.Shared.Rent(ChunkSize);
        var buf2 = ArrayPool<byte>.Shared.Rent(ChunkSize);
        try
        {
            using var status1 = new ChainStatus(first);
            using var status2 = new ChainStatus(second);
            for (long offset = 0; offset < common;)
            {
                ct.ThrowIfCancellationRequested();
                var s1 = status1.Get(offset, common - offset);
                var s2 = status2.Get(offset, common - offset);
                long chunk = Math.Min(s1.Length, s2.Length);
                if (options.Strict && StrictStatus(s1, size1) != StrictStatus(s2, size2))
                    return new CompareResult(CompareDifference.BlockStatus, offset, false,
                        string.Create(CultureInfo.InvariantCulture, $"Strict mode: Offset {offset} block status mismatch!\n"));
                if (s1.Zero && s2.Zero)
                {
                    // Both read as zero: nothing to read.
                }
                else if (s1.Allocated == s2.Allocated)
                {
                    if (s1.Allocated)
                    {
                        chunk = Math.Min(chunk, ChunkSize);
                        ReadBoth(first, second, offset, buf1, buf2, (int)chunk);
                        long at = FirstDifferentSector(buf1.AsSpan(0, (int)chunk), buf2.AsSpan(0, (int)chunk));
                        if (at >= 0) return Different(CompareDifference.Content, offset + at, sizesDiffer, warned: false);
                    }
                }
                else
                {
                    chunk = Math.Min(chunk, ChunkSize);
                    var a = buf1.AsSpan(0, (int)chunk);
                    (s1.Allocated ? first : second).Read(offset, a);
                    long at = FirstNonZeroSector(a);
                    if (at >= 0) return Different(CompareDifference.Content, offset + at, sizesDiffer, warned: false);
                }
                offset += chunk;
                options.Progress?.Report((double)offset / longest);
            }

            if (sizesDiffer)
            {
                var over = size1 > size2 ? first : second;
                using var statusOver = new ChainStatus(over);
                for (long offset = common; offset < longest;)
                {
                    ct.ThrowIfCancellationRequested();
                    var s = statusOver.Get(offset, longest - offset);
                    long chunk = s.Length;
                    if (s.Allocated)
                    {
                        chunk = Math.Min(chunk, ChunkSize);
                        var a = buf1.AsSpan(0, (int)chunk);
                        over.Read(offset, a);
                        long at = FirstNonZeroSector(a);
                        if (at >= 0) return Different(CompareDifference.Content, offset + at, true, warned: true);
                    }
                    offset += chunk;
                    options.Progress?.Report((double)offset / longest);
                }
            }
            options.Progress?.Report(1.0);
            return new CompareResult(CompareDifference.None, -1, sizesDiffer,
                (sizesDiffer ? "Warning: Image size mismatch!\n" : "") + "Images are identical.\n");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buf1);
            ArrayPool<byte>.Shared.Return(buf2);
        }
    }

    /// <summary>Below this, both images are read on the calling thread.</summary>
    private const int ParallelReadMinimum = 256 << 10;

    /// <summary>
    /// Reads the same range of both images into <paramref name="a"/> and <paramref name="b"/>; long
    /// ranges are read in parallel (the first image on a pool thread), as qemu-img keeps requests to
    /// both images in flight at once.
    /// </summary>
    private static void ReadBoth(IDiskImage first, IDiskImage second, long offset, byte[] a, byte[] b, int length)
    {
        if (length < ParallelReadMinimum || Environment.ProcessorCount < 2)
        {
            first.Read(offset, a.AsSpan(0, length));
            second.Read(offset, b.AsSpan(0, length));
            return;
        }
        var other = Task.Run(() => first.Read(offset, a.AsSpan(0, length)));
        System.Runtime.ExceptionServices.ExceptionDispatchInfo? failed = null;
        try
        {
            second.Read(offset, b.AsSpan(0, length));
        }
        catch (Exception e)
        {
            failed = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
        }
        // Never leave (and hand the buffer back to the pool) while the other read still fills it.
        other.GetAwaiter().GetResult();
        failed?.Throw();
    }

    /// <summary>
    /// The parts of QEMU's block status word that -s compares: data, zero, allocated, whether a host
    /// offset is known, and whether the extent reaches the end of its image (QEMU's EOF bit, which
    /// makes an extent running to the end differ from a shorter one with the same content).
    /// </summary>
    private static int StrictStatus(in ChainExtent e, long imageSize) =>
        (e.Data ? 1 : 0) | (e.Zero ? 2 : 0) | (e.Allocated ? 4 : 0) | (e.HostOffset >= 0 ? 8 : 0)
        | (e.Offset + e.Length == imageSize ? 16 : 0);

    // qemu-img warns about the sizes only once it has compared the common part.
    private static CompareResult Different(CompareDifference kind, long offset, bool sizesDiffer, bool warned) =>
        new(kind, offset, sizesDiffer, (warned ? "Warning: Image size mismatch!\n" : "")
            + string.Create(CultureInfo.InvariantCulture, $"Content mismatch at offset {offset}!\n"));

    /// <summary>Offset of the first 512-byte sector (from the start of the spans) that differs, or -1.</summary>
    private static long FirstDifferentSector(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        int i = a.CommonPrefixLength(b);
        return i >= a.Length ? -1 : i / SectorSize * SectorSize;
    }

    /// <summary>Offset of the first 512-byte sector holding a non-zero byte, or -1.</summary>
    private static long FirstNonZeroSector(ReadOnlySpan<byte> a)
    {
        int i = a.IndexOfAnyExcept((byte)0);
        return i < 0 ? -1 : i / SectorSize * SectorSize;
    }
}
