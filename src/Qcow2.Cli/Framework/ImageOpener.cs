using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Qcow2.Volume;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Crypto;

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

    /// <summary>
    /// Opens an image (qcow2 or raw), probing the format when <paramref name="format"/> is null. An
    /// encrypted image opens read-only for its metadata only (no secret is given this way).
    /// </summary>
    public static IDiskImage Open(string path, string? format, bool readOnly, Qcow2OpenOptions? qcow2Options = null) =>
        Open(ImageSpec.FromFile(path, format), SecretStore.Empty, readOnly, needsData: false, qcow2Options);

    /// <summary>
    /// Opens the image <paramref name="spec"/> names, with the secret its <c>encrypt.key-secret</c>
    /// names and its cache options. An encrypted image without a key secret fails as qemu-img fails
    /// ("Parameter 'encrypt.key-secret' is required for cipher") when <paramref name="needsData"/>,
    /// and otherwise opens read-only for its metadata; a secret that unlocks no key slot fails with
    /// qemu-img's "Invalid password, cannot unlock any keyslot".
    /// </summary>
    /// <exception cref="CommandFailedException">The open failed for a reason worded as qemu-img words it.</exception>
    public static IDiskImage Open(ImageSpec spec, SecretStore secrets, bool readOnly, bool needsData, Qcow2OpenOptions? qcow2Options = null)
    {
        var (format, options) = Prepare(spec, secrets, readOnly, needsData, qcow2Options);
        try
        {
            return DiskImage.Open(spec.Path, format, new DiskOpenOptions { ReadOnly = readOnly, Qcow2 = options });
        }
        catch (Qcow2KeyException e)
        {
            throw KeyFailure(spec, e);
        }
    }

    /// <summary>qemu-img's words for a secret that opens no LUKS key slot.</summary>
    public const string InvalidPasswordMessage = "Invalid password, cannot unlock any keyslot";

    /// <summary>qemu-img's words for an encrypted image opened without a key secret.</summary>
    public const string SecretRequiredMessage = "Parameter 'encrypt.key-secret' is required for cipher";

    /// <summary>
    /// Checks the file, finds the format and builds the qcow2 open options for <paramref name="spec"/>:
    /// cache sizes, encrypt.format against the header, the secret (see <see cref="Open(ImageSpec, SecretStore, bool, bool, Qcow2OpenOptions?)"/>).
    /// </summary>
    public static (string Format, Qcow2OpenOptions Options) Prepare(ImageSpec spec, SecretStore secrets, bool readOnly, bool needsData,
        Qcow2OpenOptions? qcow2Options = null)
    {
        RequireExists(spec);
        string format = spec.Format is null ? Probe(spec.Path) : CheckFormat(spec.Format);
        var options = TrustedOptions(readOnly, qcow2Options);
        if (format == "raw" && spec.Qcow2OnlyKeys.Count > 0)
            throw spec.OpenError($"Block format 'raw' does not support the option '{spec.Qcow2OnlyKeys[0]}'");
        if (format != "qcow2" || ReadHeaderFacts(spec.Path) is not { } header) return (format, options);
        if (spec.HasCacheOptions)
        {
            var (l2, refcount, entry) = spec.CacheSizes(header.VirtualSize, header.ClusterSize);
            if (l2 > 0) options = options with { L2CacheSize = l2 };
            if (refcount > 0) options = options with { RefcountCacheSize = refcount };
            if (entry > 0) options = options with { L2CacheEntrySize = entry };
        }
        string? method = header.CryptMethod switch { 0 => null, 1 => "aes", 2 => "luks", _ => "unknown" };
        if (spec.EncryptFormat is { } wanted)
        {
            if (method is null)
                throw spec.OpenError($"No encryption in image header, but options specified format '{wanted}'");
            if (method != wanted)
                throw spec.OpenError($"Header reported '{method}' encryption format but options specify '{wanted}'");
        }
        byte[]? backingSecret = null;
        if (spec.BackingKeySecretId is { } backingId && !secrets.TryGet(backingId, out backingSecret))
            throw spec.OpenError("Could not open backing file: " + SecretStore.NoSecretMessage(backingId));
        byte[]? topSecret = null;
        if (method is not null)
        {
            if (spec.KeySecretId is { } id)
            {
                if (!secrets.TryGet(id, out topSecret)) throw spec.OpenError(SecretStore.NoSecretMessage(id));
            }
            else if (needsData)
            {
                throw spec.OpenError(SecretRequiredMessage);
            }
        }
        return (format, options with
        {
            EncryptionSecret = topSecret,
            BackingSecretResolver = r => BackingSecret(spec, r, backingSecret, topSecret, needsData),
        });
    }

    /// <summary>
    /// The secret of a backing file (every depth): backing.encrypt.key-secret's when given. Without it
    /// qemu-img opens the backing file with no secret and fails; we try the image's own secret on a
    /// LUKS backing file first, as its key slots tell whether it fits (a misfit then fails with
    /// qemu-img's words, see <see cref="BackingKeyFailure"/>). A legacy AES backing file cannot tell a
    /// wrong key, so it gets no guessed secret: when its data is needed that fails as in qemu-img.
    /// </summary>
    private static byte[]? BackingSecret(ImageSpec spec, Volume.Chain.ExternalFileRequest request, byte[]? backingSecret, byte[]? topSecret,
        bool needsData)
    {
        if (backingSecret is not null) return backingSecret;
        // A raw backing file's bytes are no header; unknown methods are left to the library to refuse.
        uint method = File.Exists(request.ResolvedPath) && Probe(request.ResolvedPath) == "qcow2" && ReadHeaderFacts(request.ResolvedPath) is { } facts
            ? facts.CryptMethod
            : 0;
        if (method is not (1 or 2)) return null;
        if (method == 2 && topSecret is not null) return topSecret;
        if (needsData) throw spec.OpenError("Could not open backing file: " + SecretRequiredMessage);
        return null;
    }

    /// <summary>The error for a backing file whose key slots refused the secret it was given (or guessed).</summary>
    private static CommandFailedException BackingKeyFailure(ImageSpec spec, int? exitCode = null) =>
        spec.BackingKeySecretId is null
            ? spec.OpenError("Could not open backing file: " + SecretRequiredMessage, exitCode)
            : spec.OpenError("Could not open backing file: " + InvalidPasswordMessage, exitCode);

    /// <summary>The CLI's error for a secret refused while opening <paramref name="spec"/> (the image's own, or a backing file's).</summary>
    internal static CommandFailedException KeyFailure(ImageSpec spec, Qcow2KeyException e, int? exitCode = null) =>
        e.BackingFile is null ? spec.OpenError(InvalidPasswordMessage, exitCode) : BackingKeyFailure(spec, exitCode);

    /// <summary>The file must exist; for an option string qemu-img names both the string and the file.</summary>
    public static void RequireExists(ImageSpec spec)
    {
        if (!spec.FromImageOpts)
        {
            RequireExists(spec.Path);
            return;
        }
        if (!File.Exists(spec.Path))
            throw spec.OpenError(Directory.Exists(spec.Path)
                ? $"'file' driver requires '{spec.Path}' to be a regular file"
                : $"Could not open '{spec.Path}': No such file or directory");
    }

    /// <summary>The few header fields the CLI needs before opening: crypt method, virtual size, cluster size.</summary>
    internal readonly record struct HeaderFacts(uint CryptMethod, long VirtualSize, int ClusterSize);

    /// <summary>Reads <see cref="HeaderFacts"/> from a qcow2 file; null when the header is too short or implausible (the open then reports why).</summary>
    internal static HeaderFacts? ReadHeaderFacts(string path)
    {
        Span<byte> head = stackalloc byte[36];
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        if (fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) < head.Length) return null;
        // Spec: cluster_bits at byte 20, size at 24, crypt_method at 32 (all big-endian).
        uint clusterBits = BinaryPrimitives.ReadUInt32BigEndian(head[20..]);
        long size = BinaryPrimitives.ReadInt64BigEndian(head[24..]);
        if (clusterBits < 9 || clusterBits > 21 || size < 0) return null;
        return new HeaderFacts(BinaryPrimitives.ReadUInt32BigEndian(head[32..]), size, 1 << (int)clusterBits);
    }

    /// <summary>
    /// Opens a writable image whose file stays <paramref name="storage"/>'s (dispose it after the
    /// image). With <paramref name="flushToDisk"/> false, flushes do not reach the disk (cache=unsafe,
    /// qemu-img convert's default for its target).
    /// </summary>
    public static IDiskImage OpenWritable(string path, string? format, bool flushToDisk, out IDisposable storage) =>
        OpenWritable(ImageSpec.FromFile(path, format), SecretStore.Empty, flushToDisk, out storage);

    /// <summary>
    /// <see cref="OpenWritable(string, string?, bool, out IDisposable)"/> for an image named by
    /// <paramref name="spec"/>, unlocked with the secret it names (an encrypted image without one
    /// fails as qemu-img fails).
    /// </summary>
    public static IDiskImage OpenWritable(ImageSpec spec, SecretStore secrets, bool flushToDisk, out IDisposable storage)
    {
        var (format, options) = Prepare(spec, secrets, readOnly: false, needsData: true);
        var file = Volume.Storage.FileStorage.Open(Path.GetFullPath(spec.Path), writable: true, flushToDisk);
        try
        {
            var image = DiskImage.Open(file, format, new DiskOpenOptions { ReadOnly = false, Qcow2 = options });
            storage = file;
            return image;
        }
        catch (Qcow2KeyException e)
        {
            file.Dispose();
            throw KeyFailure(spec, e);
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
