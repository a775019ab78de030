using System.Globalization;
using System.Text;

namespace Qcow2.Volume.Operations;

/// <summary>One line of <c>qemu-img map</c>.</summary>
/// <param name="Start">Guest offset.</param>
/// <param name="Length">Length in bytes.</param>
/// <param name="Depth">The chain layer holding it (0 = the image), or where the chain ends for unallocated ranges.</param>
/// <param name="Present">Some layer holds it.</param>
/// <param name="Zero">Reads as zeros.</param>
/// <param name="Data">Reads come from stored data.</param>
/// <param name="Offset">Host offset in <paramref name="Filename"/>, or null (zero clusters, compressed clusters, unallocated).</param>
/// <param name="Filename">The file holding the data, or null.</param>
/// <param name="Compressed">Stored compressed (qemu-img 7.2 does not print this).</param>
public readonly record struct MapEntry(long Start, long Length, int Depth, bool Present, bool Zero, bool Data, long? Offset,
    string? Filename, bool Compressed)
{
    /// <summary>The entry as qemu-img's JSON output prints it (one object, no separator).</summary>
    public string ToJson()
    {
        var sb = new StringBuilder(128);
        sb.Append(CultureInfo.InvariantCulture,
            $"{{ \"start\": {Start}, \"length\": {Length}, \"depth\": {Depth}, \"present\": {Bool(Present)}, \"zero\": {Bool(Zero)}, \"data\": {Bool(Data)}");
        if (Offset is { } o) sb.Append(CultureInfo.InvariantCulture, $", \"offset\": {o}");
        sb.Append('}');
        return sb.ToString();
    }

    private static string Bool(bool b) => b ? "true" : "false";
}

/// <summary>
/// The extents of an image as <c>qemu-img map</c> lists them: block status through the backing
/// chain, QEMU's depth and zero rules (see <see cref="ChainStatus"/>), and neighbours merged when
/// qemu-img would merge them (same depth, present, zero and data flags, same file, and host offsets
/// that continue each other).
/// </summary>
public static class ImageMapper
{
    /// <summary>The message qemu-img's human output gives for data it cannot show an offset for.</summary>
    public const string NoOffsetMessage = "File contains external, encrypted or compressed clusters.";

    /// <summary>
    /// Lists the merged extents of <paramref name="image"/> in [<paramref name="start"/>, start + <paramref name="length"/>);
    /// an empty range gives one entry of length 0 at <paramref name="start"/>, as qemu-img prints.
    /// </summary>
    /// <param name="image">The image (its backing chain is followed through <see cref="Qcow2Image.Backing"/>).</param>
    /// <param name="start">First guest offset (qemu-img's --start-offset).</param>
    /// <param name="length">Bytes to map (--max-length); -1 for up to the end.</param>
    /// <exception cref="ArgumentOutOfRangeException">A negative start, or a length below -1.</exception>
    public static IEnumerable<MapEntry> Map(IDiskImage image, long start = 0, long length = -1)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfLessThan(length, -1);
        return MapIterator(image, start, length);
    }

    private static IEnumerable<MapEntry> MapIterator(IDiskImage image, long start, long length)
    {
        long end = length < 0 || length > image.Size - Math.Min(start, image.Size) ? image.Size : start + length;
        using var status = new ChainStatus(image);
        MapEntry? current = null;
        for (long pos = start; pos < end;)
        {
            var e = status.Get(pos, end - pos);
            var next = new MapEntry(e.Offset, e.Length, e.Depth, e.Allocated, e.Zero, e.Data,
                e.HostOffset >= 0 ? e.HostOffset : null, e.HostFile, e.Compressed);
            if (current is { } c && Mergeable(c, next))
            {
                current = c with { Length = c.Length + next.Length, Compressed = c.Compressed || next.Compressed };
            }
            else
            {
                if (current is { } done) yield return done;
                current = next;
            }
            pos += e.Length;
        }
        // With nothing to map (an empty image, or a start past the end) qemu-img still prints its
        // initial, empty entry.
        yield return current ?? new MapEntry(start, 0, 0, false, false, false, null, null, false);
    }

    private static bool Mergeable(in MapEntry a, in MapEntry b)
    {
        if (a.Zero != b.Zero || a.Data != b.Data || a.Depth != b.Depth || a.Present != b.Present) return false;
        if (!string.Equals(a.Filename, b.Filename, StringComparison.Ordinal)) return false;
        if (a.Offset.HasValue != b.Offset.HasValue) return false;
        return a.Offset is not { } o || o + a.Length == b.Offset!.Value;
    }

    /// <summary>Writes the entries as qemu-img's <c>--output=json</c> does.</summary>
    public static void WriteJson(IEnumerable<MapEntry> entries, TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(entries);
        ArgumentNullException.ThrowIfNull(writer);
        bool first = true;
        foreach (var e in entries)
        {
            writer.Write(first ? "[" : ",\n");
            writer.Write(e.ToJson());
            first = false;
        }
        writer.Write(first ? "[]\n" : "]\n");
    }

    /// <summary>
    /// Writes the entries as qemu-img's human output does: a header line, then each data extent that
    /// is not zero with its host offset and file (<paramref name="fileName"/> may rename files for display).
    /// </summary>
    /// <exception cref="NotSupportedException">A data extent has no host offset (compressed): qemu-img's <see cref="NoOffsetMessage"/>.</exception>
    public static void WriteHuman(IEnumerable<MapEntry> entries, TextWriter writer, Func<string?, string>? fileName = null)
    {
        ArgumentNullException.ThrowIfNull(entries);
        ArgumentNullException.ThrowIfNull(writer);
        writer.Write("Offset          Length          Mapped to       File\n");
        foreach (var e in entries)
        {
            if (e.Data && e.Offset is null) throw new NotSupportedException(NoOffsetMessage);
            if (e.Data && !e.Zero)
            {
                writer.Write(Hex16(e.Start));
                writer.Write(Hex16(e.Length));
                writer.Write(Hex16(e.Offset!.Value));
                writer.Write(fileName is null ? e.Filename ?? "" : fileName(e.Filename));
                writer.Write('\n');
            }
        }
    }

    // printf("%#-16" PRIx64): "0x" prefix except for zero, left-justified in 16 columns.
    private static string Hex16(long v) =>
        (v == 0 ? "0" : "0x" + v.ToString("x", CultureInfo.InvariantCulture)).PadRight(16);
}
