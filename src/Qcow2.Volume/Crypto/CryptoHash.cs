using System.Security.Cryptography;
using Qcow2.Spans;

namespace Qcow2.Volume.Crypto;

/// <summary>A hash named in a LUKS header (PBKDF2, the AF diffuser, ESSIV), by its LUKS name.</summary>
internal readonly record struct CryptoHash(string Name, HashAlgorithmName Algorithm, int DigestBytes)
{
    public static bool TryGet(string name, out CryptoHash hash)
    {
        hash = name switch
        {
            "sha1" => new CryptoHash(name, HashAlgorithmName.SHA1, 20),
            "sha256" => new CryptoHash(name, HashAlgorithmName.SHA256, 32),
            "sha384" => new CryptoHash(name, HashAlgorithmName.SHA384, 48),
            "sha512" => new CryptoHash(name, HashAlgorithmName.SHA512, 64),
            _ => default,
        };
        return hash.Name is not null;
    }

    /// <exception cref="Qcow2UnsupportedImageException">The hash is not one this toolkit implements.</exception>
    public static CryptoHash Get(string name, string usage) =>
        TryGet(name, out var hash)
            ? hash
            : throw new Qcow2UnsupportedImageException("encryption",
                $"The LUKS {usage} hash '{name}' is not supported (sha1, sha256, sha384 and sha512 are).");

    /// <summary>Hashes <paramref name="source"/> into <paramref name="destination"/> (at least <see cref="DigestBytes"/> long).</summary>
    public void Hash(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        switch (DigestBytes)
        {
            case 20: SHA1.HashData(source, destination); break;
            case 32: SHA256.HashData(source, destination); break;
            case 48: SHA384.HashData(source, destination); break;
            default: SHA512.HashData(source, destination); break;
        }
    }

    public void Pbkdf2(ReadOnlySpan<byte> password, ReadOnlySpan<byte> salt, int iterations, Span<byte> destination) =>
        Rfc2898DeriveBytes.Pbkdf2(password, salt, destination, iterations, Algorithm);
}
