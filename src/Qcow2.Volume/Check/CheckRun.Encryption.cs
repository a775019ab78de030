using System.Buffers.Binary;

namespace Qcow2.Volume.Check;

/// <summary>
/// The LUKS region (full disk encryption header extension) and the other metadata that no L2 table
/// may lie in. The region's length comes from the header, so it is untrusted: a region that runs past
/// the end of the file is a corruption, repaired (when the LUKS header inside says how long it really
/// is) by shortening the extension's length, and never by growing the file to the claimed end.
/// The key material (what the LUKS header at the region's start uses) is never written by a
/// repair: an L1 entry pointing into it (or into the header cluster) is dropped rather than its
/// "L2 table" repaired, and an L1 table lying in it is left as it is.
/// </summary>
internal sealed partial class CheckRun
{
    // LUKS1 on-disk header (the LUKS1 format, as the qcow2 spec's encryption section refers to it).
    private static ReadOnlySpan<byte> LuksMagic => [(byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xba, 0xbe];
    private const int LuksPayloadOffsetAt = 104, LuksKeyBytesAt = 108, LuksSlotsAt = 208, LuksSlotSize = 48, LuksSlotCount = 8;
    private const int LuksHeaderBytes = LuksSlotsAt + LuksSlotSize * LuksSlotCount;
    private const uint LuksSlotActive = 0x00AC71F3;
    private const int LuksSector = 512;

    // The encryption region as the check uses it (after a repair shortened it) and the part of it
    // that no L2 table may overlap.
    private ulong _cryptoOffset, _cryptoLength, _cryptoProtectedLength;

    /// <summary>
    /// Looks at the encryption region before anything is counted: when it runs a cluster or more past
    /// the end of the file and the LUKS header at its start says how long it really is (the payload
    /// offset, covering every active key slot's material, all inside the file), a repair writes that
    /// length to the header extension. Otherwise the region stays a corruption that is never counted
    /// past the end of the file (see <see cref="CountEncryptionRegion"/>).
    /// </summary>
    private void PrepareEncryptionRegion()
    {
        _cryptoOffset = _img.CryptoHeaderOffset;
        _cryptoLength = _img.CryptoHeaderLength;
        _cryptoProtectedLength = 0;
        if (_cryptoLength == 0) return;
        var (keyEnd, payload) = LuksExtent();
        // Only what a LUKS header at the region's start uses is protected from being read as an L2
        // table: a region that holds no LUKS header (or is longer than its header needs) must not
        // make the repair drop L1 entries of real tables on the strength of an untrusted length.
        _cryptoProtectedLength = Math.Min(_cryptoLength, keyEnd);
        if (!RegionPastEnd(_cryptoOffset, _cryptoLength) || keyEnd == 0) return;
        ulong length;
        if (payload >= keyEnd && payload <= _cryptoLength && !RegionPastEnd(_cryptoOffset, payload)) length = payload;
        else if (keyEnd <= _cryptoLength && !RegionPastEnd(_cryptoOffset, keyEnd)) length = keyEnd;
        else return;
        if (!FixErrors || _img.CryptoExtensionDataOffset == 0) return;
        Span<byte> raw = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(raw, length);
        _storage.Write(_img.CryptoExtensionDataOffset + 8, raw);
        _storage.Flush();
        _res.CorruptionsFixed++;
        Report(CheckFindingKind.PastEndOfFile, (long)_cryptoOffset,
            $"encryption header region offset {Hex(_cryptoOffset)} length {Hex(_cryptoLength)} exceeds the end of the file; length set to {Hex(length)}, what its LUKS header uses",
            repaired: true);
        _cryptoLength = length;
    }

    /// <summary>Whether [offset, offset+length) runs a whole cluster or more past the end of the file (as <see cref="IncrementRange"/> judges it).</summary>
    private bool RegionPastEnd(ulong offset, ulong length)
    {
        ulong limit = (ulong)_fileLength + (ulong)ClusterSize;
        return offset >= limit || length >= limit - offset;
    }

    /// <summary>
    /// What the LUKS1 header at the start of the encryption region uses: the end of its header and of
    /// every active key slot's material, and its payload offset (both relative to the region). (0, 0)
    /// when there is no LUKS1 header with an active slot there (inside the file).
    /// </summary>
    private (ulong KeyEnd, ulong Payload) LuksExtent()
    {
        if (_cryptoOffset >= (ulong)_fileLength || (ulong)_fileLength - _cryptoOffset < LuksHeaderBytes) return (0, 0);
        Span<byte> header = stackalloc byte[LuksHeaderBytes];
        ReadZeroFilled((long)_cryptoOffset, header);
        if (!header[..LuksMagic.Length].SequenceEqual(LuksMagic) || BinaryPrimitives.ReadUInt16BigEndian(header[6..]) != 1) return (0, 0);
        ulong keyBytes = BinaryPrimitives.ReadUInt32BigEndian(header[LuksKeyBytesAt..]);
        ulong end = LuksHeaderBytes;
        bool anyActive = false;
        for (int s = 0; s < LuksSlotCount; s++)
        {
            var slot = header.Slice(LuksSlotsAt + s * LuksSlotSize, LuksSlotSize);
            if (BinaryPrimitives.ReadUInt32BigEndian(slot) != LuksSlotActive) continue;
            anyActive = true;
            ulong materialOffset = (ulong)BinaryPrimitives.ReadUInt32BigEndian(slot[40..]) * LuksSector;
            ulong material = BinaryPrimitives.ReadUInt32BigEndian(slot[44..]) * keyBytes;   // both 32-bit: no overflow
            if (material > ulong.MaxValue - materialOffset) return (0, 0);
            end = Math.Max(end, materialOffset + material);
        }
        if (!anyActive) return (0, 0);
        return (end, (ulong)BinaryPrimitives.ReadUInt32BigEndian(header[LuksPayloadOffsetAt..]) * LuksSector);
    }

    /// <summary>
    /// Counts the encryption region. One that runs past the end of the file (and was not repaired) is
    /// reported and left uncounted like any such region, but never brought inside the file by a
    /// rebuild: zeros are no key material, and a length from the header must not size what the
    /// repair allocates or writes.
    /// </summary>
    private void CountEncryptionRegion()
    {
        if (_cryptoLength == 0) return;
        bool pastEnd = RegionPastEnd(_cryptoOffset, _cryptoLength);
        int pending = _pastEndRegions.Count;
        ulong reach = _maxReferencedEnd;
        IncrementRange(_cryptoOffset, (long)_cryptoLength);
        if (!pastEnd) return;
        if (_pastEndRegions.Count > pending) _pastEndRegions.RemoveAt(_pastEndRegions.Count - 1);
        _maxReferencedEnd = reach;
    }

    /// <summary>Whether entries of an L1 table may be rewritten in place: not when it lies in the header cluster or the LUKS key material.</summary>
    private bool L1TableWritable(long l1Offset, int l1Size)
    {
        if (l1Offset < ClusterSize) return false;
        ulong start = (ulong)l1Offset, length = (ulong)l1Size * 8;
        return _cryptoProtectedLength == 0 || start >= _cryptoOffset + _cryptoProtectedLength || start + length <= _cryptoOffset;
    }

    /// <summary>
    /// Whether an L2 table at <paramref name="l2Offset"/> (cluster aligned) would lie in metadata that
    /// is certainly no L2 table and that no repair can bring back: the header cluster, or the LUKS key
    /// material. Null when it does not; otherwise what it overlaps.
    /// </summary>
    /// <remarks>
    /// The other metadata (refcount table and blocks, snapshot table, bitmap directory, L1 table) is
    /// not treated so: its extent comes from header fields (refcount_table_clusters, l1_size, the
    /// snapshot count...) that are as untrusted as the L1 entry, so on a single damaged header field
    /// dropping the L1 entries of the real tables it "covers" would lose guest data; and what a
    /// repair writes into it is rebuilt (refcounts) or re-counted. Such overlaps stay what they are in
    /// qemu-img check: a refcount corruption.
    /// </remarks>
    private string? ProtectedMetadataAt(ulong l2Offset)
    {
        ulong cs = (ulong)ClusterSize;
        if (l2Offset < cs) return "the image header";
        if (_cryptoProtectedLength != 0 && l2Offset + cs > _cryptoOffset && l2Offset < _cryptoOffset + _cryptoProtectedLength)
            return "the encryption key material";
        return null;
    }
}
