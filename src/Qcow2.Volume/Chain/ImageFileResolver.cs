using System.Runtime.InteropServices;
using Qcow2.Spans;

namespace Qcow2.Volume.Chain;

/// <summary>
/// Resolves file names stored inside images the way QEMU does, and guards chains against loops and
/// excessive depth.
/// </summary>
public static partial class ImageFileResolver
{
    /// <summary>
    /// The path a name stored in an image refers to: an absolute name as it is, a relative one
    /// against the directory of the image that names it (not the current directory), as QEMU
    /// resolves backing and data file names. A <c>file:</c> prefix is dropped.
    /// </summary>
    /// <param name="referringImagePath">Path of the image holding the name; empty for an image without a path (the current directory is used).</param>
    /// <param name="nameInImage">The name as stored.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The name is empty, holds a NUL, or uses a protocol other than <c>file:</c> (nbd:, json:, http:...).</exception>
    public static string Resolve(string referringImagePath, string nameInImage)
    {
        ArgumentNullException.ThrowIfNull(referringImagePath);
        ArgumentNullException.ThrowIfNull(nameInImage);
        string name = nameInImage;
        if (name.StartsWith("file:", StringComparison.Ordinal)) name = name["file:".Length..];
        if (name.Length == 0)
            throw new Qcow2UnsupportedImageException("external-file", "The image names an empty file.");
        if (name.Contains('\0'))
            throw new Qcow2UnsupportedImageException("external-file", $"The file name \"{Printable(nameInImage)}\" holds a NUL character.");
        if (HasProtocol(name))
            throw new Qcow2UnsupportedImageException("external-file",
                $"The file name \"{Printable(nameInImage)}\" uses a protocol; only plain files are supported.");
        if (Path.IsPathRooted(name)) return Path.GetFullPath(name);
        string baseDir = referringImagePath.Length == 0
            ? Directory.GetCurrentDirectory()
            : Path.GetDirectoryName(Path.GetFullPath(referringImagePath)) ?? Directory.GetCurrentDirectory();
        return Path.GetFullPath(Path.Combine(baseDir, name));
    }

    /// <summary>
    /// The path of an existing external data file named inside an image: beside the image, as
    /// <see cref="Resolve"/> gives it; when no file is there but one is at the name taken from the
    /// current directory, that one, because QEMU opens and creates relative data file names
    /// against the current directory (an image made by <c>qemu-img create -o data_file=d/x.data d/x.qcow2</c>
    /// names <c>d/x.data</c>).
    /// </summary>
    /// <inheritdoc cref="Resolve" path="/param"/>
    /// <inheritdoc cref="Resolve" path="/exception"/>
    public static string ResolveDataFile(string referringImagePath, string nameInImage)
    {
        string besideImage = Resolve(referringImagePath, nameInImage);
        if (File.Exists(besideImage)) return besideImage;
        string name = nameInImage.StartsWith("file:", StringComparison.Ordinal) ? nameInImage["file:".Length..] : nameInImage;
        if (Path.IsPathRooted(name)) return besideImage;
        string fromCurrentDirectory = Path.GetFullPath(name);
        return File.Exists(fromCurrentDirectory) ? fromCurrentDirectory : besideImage;
    }

    /// <summary>
    /// The canonical form of a path: absolute, with every symbolic link resolved (realpath), so two
    /// names of the same file compare equal. A path that does not exist is returned absolute but unresolved.
    /// </summary>
    /// <exception cref="ArgumentException">The path is empty.</exception>
    public static string Canonicalize(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        if (OperatingSystem.IsWindows()) return full;
        nint resolved = RealPath(full, 0);
        if (resolved == 0) return full;
        try
        {
            return Marshal.PtrToStringUTF8(resolved) ?? full;
        }
        finally
        {
            Free(resolved);
        }
    }

    /// <summary>
    /// Refuses to open <paramref name="candidatePath"/> as the next layer below a chain whose
    /// images are <paramref name="chain"/> (top first): when it is already in the chain (a loop,
    /// compared by canonical path) or the chain already holds <paramref name="maxDepth"/> layers
    /// below the top image.
    /// </summary>
    /// <exception cref="Qcow2CorruptImageException">A loop, or a chain deeper than allowed.</exception>
    public static void ThrowIfLoopOrTooDeep(IReadOnlyList<string> chain, string candidatePath, int maxDepth)
    {
        ArgumentNullException.ThrowIfNull(chain);
        ArgumentException.ThrowIfNullOrEmpty(candidatePath);
        ArgumentOutOfRangeException.ThrowIfNegative(maxDepth);
        if (chain.Count > maxDepth)
            throw new Qcow2CorruptImageException("backing chain", -1, (ulong)chain.Count,
                $"The backing chain is deeper than {maxDepth} images (at \"{Printable(candidatePath)}\").");
        string candidate = Canonicalize(candidatePath);
        foreach (var layer in chain)
        {
            if (layer.Length != 0 && string.Equals(Canonicalize(layer), candidate, StringComparison.Ordinal))
                throw new Qcow2CorruptImageException("backing chain", -1, (ulong)chain.Count,
                    $"The backing chain loops: \"{Printable(candidatePath)}\" is already open in it.");
        }
    }

    // QEMU treats "<letters>:" before any '/' as a protocol prefix (nbd:, http:, json:, ...).
    private static bool HasProtocol(string name)
    {
        int colon = name.IndexOf(':');
        if (colon < 0) return false;
        int slash = name.IndexOf('/');
        return slash < 0 || colon < slash;
    }

    private static string Printable(string s)
    {
        var span = s.Length > 200 ? s[..200] + "..." : s;
        return string.Create(span.Length, span, static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++) dst[i] = char.IsControl(src[i]) ? '?' : src[i];
        });
    }

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint RealPath(string path, nint resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void Free(nint p);
}
