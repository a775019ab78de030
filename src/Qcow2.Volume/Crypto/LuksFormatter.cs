using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Qcow2.Spans.Layout;

namespace Qcow2.Volume.Crypto;

/// <summary>
/// Builds a new LUKS1 region (header plus key material) as QEMU lays it out for qcow2 (luks1-notes.md,
/// sections 2, 4 and 5): slot i's material at sector 8 + i × (material sectors rounded up to 8), slot 0
/// holding the key, the other seven disabled, payload offset after the eighth slot.
/// </summary>
internal static class LuksFormatter
{
    private const int MinIterations = 1000;
    private const int SectorsPerAlignment = 8;

    /// <summary>Validates the options into a cipher spec (the same parser as an image's header).</summary>
    /// <exception cref="ArgumentException">A value qemu-img refuses, or one this toolkit does not implement.</exception>
    public static (LuksCipherSpec Spec, CryptoHash Hash, string ModeText) Validate(LuksCreateOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(o.Secret);
        int aesBytes = o.CipherAlg switch
        {
            "aes-128" => 16,
            "aes-192" => 24,
            "aes-256" => 32,
            _ => throw new ArgumentException($"The cipher '{o.CipherAlg}' is not supported for creation (aes-128, aes-192 and aes-256 are).", nameof(o)),
        };
        if (o.CipherMode is not ("xts" or "cbc"))
            throw new ArgumentException($"The cipher mode '{o.CipherMode}' is not supported for creation (xts and cbc are).", nameof(o));
        if (o.IvgenAlg is not ("plain" or "plain64" or "essiv"))
            throw new ArgumentException($"The IV generator '{o.IvgenAlg}' is not supported (plain, plain64 and essiv are).", nameof(o));
        if (o.IterTimeMs <= 0 && o.Iterations is null)
            throw new ArgumentException("The iteration time must be positive.", nameof(o));
        int keyBytes = aesBytes * (o.CipherMode == "xts" ? 2 : 1);
        // QEMU decrypts key material in whole 512-byte sectors only (it asserts otherwise): aes-192-cbc
        // gives 96000 bytes, which qemu-img could not open.
        if ((long)keyBytes * LuksKeyStore.Stripes % 512 != 0)
            throw new ArgumentException($"{o.CipherAlg}-{o.CipherMode} gives key material that is not a whole number of sectors; QEMU cannot open it.", nameof(o));
        string mode = o.CipherMode + "-" + o.IvgenAlg + (o.IvgenAlg == "essiv" ? ":" + o.IvgenHashAlg : "");
        if (!CryptoHash.TryGet(o.HashAlg, out var hash))
            throw new ArgumentException($"The hash '{o.HashAlg}' is not supported (sha1, sha256, sha384, sha512 are).", nameof(o));
        // An image this toolkit could not unlock again is refused (LuksKeyStore.DefaultUnlockWork).
        if (o.Iterations is { } it && (it < 1 || it > MaxSlotIterations(hash, keyBytes)))
            throw new ArgumentException($"Iterations must be from 1 to {MaxSlotIterations(hash, keyBytes)} for {o.CipherAlg}-{o.CipherMode} with {o.HashAlg}.", nameof(o));
        try
        {
            return (LuksCipherSpec.Parse("aes", mode, (uint)keyBytes), hash, mode);
        }
        catch (Qcow2.Spans.Qcow2UnsupportedImageException e)
        {
            throw new ArgumentException(e.Message, nameof(o), e);
        }
    }

    /// <summary>The whole LUKS region for a new image (its length is the payload offset).</summary>
    public static byte[] Build(LuksCreateOptions o) => Build(o, out _, wantCipher: false);

    /// <summary>The whole LUKS region for a new image, and the data cipher its master key gives (for writing encrypted zeros).</summary>
    public static byte[] Build(LuksCreateOptions o, out ImageEncryption? dataCipher, bool wantCipher = true)
    {
        var (spec, hash, modeText) = Validate(o);
        int keyBytes = spec.KeyBytes;
        int slotSectors = SlotSectors(keyBytes);
        int firstSector = LuksKeyStore.FirstKeyMaterialOffset / 512;
        int payloadSector = firstSector + LuksKeyStore.SlotCount * slotSectors;
        int materialBytes = keyBytes * LuksKeyStore.Stripes;
        byte[] region = new byte[payloadSector * 512];
        dataCipher = null;

        byte[] masterKey = RandomNumberGenerator.GetBytes(keyBytes);
        byte[] slotKey = new byte[keyBytes];
        try
        {
            uint slotIterations = o.Iterations ?? Calibrate(hash, keyBytes, o.IterTimeMs);
            uint digestIterations = DigestIterations(slotIterations);

            var h = LuksPartitionHeaderView.Create(region);
            LuksKeyStore.Magic.CopyTo(h.Magic);
            h.Version = 1;
            Encoding.ASCII.GetBytes(spec.CipherName).CopyTo(h.CipherName);
            Encoding.ASCII.GetBytes(modeText).CopyTo(h.CipherMode);
            Encoding.ASCII.GetBytes(hash.Name).CopyTo(h.HashSpec);
            h.PayloadOffset = (uint)payloadSector;
            h.KeyBytes = (uint)keyBytes;
            RandomNumberGenerator.Fill(h.MasterKeyDigestSalt);
            h.MasterKeyDigestIterations = digestIterations;
            hash.Pbkdf2(masterKey, h.MasterKeyDigestSalt, (int)digestIterations, h.MasterKeyDigest);
            Encoding.ASCII.GetBytes(Guid.NewGuid().ToString("D", CultureInfo.InvariantCulture)).CopyTo(h.Uuid);

            for (int i = 0; i < LuksKeyStore.SlotCount; i++)
            {
                var slot = LuksKeySlotView.Create(h.KeySlots.Slice(i * LuksKeySlotView.SizeInBytes));
                slot.Active = i == 0 ? LuksKeyStore.SlotEnabled : LuksKeyStore.SlotDisabled;
                slot.KeyMaterialOffset = (uint)(firstSector + i * slotSectors);
                slot.Stripes = LuksKeyStore.Stripes;
                if (i != 0) continue;
                slot.Iterations = slotIterations;
                RandomNumberGenerator.Fill(slot.Salt);
                hash.Pbkdf2(o.Secret, slot.Salt, (int)slotIterations, slotKey);
                var material = region.AsSpan(firstSector * 512, materialBytes);
                AntiForensicSplitter.Split(masterKey, LuksKeyStore.Stripes, hash, material);
                using var cipher = spec.Create(slotKey);
                cipher.Encrypt(material, 0);
            }
            if (wantCipher) dataCipher = ImageEncryption.ForLuksMasterKey(spec.Create(masterKey));
            return region;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(masterKey);
            CryptographicOperations.ZeroMemory(slotKey);
        }
    }

    /// <summary>Sectors of one key slot's material (4000 stripes of the key), rounded up to 4 KiB as QEMU aligns them.</summary>
    internal static int SlotSectors(int keyBytes)
    {
        int materialSectors = (keyBytes * LuksKeyStore.Stripes + 511) / 512;
        return (materialSectors + SectorsPerAlignment - 1) / SectorsPerAlignment * SectorsPerAlignment;
    }

    /// <summary>Bytes of the LUKS region (header and eight key slots: the payload offset) for a master key of <paramref name="keyBytes"/>.</summary>
    internal static long RegionBytes(int keyBytes) =>
        (LuksKeyStore.FirstKeyMaterialOffset / 512 + (long)LuksKeyStore.SlotCount * SlotSectors(keyBytes)) * 512;

    private static uint DigestIterations(uint slotIterations) => Math.Max(MinIterations, slotIterations / 8);

    /// <summary>
    /// The most slot iterations whose slot, with its digest check (an eighth, at least 1000), stays within
    /// <see cref="LuksKeyStore.DefaultUnlockWork"/>: it × blocks + max(1000, it / 8) ≤ it × (8 × blocks + 1) / 8 + 1000.
    /// </summary>
    internal static uint MaxSlotIterations(CryptoHash hash, int keyBytes)
    {
        long blocks = (keyBytes + hash.DigestBytes - 1) / hash.DigestBytes;
        long max = 8 * (LuksKeyStore.DefaultUnlockWork - MinIterations) / (8 * blocks + 1);
        Debug.Assert(LuksKeyStore.SlotWork((uint)max, keyBytes, hash, DigestIterations((uint)max)) <= LuksKeyStore.DefaultUnlockWork);
        return (uint)max;
    }

    /// <summary>PBKDF2 iterations that take about <paramref name="milliseconds"/> here (at least 1000).</summary>
    private static uint Calibrate(CryptoHash hash, int keyBytes, int milliseconds)
    {
        Span<byte> salt = stackalloc byte[LuksKeyStore.SaltBytes];
        Span<byte> output = stackalloc byte[64];
        ReadOnlySpan<byte> password = "calibration"u8;
        int rounds = 1 << 12;
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            hash.Pbkdf2(password, salt, rounds, output[..keyBytes]);
            double elapsed = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (elapsed >= 20 || rounds >= 1 << 24)
            {
                double perMs = rounds / Math.Max(elapsed, 0.001);
                double want = perMs * milliseconds;
                return (uint)Math.Clamp(want, MinIterations, MaxSlotIterations(hash, keyBytes));
            }
            rounds <<= 1;
        }
    }
}
