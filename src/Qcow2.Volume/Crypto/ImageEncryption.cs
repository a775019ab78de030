using Qcow2.Spans;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Crypto;

/// <summary>
/// The unlocked data cipher of an encrypted image and which offset numbers its sectors: LUKS
/// (crypt_method 2) uses the host offset of the data in the file, legacy AES (crypt_method 1) the
/// guest offset (qcow2 spec, "Data encryption"; luks1-notes.md, section 7).
/// </summary>
internal sealed class ImageEncryption : IDisposable
{
    private readonly SectorCipher _cipher;

    private ImageEncryption(SectorCipher cipher, bool usesHostOffset)
    {
        _cipher = cipher;
        UsesHostOffset = usesHostOffset;
    }

    public bool UsesHostOffset { get; }

    /// <summary>Opens the LUKS header region of an image with <paramref name="secret"/>, spending at most <paramref name="maxWork"/> PBKDF2 block iterations (<see cref="Qcow2OpenOptions.MaxKeyDerivationWork"/>).</summary>
    /// <exception cref="Qcow2CorruptImageException">The header or a key slot is malformed.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The cipher or hash is not supported, or an iteration count is absurd.</exception>
    /// <exception cref="Qcow2KeyException">The secret unlocks no key slot.</exception>
    public static ImageEncryption OpenLuks(IStorage file, long regionOffset, long regionLength, ReadOnlySpan<byte> secret, long maxWork) =>
        new(LuksKeyStore.Unlock(file, regionOffset, regionLength, secret, maxWork), usesHostOffset: true);

    /// <summary>The data cipher of a LUKS image from its master key's cipher (creation, which knows the key).</summary>
    public static ImageEncryption ForLuksMasterKey(SectorCipher cipher) => new(cipher, usesHostOffset: true);

    /// <summary>
    /// Legacy qcow2 AES: AES-128-CBC with plain64 IVs, keyed with the first 16 bytes of the secret
    /// (zero padded when shorter), without any key derivation or check.
    /// </summary>
    public static ImageEncryption OpenLegacyAes(ReadOnlySpan<byte> secret)
    {
        Span<byte> key = stackalloc byte[16];
        key.Clear();
        secret[..Math.Min(16, secret.Length)].CopyTo(key);
        var cipher = new CbcSectorCipher(key, IvGeneratorKind.Plain64, essiv: null);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
        return new ImageEncryption(cipher, usesHostOffset: false);
    }

    /// <summary>Encrypts sector-aligned data in place, given where it lives on the host and in the guest.</summary>
    public void Encrypt(Span<byte> data, long hostOffset, long guestOffset) =>
        _cipher.Encrypt(data, (UsesHostOffset ? hostOffset : guestOffset) >> SectorCipher.SectorShift);

    /// <summary>Decrypts sector-aligned data in place, given where it lives on the host and in the guest.</summary>
    public void Decrypt(Span<byte> data, long hostOffset, long guestOffset) =>
        _cipher.Decrypt(data, (UsesHostOffset ? hostOffset : guestOffset) >> SectorCipher.SectorShift);

    public void Dispose() => _cipher.Dispose();
}
