using Qcow2.Cli.Parsing;
using Qcow2.Spans;
using Qcow2.Volume;
using Qcow2.Volume.Crypto;

namespace Qcow2.Cli.Framework;

/// <summary>
/// Creates images from <see cref="CreateSettings"/>: qcow2 through the library's creator, raw
/// through RawImage.Create.
/// </summary>
internal static class ImageFactory
{
    public static Qcow2CreateOptions ToQcow2Options(CreateSettings s, long size)
    {
        var o = new Qcow2CreateOptions { Size = size };
        if (s.ClusterSize is { } cs)
        {
            if (cs > int.MaxValue) throw new UsageException($"Cluster size must be a power of two between 512 and 2048k");
            o = o with { ClusterSize = (int)cs };
        }
        if (s.RefcountBits is { } rb) o = o with { RefcountBits = rb };
        if (s.Compat is { } c) o = o with { Compat = c };
        if (s.LazyRefcounts is { } lr) o = o with { LazyRefcounts = lr };
        if (s.ExtendedL2 is { } e) o = o with { ExtendedL2 = e };
        if (s.CompressionType is { } ct) o = o with { CompressionType = ct == "zstd" ? CompressionType.Zstd : CompressionType.Zlib };
        if (s.BackingFile is { } bf) o = o with { BackingFile = bf };
        if (s.BackingFormat is { } bfmt) o = o with { BackingFormat = bfmt };
        if (s.DataFile is { } df) o = o with { DataFile = df };
        if (s.DataFileRaw is { } dfr) o = o with { DataFileRaw = dfr };
        if (s.Preallocation is { } p)
        {
            o = o with
            {
                Preallocation = p switch
                {
                    "metadata" => Preallocation.Metadata,
                    "falloc" => Preallocation.Falloc,
                    "full" => Preallocation.Full,
                    _ => Preallocation.Off,
                },
            };
        }
        return o;
    }

    /// <summary>Creates the image file and leaves it closed; encrypted as <paramref name="encryption"/> says (qcow2 only).</summary>
    public static void Create(string path, CreateSettings s, long size, bool flushToDisk = true, EncryptionPlan? encryption = null)
    {
        if (s.Format == "qcow2")
        {
            // Preallocated as qemu-img does it, then encrypted (the library lays the LUKS region after the
            // preallocated data, as qemu-img does, and makes the preallocated clusters read as zeros).
            // Written whole (and synced) by the creator and not opened, so a backing file named
            // with create -u need not exist.
            Qcow2Creator.Create(path, ToQcow2Options(s, size));
            if (encryption is not null)
            {
                try
                {
                    Encrypt(path, encryption);
                }
                catch
                {
                    // qemu-img leaves no image behind when it cannot finish creating it.
                    try { File.Delete(path); } catch (IOException) { }
                    throw;
                }
            }
            return;
        }
        var mode = s.Preallocation switch
        {
            "falloc" => Preallocation.Falloc,
            "full" => Preallocation.Full,
            _ => Preallocation.Off,
        };
        if (!flushToDisk)
        {
            // cache=unsafe (qemu-img convert's target): the new file is not synced.
            using var file = Volume.Storage.FileStorage.Create(Path.GetFullPath(path), overwrite: true, flushToDisk: false);
            RawImage.Create(file, size, mode).Dispose();
            return;
        }
        using var raw = RawImage.Create(path, size, mode);
        raw.Flush();
    }

    /// <summary>Makes the freshly created qcow2 image at <paramref name="path"/> encrypted.</summary>
    private static void Encrypt(string path, EncryptionPlan plan)
    {
        // Opened without its backing chain (which need not exist, as with create -u); a data file
        // named by the user is trusted as for every image the user names.
        var open = ImageOpener.TrustedOptions(readOnly: false) with { OpenBackingChain = false };
        if (plan.Luks is { } luks)
            Qcow2Encryption.AddLuksEncryption(path, luks, open);
        else
            Qcow2Encryption.AddLegacyAesEncryption(path, plan.Secret, open);
    }
}
