using System.Buffers;
using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Volume;

namespace Qcow2.Cli.Commands;

/// <summary><c>qcow2 compare</c>: qemu-img compare's messages and exit codes (0 same, 1 different, 2 error).</summary>
internal sealed class CompareCommand : Command
{
    private const int Sector = 512;
    private const int Chunk = 1 << 20;

    public override string Name => "compare";
    public override string Summary => "Compare the guest contents of two images (exit 0 identical, 1 different, 2 error)";
    public override string Synopsis => "[-f FMT] [-F FMT] [-s] [-p] [-U] FILE1 FILE2";
    public override string Details =>
        "Without -s, images of different sizes compare equal when the larger one reads as zeroes\n" +
        "past the end of the smaller one; -s also requires equal sizes and equal allocation.";
    public override int ErrorExitCode => ExitCodes.CompareError;

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('f', null, true, "FMT", "format of FILE1; probed when absent"),
        new OptionSpec('F', null, true, "FMT", "format of FILE2; probed when absent"),
        new OptionSpec('s', "strict", false, null, "strict mode: sizes and allocation must match too"),
        new OptionSpec('p', "progress", false, null, "show progress on a terminal"),
        new OptionSpec('q', "quiet", false, null, "print nothing, only set the exit code"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-img compatibility"),
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        RequirePositionals(args, 2, 2, "two image file names");
        bool strict = args.Has("strict");
        bool quiet = args.Has("quiet");
        string p1 = args.Positionals[0], p2 = args.Positionals[1];
        using var a = ImageOpener.Open(p1, args.Get("f"), readOnly: true);
        using var b = ImageOpener.Open(p2, args.Get("F"), readOnly: true);
        var result = Compare(a, b, strict, context, args.Has("progress"));
        if (!quiet) context.Out.Write(result.Message);
        return result.ExitCode;
    }

    internal readonly record struct CompareResult(int ExitCode, string Message);

    internal static CompareResult Compare(IDiskImage a, IDiskImage b, bool strict, CliContext context, bool progress)
    {
        if (a.Size != b.Size && strict)
            return new(ExitCodes.CompareDifferent, "Strict mode: Image size mismatch!\n");
        // qemu-img warns about different sizes only once the common part compared equal.
        string prefix = "";
        long common = Math.Min(a.Size, b.Size);
        long total = Math.Max(a.Size, b.Size);
        using var bar = ProgressBar.Create(context, progress, total, "compare");
        byte[] bufA = ArrayPool<byte>.Shared.Rent(Chunk);
        byte[] bufB = ArrayPool<byte>.Shared.Rent(Chunk);
        try
        {
            long offset = 0;
            while (offset < common)
            {
                var sa = a.GetBlockStatus(offset, common - offset);
                var sb = b.GetBlockStatus(offset, common - offset);
                long len = Math.Min(Math.Min(sa.Length, sb.Length), common - offset);
                if (len <= 0) len = Math.Min(Chunk, common - offset);
                if (strict && Allocation(sa) != Allocation(sb))
                    return new(ExitCodes.CompareDifferent, prefix + $"Strict mode: Offset {offset} block status mismatch!\n");
                bool zeroA = (sa.Flags & BlockStatusFlags.Zero) != 0;
                bool zeroB = (sb.Flags & BlockStatusFlags.Zero) != 0;
                if (!(zeroA && zeroB))
                {
                    for (long done = 0; done < len;)
                    {
                        int n = (int)Math.Min(Chunk, len - done);
                        long at = offset + done;
                        var spanA = bufA.AsSpan(0, n);
                        var spanB = bufB.AsSpan(0, n);
                        if (zeroA) spanA.Clear(); else a.Read(at, spanA);
                        if (zeroB) spanB.Clear(); else b.Read(at, spanB);
                        int diff = FirstDifferentSector(spanA, spanB);
                        if (diff >= 0)
                            return new(ExitCodes.CompareDifferent, prefix + $"Content mismatch at offset {at + diff}!\n");
                        done += n;
                    }
                }
                offset += len;
                bar.Report(offset);
            }
            if (a.Size != b.Size)
            {
                prefix = "Warning: Image size mismatch!\n";
                var longer = a.Size > b.Size ? a : b;
                long? at = FirstNonZero(longer, common, bufA);
                if (at is { } o)
                    return new(ExitCodes.CompareDifferent, prefix + $"Content mismatch at offset {o}!\n");
            }
            bar.Report(total);
            return new(ExitCodes.Success, prefix + "Images are identical.\n");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bufA);
            ArrayPool<byte>.Shared.Return(bufB);
        }
    }

    private static bool Allocation(BlockStatus s) => (s.Flags & BlockStatusFlags.Allocated) != 0;

    /// <summary>Byte offset of the first 512-byte sector that differs, or -1 (qemu-img reports sectors).</summary>
    internal static int FirstDifferentSector(ReadOnlySpan<byte> x, ReadOnlySpan<byte> y)
    {
        int i = x.CommonPrefixLength(y);
        if (i >= x.Length) return -1;
        return i / Sector * Sector;
    }

    /// <summary>The first sector past <paramref name="from"/> that does not read as zeroes, or null.</summary>
    private static long? FirstNonZero(IDiskImage image, long from, byte[] buffer)
    {
        long offset = from;
        while (offset < image.Size)
        {
            var st = image.GetBlockStatus(offset, image.Size - offset);
            long len = Math.Min(st.Length, image.Size - offset);
            if (len <= 0) len = Math.Min(Chunk, image.Size - offset);
            if ((st.Flags & BlockStatusFlags.Zero) == 0)
            {
                for (long done = 0; done < len;)
                {
                    int n = (int)Math.Min(Chunk, len - done);
                    var span = buffer.AsSpan(0, n);
                    image.Read(offset + done, span);
                    int nz = span.IndexOfAnyExcept((byte)0);
                    if (nz >= 0) return offset + done + nz / Sector * Sector;
                    done += n;
                }
            }
            offset += len;
        }
        return null;
    }
}
