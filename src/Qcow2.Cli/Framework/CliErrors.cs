namespace Qcow2.Cli.Framework;

/// <summary>
/// A mistake in how the command was called (unknown option, missing argument, bad number).
/// Reported as one line on stderr; the exit code is the command's error code (1 for most,
/// as qemu-img uses it).
/// </summary>
internal sealed class UsageException : Exception
{
    public UsageException(string message) : base(message) { }
}

/// <summary>
/// A failure the command already understands and words for the user (e.g. "Could not open 'x'").
/// <see cref="ExitCode"/> overrides the command's default error code when set.
/// </summary>
internal sealed class CommandFailedException : Exception
{
    public CommandFailedException(string message, int? exitCode = null, Exception? inner = null, string? hint = null)
        : base(message, inner)
    {
        ExitCode = exitCode;
        Hint = hint;
    }

    public int? ExitCode { get; }

    /// <summary>Lines printed as they are after the error line (qemu-img's hints, e.g. what an identifier is).</summary>
    public string? Hint { get; init; }

    /// <summary>For a failed open: the reason alone, without "Could not open 'NAME': " (qemu-io words it differently).</summary>
    public string? OpenReason { get; init; }
}

/// <summary>Exit codes shared by the commands (qemu-img's values).</summary>
internal static class ExitCodes
{
    public const int Success = 0;

    /// <summary>qemu-img's error_exit and most failures.</summary>
    public const int Failure = 1;

    /// <summary>compare: the images differ.</summary>
    public const int CompareDifferent = 1;

    /// <summary>compare: an error occurred.</summary>
    public const int CompareError = 2;

    /// <summary>check: the check itself failed (internal error).</summary>
    public const int CheckFailed = 1;

    /// <summary>check: corruptions remain.</summary>
    public const int CheckCorrupted = 2;

    /// <summary>check: only leaks remain.</summary>
    public const int CheckLeaks = 3;

    /// <summary>check: the format does not support checks.</summary>
    public const int CheckNotSupported = 63;
}
