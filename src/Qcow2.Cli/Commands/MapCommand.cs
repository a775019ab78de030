using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Cli.Parsing;
using Qcow2.Volume;

namespace Qcow2.Cli.Commands;

/// <summary><c>qcow2 map</c>: the guest-to-host mapping, merged as qemu-img map merges it.</summary>
internal sealed class MapCommand : Command
{
    public override string Name => "map";
    public override string Summary => "Show how the guest range maps to host files (allocation, zeroes, offsets)";
    public override string Synopsis => "[--output=human|json] [--start-offset=N] [--max-length=N] [-f FMT] [-U] FILE";

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('f', "format", true, "FMT", "image format (qcow2 or raw); probed when absent"),
        new OptionSpec('\0', "output", true, "FMT", "human (default) or json"),
        new OptionSpec('s', "start-offset", true, "N", "first guest byte to map"),
        new OptionSpec('l', "max-length", true, "N", "map at most N bytes"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-img compatibility"),
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        RequirePositionals(args, 1, 1, "one image file name");
        bool json = ParseOutputJson(args);
        long start = args.Get("start-offset") is { } s ? SizeParser.ParseSize(s, "offset") : 0;
        long maxLength = args.Get("max-length") is { } l ? SizeParser.ParseSize(l, "length") : long.MaxValue;
        string path = args.Positionals[0];
        using var image = ImageOpener.Open(path, args.Get("format"), readOnly: true);
        long end = image.Size;
        if (maxLength < end - start) end = start + maxLength;
        var merged = MapFormatter.Merge(Walk(image, path, start, end));
        if (json)
        {
            context.Out.Write(MapFormatter.Json(merged));
            return ExitCodes.Success;
        }
        context.Out.Write(MapFormatter.HumanHeader);
        foreach (var e in merged)
        {
            var line = MapFormatter.HumanLine(e);
            if (line is not null) context.Out.Write(line);
        }
        return ExitCodes.Success;
    }

    /// <summary>Block status extents from <paramref name="start"/> to <paramref name="end"/>, unmerged.</summary>
    internal static IEnumerable<MapEntry> Walk(IDiskImage image, string path, long start, long end)
    {
        long offset = Math.Max(0, start);
        while (offset < end)
        {
            var st = image.GetBlockStatus(offset, end - offset);
            long length = Math.Min(st.Length, end - offset);
            if (length <= 0)
                throw new CommandFailedException($"block status returned an empty extent at offset {offset}");
            yield return ToEntry(st, offset, length, path);
            offset += length;
        }
    }

    internal static MapEntry ToEntry(BlockStatus st, long offset, long length, string path)
    {
        var f = st.Flags;
        bool compressed = (f & BlockStatusFlags.Compressed) != 0;
        long? host = st.HostOffset >= 0 && !compressed ? st.HostOffset + (offset - st.Offset) : null;
        return new MapEntry(
            offset, length, st.Depth,
            Present: (f & BlockStatusFlags.Allocated) != 0,
            Zero: (f & BlockStatusFlags.Zero) != 0,
            Data: (f & BlockStatusFlags.Data) != 0,
            Offset: host,
            Filename: st.HostFile ?? path);
    }
}
