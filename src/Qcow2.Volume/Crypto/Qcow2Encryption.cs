using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Crypto;

/// <summary>
/// Giving new images encryption (qemu-img create -o encrypt.format=luks|aes,...). The image must be
/// fresh: no snapshots, no compressed clusters, and nothing but zeros in its allocated clusters (those of
/// preallocation=metadata/falloc/full or data_file_raw=on, which stay allocated). Unlike QEMU, whose
/// preallocated clusters of an encrypted image read back as the decryption of host zeros (noise), those
/// clusters read as zeros here: version 3 images get the zero flag on them (the host clusters stay
/// preallocated), version 2 images and raw data files get encrypted zeros written into them.
/// </summary>
public static class Qcow2Encryption
{
    /// <summary>
    /// Makes a freshly created qcow2 image (e.g. just written by <c>Qcow2Creator.Create</c>, with any
    /// preallocation) LUKS-encrypted with <paramref name="options"/>, laid out as qemu-img lays out its
    /// own: the LUKS region in new clusters after the existing metadata and preallocated data,
    /// crypt_method 2, and the full disk encryption header extension. Open it afterwards with
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
        LuksFormatter.Validate(options);
        using var image = Qcow2Image.Open(storage, ForChange(openOptions));
        InstallLuks(image, options);
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
        ThrowIfEncrypted(path);
        LuksFormatter.Validate(options);
        using var image = Qcow2Image.Open(path, ForChange(openOptions));
        InstallLuks(image, options);
    }

    /// <summary>
    /// Makes a freshly created qcow2 image legacy-AES encrypted (crypt_method 1, qemu-img's
    /// <c>encrypt.format=aes</c> or <c>encryption=on</c>): AES-128-CBC keyed with the first 16 bytes of
    /// <paramref name="secret"/>. The header's crypt_method is the only change to an image without
    /// allocated clusters, so the result is byte-identical to qemu-img's. Open it afterwards with
    /// <see cref="Qcow2OpenOptions.EncryptionSecret"/> = <paramref name="secret"/>. QEMU refuses to open
    /// such images read-write, and legacy AES is weak: prefer LUKS.
    /// </summary>
    /// <param name="storage">The image (writable); not disposed.</param>
    /// <param name="secret">The secret (the bytes of QEMU's secret object).</param>
    /// <param name="openOptions">How to open the image for the change (its data file, if any); read-write, without the backing chain, by default.</param>
    /// <exception cref="ArgumentNullException"><paramref name="storage"/> or <paramref name="secret"/> is null.</exception>
    /// <exception cref="InvalidOperationException">The image is already encrypted, or holds data or snapshots.</exception>
    public static void AddLegacyAesEncryption(IStorage storage, byte[] secret, Qcow2OpenOptions? openOptions = null)
    {
        ArgumentNullException.ThrowIfNull(storage);
        ArgumentNullException.ThrowIfNull(secret);
        Span<byte> head = stackalloc byte[HeadBytes];
        ThrowIfEncrypted(head[..Math.Max(0, storage.Read(0, head))]);
        using var image = Qcow2Image.Open(storage, ForChange(openOptions));
        InstallLegacyAes(image, secret);
    }

    /// <summary>The same as <see cref="AddLegacyAesEncryption(IStorage, byte[], Qcow2OpenOptions?)"/> for the image file at <paramref name="path"/>.</summary>
    /// <param name="path">The image file.</param>
    /// <param name="secret">The secret (the bytes of QEMU's secret object).</param>
    /// <param name="openOptions">How to open the image for the change; read-write, without the backing chain, by default.</param>
    /// <exception cref="ArgumentNullException"><paramref name="secret"/> is null.</exception>
    /// <exception cref="InvalidOperationException">The image is already encrypted, or holds data or snapshots.</exception>
    public static void AddLegacyAesEncryption(string path, byte[] secret, Qcow2OpenOptions? openOptions = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(secret);
        ThrowIfEncrypted(path);
        using var image = Qcow2Image.Open(path, ForChange(openOptions));
        InstallLegacyAes(image, secret);
    }

    private static void InstallLuks(Qcow2Image image, LuksCreateOptions options)
    {
        image.ThrowIfNotEncryptable();
        byte[] region = LuksFormatter.Build(options, out var cipher);
        using (cipher)
        {
            image.ZeroAllocatedDataForEncryption(cipher!);
        }
        image.InstallLuksRegion(region);
    }

    private static void InstallLegacyAes(Qcow2Image image, byte[] secret)
    {
        image.ThrowIfNotEncryptable();
        using (var cipher = ImageEncryption.OpenLegacyAes(secret))
        {
            image.ZeroAllocatedDataForEncryption(cipher);
        }
        image.InstallLegacyAes();
    }

    private static Qcow2OpenOptions ForChange(Qcow2OpenOptions? openOptions) =>
        (openOptions ?? new Qcow2OpenOptions { OpenBackingChain = false }) with { ReadOnly = false, EncryptionSecret = null };

    private const int HeadBytes = 36;

    private static void ThrowIfEncrypted(string path)
    {
        Span<byte> head = stackalloc byte[HeadBytes];
        using var file = File.OpenRead(path);
        ThrowIfEncrypted(head[..file.ReadAtLeast(head, HeadBytes, throwOnEndOfStream: false)]);
    }

    /// <summary>An encrypted image would refuse a keyless read-write open with a less helpful error.</summary>
    private static void ThrowIfEncrypted(ReadOnlySpan<byte> head)
    {
        if (head.Length >= HeadBytes && System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(head[32..]) != 0)
            throw new InvalidOperationException("The image is already encrypted.");
    }
}
