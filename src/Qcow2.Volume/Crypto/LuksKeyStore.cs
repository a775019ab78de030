using System.Security.Cryptography;
using System.Text;
using Qcow2.Spans;
using Qcow2.Spans.Layout;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Crypto;

/// <summary>
/// Unlocks the master key of a LUKS1 header held inside a qcow2 image (luks1-notes.md, sections 1-4):
/// for each active key slot in order, PBKDF2 of the secret with the slot's salt and iterations gives
/// the slot key; the slot's key material, decrypted with it as sectors numbered from 0, merges (AF) into
/// a candidate master key; PBKDF2 of the candidate must reproduce the header's 20-byte digest.
/// </summary>
/// <remarks>
/// Every number that sizes work or memory comes from the untrusted header and is checked first:
/// stripes must be QEMU's 4000 (so key material is at most 64 × 4000 bytes), the key size must fit the
/// cipher, and the PBKDF2 work one open may spend is capped (<see cref="DefaultUnlockWork"/>, or
/// <see cref="Qcow2OpenOptions.MaxKeyDerivationWork"/>). QEMU 7.2 only requires iteration counts to be
/// non-zero, so a hostile header (eight active slots, each with 2^32 - 1 iterations and a 64-byte key
/// under SHA-1) would keep it hashing for days; a wrong secret pays for every active slot. The cap
/// counts hash-block iterations (iterations × output blocks, plus the digest check of each slot tried).
/// It must stay far above what honest images need: qemu-img's iter-time measures the time of one slot
/// derivation on the creating machine, so a faster machine or a longer iter-time makes larger counts.
/// </remarks>
internal static class LuksKeyStore
{
    public const uint SlotEnabled = 0x00AC71F3;
    public const uint SlotDisabled = 0x0000DEAD;

    /// <summary>The anti-forensic stripe count QEMU writes and requires.</summary>
    public const int Stripes = 4000;

    /// <summary>
    /// The PBKDF2 work one unlock may spend by default, in hash-block iterations (see <see cref="SlotWork"/>),
    /// summed over the slots it tries (<see cref="Qcow2OpenOptions.MaxKeyDerivationWork"/> changes it).
    /// Slots are tried in order until one matches; trying a slot that would take the total past the
    /// limit is refused instead. .NET's PBKDF2 does about 5·10^6 block iterations a second on one core
    /// of the 2-core test machine, so 2^26 is about 13 s there: the most a hostile header can cost by
    /// default. qemu-img's default 2 s iter-time made a slot of about 2.05·10^7 (9.1 M iterations of
    /// SHA-256 for a 64-byte key, plus its digest check) on that machine: images made with up to about
    /// 6 s iter-time on a machine like it open by default; raise the option for longer ones.
    /// </summary>
    public const long DefaultUnlockWork = 1L << 26;

    /// <summary>The largest single PBKDF2 iteration count accepted at all (.NET's PBKDF2 takes an int).</summary>
    public const uint MaxIterations = int.MaxValue;

    /// <summary>
    /// The PBKDF2 cost of trying one key slot: its iterations times the output blocks of the slot key
    /// (PBKDF2 runs its iterations once per digest-sized block of output), plus the master key digest
    /// check (20 bytes: one block of any supported hash).
    /// </summary>
    public static long SlotWork(uint slotIterations, int keyBytes, CryptoHash hash, uint digestIterations) =>
        (long)slotIterations * ((keyBytes + hash.DigestBytes - 1) / hash.DigestBytes) + digestIterations;

    public const int SlotCount = 8;
    public const int DigestBytes = 20;
    public const int SaltBytes = 32;
    public const int HeaderBytes = LuksPartitionHeaderView.SizeInBytes;

    /// <summary>The key slots' material starts no earlier than this (QEMU and cryptsetup align it to 4 KiB).</summary>
    public const int FirstKeyMaterialOffset = 4096;

    public static ReadOnlySpan<byte> Magic => [(byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xBA, 0xBE];

    /// <summary>Unlocks the header at <paramref name="regionOffset"/> of <paramref name="file"/> (the region is <paramref name="regionLength"/> bytes), spending at most <paramref name="maxWork"/> PBKDF2 block iterations over the slots it tries.</summary>
    /// <exception cref="Qcow2CorruptImageException">The header or a key slot is malformed.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The cipher, hash or an iteration count is beyond what is supported.</exception>
    /// <exception cref="Qcow2KeyException">No active key slot accepts the secret.</exception>
    public static SectorCipher Unlock(IStorage file, long regionOffset, long regionLength, ReadOnlySpan<byte> secret, long maxWork = DefaultUnlockWork)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxWork);
        byte[] headerBytes = new byte[HeaderBytes];
        int got = file.Read(regionOffset, headerBytes);
        if (got < HeaderBytes)
            throw new Qcow2CorruptImageException("LUKS header", regionOffset, (ulong)Math.Max(got, 0), "The LUKS header is truncated.");
        var h = LuksPartitionHeaderReadOnlyView.Create(headerBytes);
        if (!h.Magic.SequenceEqual(Magic))
            throw new Qcow2CorruptImageException("LUKS header.magic", regionOffset, 0, "The encryption header is not a LUKS header (bad magic).");
        if (h.Version != 1)
            throw new Qcow2UnsupportedImageException("encryption", $"Unsupported LUKS version {h.Version}.");

        var spec = LuksCipherSpec.Parse(Text(h.CipherName), Text(h.CipherMode), h.KeyBytes);
        var hash = CryptoHash.Get(Text(h.HashSpec), "PBKDF2");
        int keyBytes = spec.KeyBytes;
        uint digestIterations = h.MasterKeyDigestIterations;
        CheckIterations(digestIterations, "LUKS header.mk_digest_iterations", regionOffset + LuksPartitionHeaderView.MasterKeyDigestIterationsOffset, maxWork);

        // Validate every slot before spending time on any of them.
        int materialBytes = keyBytes * Stripes;
        Span<int> active = stackalloc int[SlotCount];
        int activeCount = 0;
        for (int i = 0; i < SlotCount; i++)
        {
            long slotAt = regionOffset + LuksPartitionHeaderView.KeySlotsOffset + i * LuksKeySlotView.SizeInBytes;
            var slot = LuksKeySlotReadOnlyView.Create(h.KeySlots.Slice(i * LuksKeySlotView.SizeInBytes));
            if (slot.Active == SlotDisabled) continue;
            if (slot.Active != SlotEnabled)
                throw new Qcow2CorruptImageException($"LUKS key slot {i}.active", slotAt, slot.Active, "The key slot state is neither enabled nor disabled.");
            CheckIterations(slot.Iterations, $"LUKS key slot {i}.iterations", slotAt + LuksKeySlotView.IterationsOffset, maxWork);
            if (slot.Stripes != Stripes)
                throw new Qcow2CorruptImageException($"LUKS key slot {i}.stripes", slotAt + LuksKeySlotView.StripesOffset, slot.Stripes,
                    $"The key slot has {slot.Stripes} anti-forensic stripes; LUKS1 as QEMU writes it uses {Stripes}.");
            long materialOffset = (long)slot.KeyMaterialOffset * SectorCipher.SectorSize;
            if (materialOffset < HeaderBytes || materialOffset > regionLength - materialBytes)
                throw new Qcow2CorruptImageException($"LUKS key slot {i}.key_material_offset", slotAt + LuksKeySlotView.KeyMaterialOffsetOffset, slot.KeyMaterialOffset,
                    "The key material overlaps the LUKS header or extends past the encryption header region.");
            if (regionOffset > file.Length - materialOffset - materialBytes)
                throw new Qcow2CorruptImageException($"LUKS key slot {i}.key_material_offset", slotAt + LuksKeySlotView.KeyMaterialOffsetOffset, slot.KeyMaterialOffset,
                    "The key material extends past the end of the file.");
            long work = SlotWork(slot.Iterations, keyBytes, hash, digestIterations);
            if (work > maxWork)
                throw new Qcow2UnsupportedImageException("encryption",
                    $"LUKS key slot {i} needs {work} PBKDF2 block iterations ({slot.Iterations} iterations, digest {digestIterations}); at most {maxWork} are spent on one open (Qcow2OpenOptions.MaxKeyDerivationWork).");
            active[activeCount++] = i;
        }

        byte[] material = new byte[materialBytes];
        byte[] slotKey = new byte[keyBytes];
        byte[] candidate = new byte[keyBytes];
        Span<byte> digest = stackalloc byte[DigestBytes];
        try
        {
            long spent = 0;
            for (int a = 0; a < activeCount; a++)
            {
                var slot = LuksKeySlotReadOnlyView.Create(h.KeySlots.Slice(active[a] * LuksKeySlotView.SizeInBytes));
                // A wrong secret pays for every active slot: stop before the total passes the limit.
                spent += SlotWork(slot.Iterations, keyBytes, hash, digestIterations);
                if (spent > maxWork)
                    throw new Qcow2UnsupportedImageException("encryption",
                        $"The secret unlocked none of LUKS key slots {string.Join(", ", active[..a].ToArray())}; trying key slot {active[a]} would take the PBKDF2 work of this open past {maxWork} block iterations (Qcow2OpenOptions.MaxKeyDerivationWork), so it was not tried.");
                hash.Pbkdf2(secret, slot.Salt, (int)slot.Iterations, slotKey);
                int read = file.Read(regionOffset + (long)slot.KeyMaterialOffset * SectorCipher.SectorSize, material);
                if (read < material.Length) material.AsSpan(Math.Max(read, 0)).Clear();
                using (var slotCipher = spec.Create(slotKey)) slotCipher.Decrypt(material, 0);
                AntiForensicSplitter.Merge(material, Stripes, hash, candidate);
                hash.Pbkdf2(candidate, h.MasterKeyDigestSalt, (int)digestIterations, digest);
                if (CryptographicOperations.FixedTimeEquals(digest, h.MasterKeyDigest))
                    return spec.Create(candidate);
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(material);
            CryptographicOperations.ZeroMemory(slotKey);
            CryptographicOperations.ZeroMemory(candidate);
        }
        throw new Qcow2KeyException("Invalid password, cannot unlock any keyslot");
    }

    private static void CheckIterations(uint iterations, string field, long offset, long maxWork)
    {
        if (iterations == 0)
            throw new Qcow2CorruptImageException(field, offset, 0, "The PBKDF2 iteration count is zero.");
        long most = Math.Min(MaxIterations, maxWork);
        if (iterations > most)
            throw new Qcow2UnsupportedImageException("encryption",
                $"{field} asks for {iterations} PBKDF2 iterations; at most {most} are accepted (Qcow2OpenOptions.MaxKeyDerivationWork).");
    }

    internal static string Text(ReadOnlySpan<byte> field)
    {
        int nul = field.IndexOf((byte)0);
        return Encoding.ASCII.GetString(nul < 0 ? field : field[..nul]);
    }
}
