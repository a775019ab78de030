using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Qcow2.Volume.Crypto;

/// <summary>How the per-sector IV is made from the sector number (dm-crypt's names).</summary>
internal enum IvGeneratorKind : byte
{
    /// <summary>The low 32 bits of the sector number, little-endian, zero padded.</summary>
    Plain,

    /// <summary>The 64-bit sector number, little-endian, zero padded.</summary>
    Plain64,

    /// <summary>The plain64 block encrypted (ECB) with a key that is the hash of the data key.</summary>
    Essiv,
}

/// <summary>
/// Encrypts and decrypts runs of 512-byte sectors, each with its own IV from its sector number, as
/// QEMU's block crypto layer (and dm-crypt) does. The last sector of a run may be shorter (a multiple of
/// the 16-byte block): LUKS key material is not always a whole number of sectors. Thread-safe: cipher
/// instances are rented per call.
/// </summary>
internal abstract class SectorCipher : IDisposable
{
    public const int SectorSize = 512;
    public const int SectorShift = 9;
    public const int BlockSize = 16;

    /// <summary>Sectors handled per batch (bounds the pooled scratch buffers).</summary>
    protected const int ChunkBytes = 64 * 1024;

    private readonly IvGeneratorKind _ivKind;
    private readonly AesKeyPool? _essiv;

    protected SectorCipher(IvGeneratorKind ivKind, AesKeyPool? essiv)
    {
        _ivKind = ivKind;
        _essiv = essiv;
    }

    /// <summary>Encrypts <paramref name="data"/> in place; its first sector is number <paramref name="firstSector"/>.</summary>
    public void Encrypt(Span<byte> data, long firstSector) => Transform(data, firstSector, encrypt: true);

    /// <summary>Decrypts <paramref name="data"/> in place; its first sector is number <paramref name="firstSector"/>.</summary>
    public void Decrypt(Span<byte> data, long firstSector) => Transform(data, firstSector, encrypt: false);

    private void Transform(Span<byte> data, long firstSector, bool encrypt)
    {
        if ((data.Length & (BlockSize - 1)) != 0)
            throw new ArgumentException("Encrypted data is a whole number of 16-byte blocks.", nameof(data));
        if (data.IsEmpty) return;
        byte[] ivs = ArrayPool<byte>.Shared.Rent(ChunkBytes / SectorSize * BlockSize);
        try
        {
            long sector = firstSector;
            while (!data.IsEmpty)
            {
                int n = Math.Min(ChunkBytes, data.Length);
                int sectors = (n + SectorSize - 1) >> SectorShift;
                int ivLength = sectors * BlockSize;
                FillIvs(ivs, ivLength, sector);
                TransformChunk(data[..n], ivs, ivLength, encrypt);
                sector += sectors;
                data = data[n..];
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(ivs);
        }
    }

    /// <summary>
    /// Transforms at most <see cref="ChunkBytes"/> bytes: sector <c>i</c> of <paramref name="data"/> has IV
    /// <c>ivs[16i..16i+16]</c>, for the first <paramref name="ivLength"/> bytes of <paramref name="ivs"/>.
    /// </summary>
    protected abstract void TransformChunk(Span<byte> data, byte[] ivs, int ivLength, bool encrypt);

    private void FillIvs(byte[] ivArray, int ivLength, long firstSector)
    {
        var ivs = ivArray.AsSpan(0, ivLength);
        ivs.Clear();
        for (int i = 0; i < ivs.Length / BlockSize; i++)
        {
            var iv = ivs.Slice(i * BlockSize, BlockSize);
            ulong sector = (ulong)(firstSector + i);
            if (_ivKind == IvGeneratorKind.Plain) BinaryPrimitives.WriteUInt32LittleEndian(iv, (uint)sector);
            else BinaryPrimitives.WriteUInt64LittleEndian(iv, sector);
        }
        if (_ivKind == IvGeneratorKind.Essiv)
        {
            using var lease = _essiv!.Rent();
            lease.EncryptEcb(ivArray, 0, ivLength, ivArray, 0);
        }
    }

    /// <summary>XORs <paramref name="mask"/> into <paramref name="data"/> (same length).</summary>
    protected static void Xor(Span<byte> data, ReadOnlySpan<byte> mask) => XorInto(data, data, mask);

    /// <summary><paramref name="destination"/> = <paramref name="a"/> XOR <paramref name="b"/> (all the same length; the destination may be either input).</summary>
    protected static void XorInto(Span<byte> destination, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var d = MemoryMarshal.Cast<byte, Vector<byte>>(destination);
        var x = MemoryMarshal.Cast<byte, Vector<byte>>(a);
        var y = MemoryMarshal.Cast<byte, Vector<byte>>(b);
        for (int i = 0; i < d.Length; i++) d[i] = x[i] ^ y[i];
        for (int i = d.Length * Vector<byte>.Count; i < destination.Length; i++) destination[i] = (byte)(a[i] ^ b[i]);
    }

    public virtual void Dispose() => _essiv?.Dispose();
}

/// <summary>
/// AES-XTS (IEEE 1619) without ciphertext stealing: the IV of each sector, encrypted with the second
/// key, is the tweak of its first block; each next block's tweak is the previous one multiplied by
/// x in GF(2^128) (little-endian bytes, reduction 0x87). Built on ECB: one call encrypts every tweak of
/// a batch, one encrypts the whitened data (in a pooled buffer: the cached transforms take arrays), which
/// is whitened again on its way back.
/// </summary>
internal sealed class XtsSectorCipher : SectorCipher
{
    private readonly AesKeyPool _dataKey;
    private readonly AesKeyPool _tweakKey;

    /// <param name="key">The XTS key: the data key followed by the tweak key, of equal length (32, 48 or 64 bytes).</param>
    /// <param name="ivKind">How sector numbers become IVs (tweaks).</param>
    /// <param name="essiv">The ESSIV key, or null; disposed with this cipher.</param>
    public XtsSectorCipher(ReadOnlySpan<byte> key, IvGeneratorKind ivKind, AesKeyPool? essiv)
        : base(ivKind, essiv)
    {
        if (key.Length is not (32 or 48 or 64))
            throw new ArgumentException($"An XTS-AES key is 32, 48 or 64 bytes, not {key.Length}.", nameof(key));
        _dataKey = new AesKeyPool(key[..(key.Length / 2)]);
        _tweakKey = new AesKeyPool(key[(key.Length / 2)..]);
    }

    protected override void TransformChunk(Span<byte> data, byte[] ivs, int ivLength, bool encrypt)
    {
        int n = data.Length;
        byte[] scratch = ArrayPool<byte>.Shared.Rent(2 * n + ivLength);
        try
        {
            var tweaks = scratch.AsSpan(0, n);
            var work = scratch.AsSpan(n, n);
            var first = scratch.AsSpan(2 * n, ivLength);
            using (var lease = _tweakKey.Rent()) lease.EncryptEcb(ivs, 0, ivLength, scratch, 2 * n);
            for (int s = 0; s < ivLength / BlockSize; s++)
            {
                ulong lo = BinaryPrimitives.ReadUInt64LittleEndian(first.Slice(s * BlockSize));
                ulong hi = BinaryPrimitives.ReadUInt64LittleEndian(first.Slice(s * BlockSize + 8));
                int end = Math.Min(data.Length, (s + 1) * SectorSize);
                for (int at = s * SectorSize; at < end; at += BlockSize)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(tweaks.Slice(at), lo);
                    BinaryPrimitives.WriteUInt64LittleEndian(tweaks.Slice(at + 8), hi);
                    // Multiply by x: shift the 128-bit little-endian value left, fold the carry back.
                    ulong carry = hi >> 63;
                    hi = (hi << 1) | (lo >> 63);
                    lo = (lo << 1) ^ (carry * 0x87);
                }
            }
            XorInto(work, data, tweaks);
            using (var lease = _dataKey.Rent())
            {
                if (encrypt) lease.EncryptEcb(scratch, n, n, scratch, n);
                else lease.DecryptEcb(scratch, n, n, scratch, n);
            }
            XorInto(data, work, tweaks);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    public override void Dispose()
    {
        _dataKey.Dispose();
        _tweakKey.Dispose();
        base.Dispose();
    }
}

/// <summary>
/// AES-CBC restarted at every sector with that sector's IV. Encryption chains block by block, so it
/// runs a sector per call; decryption does not: one ECB call decrypts a whole batch, then each block is
/// XORed with the ciphertext block before it (or its sector's IV).
/// </summary>
internal sealed class CbcSectorCipher : SectorCipher
{
    private readonly AesKeyPool _key;

    public CbcSectorCipher(ReadOnlySpan<byte> key, IvGeneratorKind ivKind, AesKeyPool? essiv)
        : base(ivKind, essiv)
    {
        _key = new AesKeyPool(key);
    }

    protected override void TransformChunk(Span<byte> data, byte[] ivArray, int ivLength, bool encrypt)
    {
        using var lease = _key.Rent();
        var ivs = ivArray.AsSpan(0, ivLength);
        if (!encrypt)
        {
            DecryptBatch(lease, data, ivs);
            return;
        }
        int whole = data.Length / SectorSize;
        if (whole > 0) EncryptBatch(lease, data[..(whole * SectorSize)], ivs[..(whole * BlockSize)]);
        if (whole * SectorSize < data.Length)
        {
            // A short last sector only occurs in LUKS key material, not on the I/O path: the one-shot API will do.
            var last = data[(whole * SectorSize)..];
            lease.Aes.EncryptCbc(last, ivs.Slice(whole * BlockSize, BlockSize), last, PaddingMode.None);
        }
    }

    /// <summary>
    /// Encrypts whole sectors: the chains of all sectors advance together, block j of every sector
    /// in one ECB call (each block's input is its plaintext XOR the previous ciphertext block, or the IV).
    /// </summary>
    private static void EncryptBatch(AesKeyPool.Lease lease, Span<byte> data, ReadOnlySpan<byte> ivs)
    {
        int sectors = data.Length / SectorSize;
        byte[] scratch = ArrayPool<byte>.Shared.Rent(sectors * BlockSize * 2);
        try
        {
            var chain = scratch.AsSpan(0, sectors * BlockSize);
            var column = scratch.AsSpan(sectors * BlockSize, sectors * BlockSize);
            ivs.CopyTo(chain);
            for (int j = 0; j < SectorSize / BlockSize; j++)
            {
                for (int s = 0; s < sectors; s++)
                {
                    var block = data.Slice(s * SectorSize + j * BlockSize, BlockSize);
                    var into = column.Slice(s * BlockSize, BlockSize);
                    block.CopyTo(into);
                    Xor(into, chain.Slice(s * BlockSize, BlockSize));
                }
                lease.EncryptEcb(scratch, sectors * BlockSize, sectors * BlockSize, scratch, 0);
                for (int s = 0; s < sectors; s++)
                    chain.Slice(s * BlockSize, BlockSize).CopyTo(data.Slice(s * SectorSize + j * BlockSize, BlockSize));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>
    /// Decrypts a batch: one ECB call over a pooled copy of the ciphertext, then each plaintext block is
    /// the decrypted block XOR the ciphertext block before it (or, for a sector's first block, its IV).
    /// </summary>
    private static void DecryptBatch(AesKeyPool.Lease lease, Span<byte> data, ReadOnlySpan<byte> ivs)
    {
        int n = data.Length;
        byte[] scratch = ArrayPool<byte>.Shared.Rent(2 * n);
        try
        {
            var cipher = scratch.AsSpan(0, n);
            var plain = scratch.AsSpan(n, n);
            data.CopyTo(cipher);
            lease.DecryptEcb(scratch, 0, n, scratch, n);
            for (int s = 0; s * SectorSize < n; s++)
            {
                int start = s * SectorSize;
                int length = Math.Min(SectorSize, n - start);
                XorInto(data.Slice(start, BlockSize), plain.Slice(start, BlockSize), ivs.Slice(s * BlockSize, BlockSize));
                XorInto(data.Slice(start + BlockSize, length - BlockSize), plain.Slice(start + BlockSize, length - BlockSize), cipher.Slice(start, length - BlockSize));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    public override void Dispose()
    {
        _key.Dispose();
        base.Dispose();
    }
}
