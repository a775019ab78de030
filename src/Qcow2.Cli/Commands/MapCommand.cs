using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Cli.Parsing;
using Qcow2.Volume;
using Qcow2.Volume.Operations;

namespace Qcow2.Cli.Commands;

/// <summary><c>qcow2 map</c>: the guest-to-host mapping, merged as qemu-img map merges it.</summary>
internal sealed class MapCommand : Command
{
    public override string Name => "map";
    public override string Summary => "Show how the guest range maps to host files (allocation, zeroes, offsets)";
    public override string Synopsis => "[--output=human|json] [--start-offset=N] [--max-length=N] [--object OBJECTDEF] [--image-opts] [-f FMT] [-U] FILE";
    public override string Details =>
        "An encrypted image is mapped without its secret: the map reads metadata only (qemu-img\n" +
        "requires the secret). Its data extents have no host offset, as in qemu-img, so the human\n" +
        "output refuses them and --output=json shows them without \"offset\". When an option string\n" +
        "names encrypt.key-secret, the secret is verified first, as qemu-img does.\n\n" + ImageArguments.EncryptionHelp;

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('f', "format", true, "FMT", "image format (qcow2 or raw); probed when absent"),
        new OptionSpec('\0', "output", true, "FMT", "human (default) or json"),
        new OptionSpec('s', "start-offset", true, "N", "first guest byte to map"),
        new OptionSpec('l', "max-length", true, "N", "map at most N bytes"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-img compatibility"),
        ImageArguments.Object,
        ImageArguments.ImageOpts,
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        if (ImageArguments.LoadSecrets(args, context) is not { } secrets) return ExitCodes.Success;
        RequirePositionals(args, 1, 1, "one image file name");
        bool json = ParseOutputJson(args);
        long start = args.Get("start-offset") is { } s ? SizeParser.ParseSize(s, "offset") : 0;
        long maxLength = args.Get("max-length") is { } l ? SizeParser.ParseSize(l, "length") : long.MaxValue;
        var spec = ImageArguments.Image(args, args.Positionals[0], args.Get("format"));
        string path = spec.Path;
        using var image = ImageOpener.Open(spec, secrets, readOnly: true, needsData: false);
        if (start > image.Size) start = image.Size;
        var hostNames = HostNames(image, path);
        // The library merges and formats as qemu-img does; the CLI only names each layer's file
        // the way qemu-img names it.
        var entries = ImageMapper.Map(image, start, maxLength == long.MaxValue ? -1 : maxLength)
            .Select(e => e with { Filename = e.Depth < hostNames.Count ? hostNames[e.Depth] : e.Filename });
        if (json) ImageMapper.WriteJson(entries, context.Out);
        else ImageMapper.WriteHuman(entries, context.Out);
        return ExitCodes.Success;
    }

    /// <summary>
    /// The file that holds the host bytes at each depth of the chain, named as qemu-img names
    /// it: the image as given, then each backing file joined to its overlay's directory, and an
    /// external data file instead of its image.
    /// </summary>
    internal static List<string> HostNames(IDiskImage image, string path)
    {
        var names = new List<string>();
        IDiskImage? current = image;
        string name = path;
        while (current is not null)
        {
            if (current is Qcow2Image q)
            {
                names.Add(q.Info.DataFile is { } df ? ImageOpener.FullBackingName(name, df) : name);
                if (q.Info.BackingFile is { } bf) name = ImageOpener.FullBackingName(name, bf);
                current = q.Backing;
            }
            else
            {
                names.Add(name);
                current = null;
            }
        }
        return names;
    }
}
