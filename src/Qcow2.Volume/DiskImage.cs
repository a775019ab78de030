using System.Buffers.Binary;
using Qcow2.Spans;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume;

/// <summary>How <see cref="DiskImage.Open(string, string?, DiskOpenOptions?)"/> opens an image of either format.</summary>
public sealed record DiskOpenOptions
{
    /// <summary>The defaults: read-write, qcow2 defaults (external files denied).</summary>
    public static DiskOpenOptions Default { get; } = new();

    /// <summary>Open read-only.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>Options for a qcow2 image (their <see cref="Qcow2OpenOptions.ReadOnly"/> is overridden by <see cref="ReadOnly"/>).</summary>
    public Qcow2OpenOptions? Qcow2 { get; init; }
}

/// <summary>Opens and creates images of any supported format ("qcow2", "raw").</summary>
public static class DiskImage
{
    /// <summary>The format names this library reads and writes.</summary>
    public static IReadOnlyList<string> Formats { get; } = ["qcow2", "raw"];

    /// <summary>
    /// Opens the image at <paramref name="path"/>. Without <paramref name="format"/> the format is
    /// probed as qemu-img does: qcow2 when the file starts with the qcow2 magic, raw otherwise.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown format name.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="Qcow2CorruptImageException">A qcow2 image is malformed.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">A qcow2 image uses something unsupported, or names a file the policy refuses.</exception>
    public static IDiskImage Open(string path, string? format = null, DiskOpenOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= DiskOpenOptions.Default;
        format = format is null ? Probe(path) : CheckFormat(format);
        if (format == "raw") return RawImage.Open(path, options.ReadOnly);
        var qcow2 = (options.Qcow2 ?? Qcow2OpenOptions.Default) with { ReadOnly = options.ReadOnly };
        return Qcow2Image.Open(path, qcow2);
    }

    /// <summary>
    /// Opens the image held by <paramref name="storage"/> (which stays the caller's), probing its
    /// format when <paramref name="format"/> is null.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown format name.</exception>
    /// <exception cref="Qcow2CorruptImageException">A qcow2 image is malformed.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">A qcow2 image uses something unsupported.</exception>
    public static IDiskImage Open(IStorage storage, string? format = null, DiskOpenOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(storage);
        options ??= DiskOpenOptions.Default;
        format = format is null ? Probe(storage) : CheckFormat(format);
        if (format == "raw") return new RawImage(storage, options.ReadOnly, ownsStorage: false);
        var qcow2 = (options.Qcow2 ?? Qcow2OpenOptions.Default) with { ReadOnly = options.ReadOnly };
        return Qcow2Image.Open(storage, qcow2);
    }

    /// <summary>"qcow2" when the file starts with the qcow2 magic, else "raw".</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static string Probe(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var storage = FileStorage.Open(Path.GetFullPath(path));
        return Probe(storage);
    }

    /// <summary>"qcow2" when the storage starts with the qcow2 magic, else "raw".</summary>
    public static string Probe(IStorage storage)
    {
        ArgumentNullException.ThrowIfNull(storage);
        Span<byte> magic = stackalloc byte[4];
        return storage.Read(0, magic) == 4 && BinaryPrimitives.ReadUInt32BigEndian(magic) == Qcow2Constants.Magic ? "qcow2" : "raw";
    }

    /// <summary>
    /// Creates an image file and opens it read-write: qcow2 with <paramref name="qcow2Options"/>
    /// (whose size and preallocation are replaced by the arguments), or raw.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown format, or invalid options.</exception>
    public static IDiskImage Create(string path, string format, long size, Preallocation preallocation = Preallocation.Off,
        Qcow2CreateOptions? qcow2Options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        format = CheckFormat(format);
        if (format == "raw") return RawImage.Create(path, size, preallocation);
        var o = (qcow2Options ?? new Qcow2CreateOptions()) with { Size = size, Preallocation = preallocation };
        return Qcow2Image.Create(path, o);
    }

    private static string CheckFormat(string format) => format switch
    {
        "qcow2" or "raw" => format,
        _ => throw new ArgumentException($"Unknown file format '{format}'", nameof(format)),
    };
}
