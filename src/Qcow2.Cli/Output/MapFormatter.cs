using System.Globalization;
using System.Text;

namespace Qcow2.Cli.Output;

/// <summary>One extent of <c>map</c>'s output.</summary>
internal sealed record MapEntry(long Start, long Length, int Depth, bool Present, bool Zero, bool Data, long? Offset, string? Filename)
{
    /// <summary>
    /// Whether <paramref name="next"/> continues this extent: the same status, depth and file,
    /// and (when mapped) the next host bytes. This is how qemu-img map merges its lines.
    /// </summary>
    public bool CanMerge(MapEntry next) =>
        Start + Length == next.Start &&
        Depth == next.Depth && Present == next.Present && Zero == next.Zero && Data == next.Data &&
        Offset.HasValue == next.Offset.HasValue &&
        (!Offset.HasValue || Offset.Value + Length == next.Offset!.Value) &&
        Filename == next.Filename;
}

/// <summary>map's JSON and human output, as qemu-img 7.2 prints them.</summary>
internal static class MapFormatter
{
    /// <summary>Merges a stream of extents the way qemu-img does.</summary>
    public static IEnumerable<MapEntry> Merge(IEnumerable<MapEntry> entries)
    {
        MapEntry? current = null;
        foreach (var e in entries)
        {
            if (e.Length == 0) continue;
            if (current is not null && current.CanMerge(e))
            {
                current = current with { Length = current.Length + e.Length };
                continue;
            }
            if (current is not null) yield return current;
            current = e;
        }
        if (current is not null) yield return current;
    }

    public static string JsonLine(MapEntry e)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append("{ \"start\": ").Append(e.Start.ToString(inv))
          .Append(", \"length\": ").Append(e.Length.ToString(inv))
          .Append(", \"depth\": ").Append(e.Depth.ToString(inv))
          .Append(", \"present\": ").Append(e.Present ? "true" : "false")
          .Append(", \"zero\": ").Append(e.Zero ? "true" : "false")
          .Append(", \"data\": ").Append(e.Data ? "true" : "false");
        if (e.Offset is { } off) sb.Append(", \"offset\": ").Append(off.ToString(inv));
        sb.Append('}');
        return sb.ToString();
    }

    /// <summary>The whole JSON array (qemu-img puts one extent per line).</summary>
    public static string Json(IEnumerable<MapEntry> merged)
    {
        var sb = new StringBuilder("[");
        bool first = true;
        foreach (var e in merged)
        {
            if (!first) sb.Append(",\n");
            first = false;
            sb.Append(JsonLine(e));
        }
        sb.Append("]\n");
        return sb.ToString();
    }

    public const string HumanHeader = "Offset          Length          Mapped to       File\n";

    /// <summary>
    /// One human line, or null when the extent is not shown (no data). Throws when the data
    /// has no plain host offset (compressed), as qemu-img refuses to show those.
    /// </summary>
    public static string? HumanLine(MapEntry e)
    {
        if (!e.Data) return null;
        if (e.Offset is not { } off)
            throw new Framework.CommandFailedException("File contains external, encrypted or compressed clusters.");
        // qemu-img lists only extents that hold data; preallocated zero clusters (data and zero) are left out.
        if (e.Zero) return null;
        return NumberFormat.AltHex(e.Start).PadRight(16) + NumberFormat.AltHex(e.Length).PadRight(16) +
               NumberFormat.AltHex(off).PadRight(16) + (e.Filename ?? "") + "\n";
    }
}
