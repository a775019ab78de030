using System.Text;
using Qcow2.Spans;
using Qcow2.Spans.Layout;

namespace Qcow2.Volume;

/// <summary>One LUKS key slot, as qemu-img info describes it.</summary>
/// <param name="Active">Whether the slot holds a key.</param>
/// <param name="Iterations">PBKDF2 iterations of the slot (meaningful when active).</param>
/// <param name="KeyOffset">Byte offset of the slot's key material from the start of the LUKS header.</param>
/// <param name="Stripes">Anti-forensic stripes (meaningful when active).</param>
public sealed record LuksSlotInfo(bool Active, uint Iterations, long KeyOffset, uint Stripes);

/// <summary>
/// The LUKS header of an image with crypt_method 2, read without a key: what qemu-img info prints in
/// its "encrypt" block. Names are QEMU's (e.g. cipher alg "aes-256", cipher mode "xts", ivgen alg "plain64").
/// </summary>
public sealed record LuksInfo
{
    private const uint SlotActive = 0x00AC71F3;

    /// <summary>Cipher and key size, e.g. "aes-256".</summary>
    public required string CipherAlg { get; init; }

    /// <summary>Block cipher mode, e.g. "xts" or "cbc".</summary>
    public required string CipherMode { get; init; }

    /// <summary>IV generator, e.g. "plain64" or "essiv".</summary>
    public required string IvgenAlg { get; init; }

    /// <summary>Hash of the IV generator (essiv only), or null.</summary>
    public string? IvgenHashAlg { get; init; }

    /// <summary>Hash used by PBKDF2 and the AF splitter, e.g. "sha256".</summary>
    public required string HashAlg { get; init; }

    /// <summary>Byte offset of the encrypted payload from the start of the LUKS header.</summary>
    public long PayloadOffset { get; init; }

    /// <summary>PBKDF2 iterations of the master key digest.</summary>
    public uint MasterKeyIters { get; init; }

    /// <summary>The volume UUID as text.</summary>
    public required string Uuid { get; init; }

    /// <summary>The eight key slots.</summary>
    public required IReadOnlyList<LuksSlotInfo> Slots { get; init; }

    /// <summary>Parses a LUKS1 partition header found at <paramref name="headerOffset"/> of the image file.</summary>
    /// <exception cref="Qcow2CorruptImageException">The header is not a LUKS1 header.</exception>
    internal static LuksInfo Parse(Span<byte> header, long headerOffset)
    {
        if (!LuksPartitionHeaderView.TryCreate(header, out var v))
            throw new Qcow2CorruptImageException("LUKS header", headerOffset, (ulong)header.Length, "The LUKS header is truncated.");
        ReadOnlySpan<byte> magic = [(byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xBA, 0xBE];
        if (!v.Magic.SequenceEqual(magic))
            throw new Qcow2CorruptImageException("LUKS header.magic", headerOffset, 0, "The encryption header is not a LUKS header (bad magic).");
        if (v.Version != 1)
            throw new Qcow2UnsupportedImageException("encryption", $"Unsupported LUKS version {v.Version}.");
        string cipher = Text(v.CipherName);
        string modeSpec = Text(v.CipherMode);
        string hash = Text(v.HashSpec);
        int dash = modeSpec.IndexOf('-');
        string mode = dash < 0 ? modeSpec : modeSpec[..dash];
        string ivgen = dash < 0 ? "" : modeSpec[(dash + 1)..];
        string? ivHash = null;
        int colon = ivgen.IndexOf(':');
        if (colon >= 0) { ivHash = ivgen[(colon + 1)..]; ivgen = ivgen[..colon]; }
        // XTS keys hold two cipher keys; QEMU names the cipher by one key's size.
        long keyBits = (long)v.KeyBytes * 8 / (mode == "xts" ? 2 : 1);
        var slots = new LuksSlotInfo[8];
        for (int i = 0; i < 8; i++)
        {
            var s = LuksKeySlotView.Create(v.KeySlots.Slice(i * 48, 48));
            slots[i] = new LuksSlotInfo(s.Active == SlotActive, s.Iterations, (long)s.KeyMaterialOffset * 512, s.Stripes);
        }
        return new LuksInfo
        {
            CipherAlg = cipher + "-" + keyBits.ToString(System.Globalization.CultureInfo.InvariantCulture),
            CipherMode = mode,
            IvgenAlg = ivgen,
            IvgenHashAlg = ivHash,
            HashAlg = hash,
            PayloadOffset = (long)v.PayloadOffset * 512,
            MasterKeyIters = v.MasterKeyDigestIterations,
            Uuid = Text(v.Uuid),
            Slots = slots,
        };
    }

    private static string Text(ReadOnlySpan<byte> field)
    {
        int nul = field.IndexOf((byte)0);
        return Encoding.ASCII.GetString(nul < 0 ? field : field[..nul]);
    }
}
