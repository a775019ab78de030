using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Qcow2.Volume.Crypto;

/// <summary>
/// LUKS1's anti-forensic splitter (luks1-notes.md, section 3): a key of n bytes is stored as
/// <c>stripes</c> blocks of n bytes, all needed to recover it. Merging folds the first stripes-1 blocks
/// through XOR and the hash "diffuser"; the key is the last block XOR that fold.
/// </summary>
internal static class AntiForensicSplitter
{
    /// <summary>Recovers the key from <paramref name="material"/> (<paramref name="key"/>.Length × stripes bytes).</summary>
    public static void Merge(ReadOnlySpan<byte> material, int stripes, CryptoHash hash, Span<byte> key)
    {
        int n = key.Length;
        if (stripes < 1 || material.Length != (long)n * stripes)
            throw new ArgumentException("The key material must be stripes blocks of the key length.", nameof(material));
        key.Clear();
        for (int i = 0; i < stripes - 1; i++)
        {
            XorInto(key, material.Slice(i * n, n));
            Diffuse(key, hash);
        }
        XorInto(key, material.Slice((stripes - 1) * n, n));
    }

    /// <summary>
    /// Splits <paramref name="key"/> into <paramref name="material"/>: random blocks, and a last block
    /// chosen so that <see cref="Merge"/> gives the key back.
    /// </summary>
    public static void Split(ReadOnlySpan<byte> key, int stripes, CryptoHash hash, Span<byte> material)
    {
        int n = key.Length;
        if (stripes < 1 || material.Length != (long)n * stripes)
            throw new ArgumentException("The key material must be stripes blocks of the key length.", nameof(material));
        Span<byte> fold = stackalloc byte[n];
        fold.Clear();
        for (int i = 0; i < stripes - 1; i++)
        {
            var block = material.Slice(i * n, n);
            RandomNumberGenerator.Fill(block);
            XorInto(fold, block);
            Diffuse(fold, hash);
        }
        var last = material.Slice((stripes - 1) * n, n);
        key.CopyTo(last);
        XorInto(last, fold);
        CryptographicOperations.ZeroMemory(fold);
    }

    /// <summary>Replaces each digest-sized piece of <paramref name="block"/> (the last may be shorter) by H(be32(index) || piece), truncated.</summary>
    private static void Diffuse(Span<byte> block, CryptoHash hash)
    {
        int ds = hash.DigestBytes;
        Span<byte> input = stackalloc byte[4 + 64];
        Span<byte> digest = stackalloc byte[64];
        for (int j = 0, at = 0; at < block.Length; j++, at += ds)
        {
            var piece = block.Slice(at, Math.Min(ds, block.Length - at));
            BinaryPrimitives.WriteUInt32BigEndian(input, (uint)j);
            piece.CopyTo(input[4..]);
            hash.Hash(input[..(4 + piece.Length)], digest);
            digest[..piece.Length].CopyTo(piece);
        }
    }

    private static void XorInto(Span<byte> into, ReadOnlySpan<byte> other)
    {
        for (int i = 0; i < into.Length; i++) into[i] ^= other[i];
    }
}
