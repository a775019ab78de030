using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Volume;
using Qcow2.Volume.Operations;

namespace Qcow2.Cli.Commands;

/// <summary><c>qcow2 compare</c>: qemu-img compare's messages and exit codes (0 same, 1 different, 2 error).</summary>
internal sealed class CompareCommand : Command
{
    public override string Name => "compare";
    public override string Summary => "Compare the guest contents of two images (exit 0 identical, 1 different, 2 error)";
    public override string Synopsis => "[--object OBJECTDEF] [--image-opts] [-f FMT] [-F FMT] [-s] [-p] [-U] FILE1 FILE2";
    public override string Details =>
        "Without -s, images of different sizes compare equal when the larger one reads as zeroes\n" +
        "past the end of the smaller one; -s also requires equal sizes and equal allocation.\n" +
        "With --image-opts both names are option strings.\n\n" + ImageArguments.EncryptionHelp;
    public override int ErrorExitCode => ExitCodes.CompareError;

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('f', null, true, "FMT", "format of FILE1; probed when absent"),
        new OptionSpec('F', null, true, "FMT", "format of FILE2; probed when absent"),
        new OptionSpec('s', "strict", false, null, "strict mode: sizes and allocation must match too"),
        new OptionSpec('p', "progress", false, null, "show progress on a terminal"),
        new OptionSpec('q', "quiet", false, null, "print nothing, only set the exit code"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-img compatibility"),
        ImageArguments.Object,
        ImageArguments.ImageOpts,
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        if (ImageArguments.LoadSecrets(args, context) is not { } secrets) return ExitCodes.Success;
        RequirePositionals(args, 2, 2, "two image file names");
        bool strict = args.Has("strict");
        bool quiet = args.Has("quiet");
        string p1 = args.Positionals[0], p2 = args.Positionals[1];
        bool imageOpts = args.Has("image-opts");
        if (imageOpts && (args.Has("f") || args.Has("F")))
            throw new CommandFailedException("--image-opts and --format are mutually exclusive");
        var s1 = ImageArguments.Image(args, p1, args.Get("f"), imageOpts);
        var s2 = ImageArguments.Image(args, p2, args.Get("F"), imageOpts);
        using var a = ImageOpener.Open(s1, secrets, readOnly: true, needsData: true);
        using var b = ImageOpener.Open(s2, secrets, readOnly: true, needsData: true);
        var result = Compare(a, b, strict, context, args.Has("progress"));
        if (!quiet) context.Out.Write(result.Message);
        return result.ExitCode;
    }

    internal static (int ExitCode, string Message) Compare(IDiskImage a, IDiskImage b, bool strict, CliContext context, bool progress)
    {
        long total = Math.Max(a.Size, b.Size);
        using var bar = ProgressBar.Create(context, progress, total, "compare");
        var result = ImageComparer.Compare(a, b, new CompareOptions { Strict = strict, Progress = bar.AsFraction() });
        return (result.ExitCode, result.Message);
    }
}
