using System.Buffers.Binary;

namespace Qcow2.Volume.Check;

/// <summary>
/// The LUKS region (full disk encryption header extension) and the other metadata that no L2 table
/// may lie in. The region's length comes from the header, so it is untrusted: a region that runs past
/// the end of the file is a corruption, repaired (when the LUKS header inside says how long it really
/// is) by shortening the extension's length, and never by growing the file to the claimed end.
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
    private long _snapshotTableBytes;
    private HashSet<ulong>? _refcountBlockOffsets;

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
        _cryptoProtectedLength = _cryptoLength;
        if (_cryptoLength == 0) return;
        if (!RegionPastEnd(_cryptoOffset, _cryptoLength)) return;
        ulong? needed = LuksRegionLength();
        // What cannot be known stays unprotected beyond the LUKS header itself: dropping L1 entries
        // because of a length nobody can trust would lose data.
        _cryptoProtectedLength = needed ?? Math.Min(_cryptoLength, (ulong)ClusterSize);
        if (needed is not { } length || !FixErrors || _img.CryptoExtensionDataOffset == 0) return;
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
    /// How many bytes the LUKS header at the start of the encryption region uses: its payload offset,
    /// or more if an active key slot's material ends later. Null when there is no readable LUKS1
    /// header there, or what it uses does not lie inside both the claimed region and the file.
    /// </summary>
    private ulong? LuksRegionLength()
    {
        if (_cryptoOffset >= (ulong)_fileLength || (ulong)_fileLength - _cryptoOffset < LuksHeaderBytes) return null;
        Span<byte> header = stackalloc byte[LuksHeaderBytes];
        ReadZeroFilled((long)_cryptoOffset, header);
        if (!header[..LuksMagic.Length].SequenceEqual(LuksMagic) || BinaryPrimitives.ReadUInt16BigEndian(header[6..]) != 1) return null;
        ulong keyBytes = BinaryPrimitives.ReadUInt32BigEndian(header[LuksKeyBytesAt..]);
        ulong needed = LuksHeaderBytes;
        bool anyActive = false;
        for (int s = 0; s < LuksSlotCount; s++)
        {
            var slot = header.Slice(LuksSlotsAt + s * LuksSlotSize, LuksSlotSize);
            if (BinaryPrimitives.ReadUInt32BigEndian(slot) != LuksSlotActive) continue;
            anyActive = true;
            ulong materialOffset = (ulong)BinaryPrimitives.ReadUInt32BigEndian(slot[40..]) * LuksSector;
            ulong stripes = BinaryPrimitives.ReadUInt32BigEndian(slot[44..]);
            ulong material = stripes * keyBytes;   // both 32-bit: no overflow
            if (material > ulong.MaxValue - materialOffset) return null;
            needed = Math.Max(needed, materialOffset + material);
        }
        if (!anyActive) return null;
        ulong payload = (ulong)BinaryPrimitives.ReadUInt32BigEndian(header[LuksPayloadOffsetAt..]) * LuksSector;
        if (payload >= needed && payload <= _cryptoLength && !RegionPastEnd(_cryptoOffset, payload)) return payload;
        if (needed <= _cryptoLength && !RegionPastEnd(_cryptoOffset, needed)) return needed;
        return null;
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

    /// <summary>
    /// Whether an L2 table at <paramref name="l2Offset"/> (cluster aligned) would lie in metadata that
    /// is no L2 table: the header cluster, the encryption region, the active L1 table, the refcount
    /// table or a refcount block, the snapshot table, the bitmap directory. Null when it does not;
    /// otherwise what it overlaps.
    /// </summary>
    private string? ProtectedMetadataAt(ulong l2Offset)
    {
        ulong cs = (ulong)ClusterSize;
        if (l2Offset < cs) return "the image header";
        if (Overlaps(l2Offset, _cryptoOffset, _cryptoProtectedLength)) return "the encryption header";
        if (Overlaps(l2Offset, (ulong)_img.L1Offset, (ulong)_img.L1Size * 8)) return "the active L1 table";
        if (Overlaps(l2Offset, (ulong)_img.RefcountTableOffset, (ulong)_img.RefcountTableClusters << ClusterBits)) return "the refcount table";
        if (Overlaps(l2Offset, _img.SnapshotsOffset, (ulong)_snapshotTableBytes)) return "the snapshot table";
        if (Overlaps(l2Offset, _img.BitmapDirectoryOffset, _img.BitmapDirectorySize)) return "the bitmap directory";
        if (_refcountBlockOffsets is null)
        {
            _refcountBlockOffsets = new HashSet<ulong>();
            foreach (ulong e in _refcountTable)
            {
                ulong block = e & RefcountTableOffsetMask;
                if (block != 0 && (e & RefcountTableReservedMask) == 0) _refcountBlockOffsets.Add(block);
            }
        }
        return _refcountBlockOffsets.Contains(l2Offset) ? "a refcount block" : null;

        bool Overlaps(ulong table, ulong start, ulong length) =>
            length != 0 && table + cs > start && (start >= ulong.MaxValue - length || table < start + length);
    }
}
