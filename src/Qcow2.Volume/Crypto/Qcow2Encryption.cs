using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Crypto;

/// <summary>Giving new images encryption (qemu-img create -o encrypt.format=luks,...).</summary>
public static class Qcow2Encryption
{
    /// <summary>
    /// Makes a freshly created qcow2 image (no data, no snapshots, e.g. just written by
    /// <c>Qcow2Creator.Create</c>) LUKS-encrypted with <paramref name="options"/>, laid out as qemu-img
    /// lays out its own: the LUKS region in new clusters after the existing metadata, crypt_method 2,
    /// and the full disk encryption header extension. Open it afterwards with
    /// <see cref="Qcow2OpenOptions.EncryptionSecret"/> = <see cref="LuksCreateOptions.Secret"/>.
    /// </summary>
    /// <param name="storage">The image (writable); not disposed.</param>
    /// <param name="options">The LUKS parameters and secret.</param>
    /// <param name="openOptions">How to open the image for the change (its data file, if any); read-write, without the backing chain, by default.</param>
    /// <exception cref="ArgumentException">The options name something qemu-img refuses or this toolkit does not implement.</exception>
    /// <exception cref="InvalidOperationException">The image is already encrypted, or holds data or snapshots.</exception>
    public static void AddLuksEncryption(IStorage storage, LuksCreateOptions options, Qcow2OpenOptions? openOptions = null)
    {
        ArgumentNullException.ThrowIfNull(storage);
        Span<byte> head = stackalloc byte[HeadBytes];
        ThrowIfEncrypted(head[..Math.Max(0, storage.Read(0, head))]);
        byte[] region = LuksFormatter.Build(options);
        var o = (openOptions ?? new Qcow2OpenOptions { OpenBackingChain = false }) with { ReadOnly = false };
        using var image = Qcow2Image.Open(storage, o);
        image.InstallLuksRegion(region);
    }

    /// <summary>The same as <see cref="AddLuksEncryption(IStorage, LuksCreateOptions, Qcow2OpenOptions?)"/> for the image file at <paramref name="path"/>.</summary>
    /// <param name="path">The image file.</param>
    /// <param name="options">The LUKS parameters and secret.</param>
    /// <param name="openOptions">How to open the image for the change; read-write, without the backing chain, by default.</param>
    /// <exception cref="ArgumentException">The options name something qemu-img refuses or this toolkit does not implement.</exception>
    /// <exception cref="InvalidOperationException">The image is already encrypted, or holds data or snapshots.</exception>
    public static void AddLuksEncryption(string path, LuksCreateOptions options, Qcow2OpenOptions? openOptions = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Span<byte> head = stackalloc byte[HeadBytes];
        using (var file = File.OpenRead(path)) ThrowIfEncrypted(head[..file.ReadAtLeast(head, HeadBytes, throwOnEndOfStream: false)]);
        byte[] region = LuksFormatter.Build(options);
        var o = (openOptions ?? new Qcow2OpenOptions { OpenBackingChain = false }) with { ReadOnly = false };
        using var image = Qcow2Image.Open(path, o);
        image.InstallLuksRegion(region);
    }

    private const int HeadBytes = 36;

    /// <summary>An encrypted image would refuse a keyless read-write open with a less helpful error.</summary>
    private static void ThrowIfEncrypted(ReadOnlySpan<byte> head)
    {
        if (head.Length >= HeadBytes && System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(head[32..]) != 0)
            throw new InvalidOperationException("The image is already encrypted.");
    }
}
