namespace Qcow2.Volume.Chain;

/// <summary>What a file named inside an image is used as.</summary>
public enum ExternalFileKind
{
    /// <summary>The backing file (header backing_file_offset/size).</summary>
    Backing,

    /// <summary>The external data file (header extension 0x44415441).</summary>
    DataFile,
}

/// <summary>A request to open a file named inside an image.</summary>
/// <param name="Kind">Backing or data file.</param>
/// <param name="NameInImage">The name exactly as the image stores it.</param>
/// <param name="ResolvedPath">The path it resolves to (see <see cref="ImageFileResolver.Resolve"/>).</param>
/// <param name="ReferringImage">The path (or storage name) of the image that names the file.</param>
public readonly record struct ExternalFileRequest(ExternalFileKind Kind, string NameInImage, string ResolvedPath, string ReferringImage);

/// <summary>
/// The gate that decides whether files named inside an image (backing files, external data files)
/// may be opened. An image from an untrusted source can name any path on the machine (<c>/etc/shadow</c>,
/// a device, another user's disk), so opening them is the caller's decision, never the image's.
/// </summary>
public sealed class ExternalFilePolicy
{
    private readonly Func<ExternalFileRequest, bool>? _decide;
    private readonly bool _allowAll;
    private readonly string _description;

    private ExternalFilePolicy(Func<ExternalFileRequest, bool>? decide, bool allowAll, string description)
    {
        _decide = decide;
        _allowAll = allowAll;
        _description = description;
    }

    /// <summary>Refuses every file named inside an image (the default, for untrusted images).</summary>
    public static ExternalFilePolicy Deny { get; } = new(null, allowAll: false, "Deny");

    /// <summary>Allows every file named inside an image (for images you made or trust, like qemu-img does).</summary>
    public static ExternalFilePolicy AllowAll { get; } = new(null, allowAll: true, "AllowAll");

    /// <summary>Asks <paramref name="decide"/> for each file; it returns true to allow.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="decide"/> is null.</exception>
    public static ExternalFilePolicy Custom(Func<ExternalFileRequest, bool> decide)
    {
        ArgumentNullException.ThrowIfNull(decide);
        return new ExternalFilePolicy(decide, allowAll: false, "Custom");
    }

    /// <summary>Allows only files whose resolved path lies inside <paramref name="directory"/> (after resolving symbolic links).</summary>
    /// <exception cref="ArgumentException"><paramref name="directory"/> is empty.</exception>
    public static ExternalFilePolicy AllowUnder(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        string root = ImageFileResolver.Canonicalize(directory).TrimEnd('/') + "/";
        return new ExternalFilePolicy(
            r => ImageFileResolver.Canonicalize(r.ResolvedPath).StartsWith(root, StringComparison.Ordinal),
            allowAll: false,
            "AllowUnder(" + root + ")");
    }

    /// <summary>Whether the file may be opened.</summary>
    public bool IsAllowed(in ExternalFileRequest request) => _allowAll || (_decide?.Invoke(request) ?? false);

    /// <inheritdoc/>
    public override string ToString() => _description;
}
