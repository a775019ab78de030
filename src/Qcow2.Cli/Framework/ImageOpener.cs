using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Qcow2.Volume;
using Qcow2.Volume.Chain;

namespace Qcow2.Cli.Framework;

/// <summary>
/// Opens the images named on the command line: checks the file exists (qemu-img's message
/// when not), probes the format when -f is absent (qcow2 by its magic, else raw, as qemu-img
/// does), and opens it through the library. The user named the file, so files the image names
/// (backing, data file) are trusted the way qemu-img trusts them.
/// </summary>
internal static class ImageOpener
{
    private const uint Qcow2Magic = 0x514649FB; // "QFI\xfb"

    /// <summary>"qcow2" when the file starts with the qcow2 magic, else "raw".</summary>
    public static string Probe(string path)
    {
        RequireExists(path);
        Span<byte> head = stackalloc byte[4];
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        int n = fs.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        return n == 4 && BinaryPrimitives.ReadUInt32BigEndian(head) == Qcow2Magic ? "qcow2" : "raw";
    }

    /// <summary>Validates a -f/-O/-F value.</summary>
    public static string CheckFormat(string format) => format switch
    {
        "qcow2" or "raw" => format,
        _ => throw new UsageException($"Unknown file format '{format}'"),
    };

    public static void RequireExists(string path)
    {
        if (!File.Exists(path))
            throw new CommandFailedException(Directory.Exists(path)
                ? $"Could not open '{path}': Is a directory"
                : $"Could not open '{path}': No such file or directory");
    }

    /// <summary>Open options for a qcow2 file named by the user.</summary>
    public static Qcow2OpenOptions TrustedOptions(bool readOnly, Qcow2OpenOptions? baseOptions = null) =>
        (baseOptions ?? Qcow2OpenOptions.Default) with { ReadOnly = readOnly, ExternalFilePolicy = ExternalFilePolicy.AllowAll };

    /// <summary>Opens an image (qcow2 or raw), probing the format when <paramref name="format"/> is null.</summary>
    public static IDiskImage Open(string path, string? format, bool readOnly, Qcow2OpenOptions? qcow2Options = null)
    {
        RequireExists(path);
        format = format is null ? Probe(path) : CheckFormat(format);
        return DiskImage.Open(path, format, new DiskOpenOptions { ReadOnly = readOnly, Qcow2 = TrustedOptions(readOnly, qcow2Options) });
    }

    /// <summary>
    /// Opens a writable image whose file stays <paramref name="storage"/>'s (dispose it after the
    /// image). With <paramref name="flushToDisk"/> false, flushes do not reach the disk (cache=unsafe,
    /// qemu-img convert's default for its target).
    /// </summary>
    public static IDiskImage OpenWritable(string path, string? format, bool flushToDisk, out IDisposable storage)
    {
        RequireExists(path);
        format = format is null ? Probe(path) : CheckFormat(format);
        var file = Volume.Storage.FileStorage.Open(Path.GetFullPath(path), writable: true, flushToDisk);
        try
        {
            var image = DiskImage.Open(file, format, new DiskOpenOptions { ReadOnly = false, Qcow2 = TrustedOptions(readOnly: false) });
            storage = file;
            return image;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Bytes the file occupies on disk (st_blocks * 512), or null when unknown.</summary>
    public static long? AllocatedBytes(string path)
    {
        if (!File.Exists(path)) return null;
        if (OperatingSystem.IsLinux() && (RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64))
        {
            // struct stat on x86_64 and aarch64 glibc both keep st_blocks at byte 64.
            Span<byte> buf = stackalloc byte[256];
            unsafe
            {
                fixed (byte* p = buf)
                {
                    if (NativeStat(path, p) == 0) return BinaryPrimitives.ReadInt64LittleEndian(buf[64..]) * 512;
                }
            }
        }
        return new FileInfo(path).Length;
    }

    [DllImport("libc", EntryPoint = "stat", SetLastError = true)]
    private static extern unsafe int NativeStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte* buffer);

    /// <summary>
    /// The path of a backing file as qemu-img shows it: relative names are joined to the
    /// directory of the image naming them ("sub/../a.qcow2"), absolute names stay.
    /// </summary>
    public static string FullBackingName(string imagePath, string backingName)
    {
        if (backingName.StartsWith('/')) return backingName;
        int slash = imagePath.LastIndexOf('/');
        return slash < 0 ? backingName : imagePath[..(slash + 1)] + backingName;
    }
}
