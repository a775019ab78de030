using System.Security.Cryptography;
using Qcow2.Spans;

namespace Qcow2.Volume.Crypto;

/// <summary>
/// The data cipher a LUKS header names: cipher-name ("aes"), cipher-mode ("xts-plain64",
/// "cbc-essiv:sha256", ...) and key-bytes. Only AES in XTS or CBC mode with the plain, plain64 or essiv
/// IV generators is implemented; anything else is refused by name before any key is derived.
/// </summary>
internal sealed class LuksCipherSpec
{
    private LuksCipherSpec(string cipherName, string mode, IvGeneratorKind ivKind, CryptoHash? ivHash, int keyBytes)
    {
        CipherName = cipherName;
        Mode = mode;
        IvKind = ivKind;
        IvHash = ivHash;
        KeyBytes = keyBytes;
    }

    public string CipherName { get; }

    /// <summary>"xts" or "cbc".</summary>
    public string Mode { get; }

    public IvGeneratorKind IvKind { get; }

    /// <summary>The ESSIV hash, or null.</summary>
    public CryptoHash? IvHash { get; }

    /// <summary>The master key length (for XTS both halves).</summary>
    public int KeyBytes { get; }

    /// <exception cref="Qcow2UnsupportedImageException">The cipher, mode, IV generator or key size is not supported.</exception>
    public static LuksCipherSpec Parse(string cipherName, string modeSpec, uint keyBytes)
    {
        if (cipherName != "aes")
            throw new Qcow2UnsupportedImageException("encryption",
                $"The LUKS cipher '{cipherName}' is not supported (only aes is).");
        int dash = modeSpec.IndexOf('-');
        string mode = dash < 0 ? modeSpec : modeSpec[..dash];
        string ivSpec = dash < 0 ? "" : modeSpec[(dash + 1)..];
        if (mode is not ("xts" or "cbc"))
            throw new Qcow2UnsupportedImageException("encryption",
                $"The LUKS cipher mode '{modeSpec}' is not supported (aes in xts or cbc mode is).");
        string ivName = ivSpec;
        string? ivHashName = null;
        int colon = ivSpec.IndexOf(':');
        if (colon >= 0)
        {
            ivName = ivSpec[..colon];
            ivHashName = ivSpec[(colon + 1)..];
        }
        IvGeneratorKind kind = ivName switch
        {
            "plain" => IvGeneratorKind.Plain,
            "plain64" => IvGeneratorKind.Plain64,
            "essiv" => IvGeneratorKind.Essiv,
            _ => throw new Qcow2UnsupportedImageException("encryption",
                $"The LUKS IV generator '{ivSpec}' is not supported (plain, plain64 and essiv are)."),
        };
        CryptoHash? ivHash = null;
        if (kind == IvGeneratorKind.Essiv)
        {
            if (ivHashName is null)
                throw new Qcow2UnsupportedImageException("encryption", $"The LUKS cipher mode '{modeSpec}' names essiv without a hash.");
            var h = CryptoHash.Get(ivHashName, "ESSIV");
            // The ESSIV cipher is AES keyed with the digest: the digest must be an AES key size.
            if (h.DigestBytes is not (16 or 24 or 32))
                throw new Qcow2UnsupportedImageException("encryption",
                    $"The ESSIV hash '{ivHashName}' gives {h.DigestBytes}-byte digests, which are not an AES key size.");
            ivHash = h;
        }
        else if (ivHashName is not null)
        {
            throw new Qcow2UnsupportedImageException("encryption", $"The LUKS IV generator '{ivSpec}' takes no hash.");
        }
        bool sizeOk = mode == "xts" ? keyBytes is 32 or 48 or 64 : keyBytes is 16 or 24 or 32;
        if (!sizeOk)
            throw new Qcow2UnsupportedImageException("encryption",
                $"A {keyBytes}-byte key does not fit aes-{mode} (16, 24 or 32 bytes per AES key).");
        return new LuksCipherSpec(cipherName, mode, kind, ivHash, (int)keyBytes);
    }

    /// <summary>The sector cipher keyed with <paramref name="key"/> (<see cref="KeyBytes"/> long).</summary>
    public SectorCipher Create(ReadOnlySpan<byte> key)
    {
        if (key.Length != KeyBytes) throw new ArgumentException($"The key must be {KeyBytes} bytes.", nameof(key));
        AesKeyPool? essiv = null;
        if (IvHash is { } h)
        {
            Span<byte> digest = stackalloc byte[64];
            h.Hash(key, digest);
            essiv = new AesKeyPool(digest[..h.DigestBytes]);
            CryptographicOperations.ZeroMemory(digest);
        }
        try
        {
            return Mode == "xts" ? new XtsSectorCipher(key, IvKind, essiv) : new CbcSectorCipher(key, IvKind, essiv);
        }
        catch
        {
            essiv?.Dispose();
            throw;
        }
    }
}
