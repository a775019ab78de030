using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Spans;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;

namespace Qcow2.Cli.Commands;

/// <summary>
/// <c>qcow2 check</c>: qemu-img check's report and exit codes — 0 clean, 1 the check failed,
/// 2 corruptions, 3 leaks only, 63 the format has no checks (raw).
/// </summary>
internal sealed class CheckCommand : Command
{
    public override string Name => "check";
    public override string Summary => "Check an image for consistency (exit 0 clean, 1 check failed, 2 corrupt, 3 leaks, 63 no checks)";
    public override string Synopsis => "[--output=human|json] [-r leaks|all] [--object OBJECTDEF] [--image-opts] [-f FMT] [-q] [-U] FILE";
    public override string Details =>
        "-r leaks repairs leaked clusters only; -r all also repairs corruptions. After a repair the\n" +
        "image is checked again and that result is reported, with what was fixed.\n\n" +
        "An encrypted image is checked (and repaired) without its secret: the check reads metadata\n" +
        "only (qemu-img requires the secret). When an option string names encrypt.key-secret, the\n" +
        "secret is verified first, as qemu-img does.\n\n" + ImageArguments.EncryptionHelp;

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('f', "format", true, "FMT", "image format (qcow2 or raw); probed when absent"),
        new OptionSpec('\0', "output", true, "FMT", "human (default) or json"),
        new OptionSpec('r', "repair", true, "leaks|all", "repair leaks, or everything"),
        new OptionSpec('q', "quiet", false, null, "print nothing, only set the exit code"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-img compatibility"),
        ImageArguments.Object,
        ImageArguments.ImageOpts,
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        if (ImageArguments.LoadSecrets(args, context) is not { } secrets) return ExitCodes.Success;
        RequirePositionals(args, 1, 1, "one image file name");
        bool json = ParseOutputJson(args);
        bool quiet = args.Has("quiet");
        var repair = args.Get("repair") switch
        {
            null => RepairMode.None,
            "leaks" => RepairMode.Leaks,
            "all" => RepairMode.All,
            var other => throw new UsageException($"Invalid -r argument: '{other}' (expected leaks or all)"),
        };
        var spec = ImageArguments.Image(args, args.Positionals[0], args.Get("format"));
        string path = spec.Path;
        var (format, openOptions) = ImageOpener.Prepare(spec, secrets, readOnly: true, needsData: false);
        if (format != "qcow2")
            throw new CommandFailedException("This image format does not support checks", ExitCodes.CheckNotSupported);
        if (openOptions.EncryptionSecret is not null)
        {
            // qemu-img unlocks the image before checking it: a wrong secret fails the check.
            try
            {
                Volume.Qcow2Image.Open(path, openOptions with { OpenBackingChain = false }).Dispose();
            }
            catch (Volume.Crypto.Qcow2KeyException)
            {
                throw spec.OpenError(ImageOpener.InvalidPasswordMessage, ExitCodes.CheckFailed);
            }
            catch (Exception e) when (e is Qcow2CorruptImageException or Qcow2UnsupportedImageException)
            {
                // The checker below reports what is wrong with the image, as it does without a secret.
            }
        }

        CheckResult result;
        using (var storage = FileStorage.Open(Path.GetFullPath(path), writable: repair != RepairMode.None))
        {
            // A header qemu-img refuses to open: its words, after "Could not open", exit 1.
            try
            {
                result = Qcow2Checker.Check(storage, new CheckOptions { Repair = repair });
            }
            catch (Qcow2CorruptImageException e)
            {
                throw spec.OpenError(e.Reason, ExitCodes.CheckFailed);
            }
            catch (Qcow2UnsupportedImageException e)
            {
                throw spec.OpenError(e.Message, ExitCodes.CheckFailed);
            }
        }

        context.Out.Flush();
        foreach (var finding in result.Findings)
            context.Error.Write(FindingLine(finding) + "\n");

        if (result.FailureMessage is not null && result.FailureDetail is { } detail)
        {
            // qemu-img reports the cause as an error (with its program name), then any hints.
            string[] lines = detail.ReplaceLineEndings("\n").Split('\n');
            context.Error.Write("qcow2: " + lines[0] + "\n");
            for (int i = 1; i < lines.Length; i++)
                context.Error.Write(lines[i].Replace("qemu-img check", "qcow2 check", StringComparison.Ordinal) + "\n");
        }
        if (result.FailureMessage is not null)
            throw new CommandFailedException("Check failed: " + result.FailureMessage, ExitCodes.CheckFailed);

        var report = new CheckReport
        {
            Filename = spec.Argument,
            Format = "qcow2",
            CheckErrors = result.CheckErrors,
            Corruptions = result.Corruptions,
            Leaks = result.Leaks,
            CorruptionsFixed = result.CorruptionsFixed,
            LeaksFixed = result.LeaksFixed,
            ImageEndOffset = result.ImageEndOffset,
            TotalClusters = result.TotalClusters,
            AllocatedClusters = result.AllocatedClusters,
            FragmentedClusters = result.FragmentedClusters,
            CompressedClusters = result.CompressedClusters,
        };
        if (!quiet)
        {
            if (json)
            {
                context.Out.Write(CheckFormatter.Json(report));
            }
            else
            {
                if (result.LeaksFixed != 0 || result.CorruptionsFixed != 0)
                    context.Out.Write(CheckFormatter.RepairPreamble(result.LeaksFixed, result.CorruptionsFixed));
                context.Out.Write(CheckFormatter.Human(report));
            }
        }
        return report.ExitCode;
    }

    /// <summary>The findings qemu-img prints as "ERROR: ..." (the rest are "ERROR ...").</summary>
    private static readonly string[] ColonFindings =
    {
        "counting reference ", "coffset=", "Unallocated cluster has non-zero subcluster",
    };

    /// <summary>qemu-img's advice after a refcount overflow (both tools it names do the job).</summary>
    private const string OverflowHint =
        "Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing";

    /// <summary>A finding as qemu-img check words it on stderr: "ERROR ..." for corruptions, "Leaked cluster ..." for leaks, "Repairing ..." for what was fixed.</summary>
    internal static string FindingLine(CheckFinding f)
    {
        string message = f.Message.ReplaceLineEndings(" ");
        if (f.Kind == CheckFindingKind.Information) return message;
        if (f.Repaired) return "Repairing " + message;
        if (f.Kind == CheckFindingKind.Leak) return message;
        if (f.Kind == CheckFindingKind.RefcountOverflow)
            return "ERROR: " + message + "\n" + OverflowHint;
        foreach (string prefix in ColonFindings)
            if (message.StartsWith(prefix, StringComparison.Ordinal)) return "ERROR: " + message;
        return "ERROR " + message;
    }
}
