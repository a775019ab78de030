using System.Buffers.Binary;
using FsCheck.Fluent;

namespace Qcow2.Spans.Tests;

public class L1EntryTests
{
    private static readonly ClusterGeometry G64K = ClusterGeometry.Create(16);

    [Fact]
    public void CreateAndRead_RandomOffsets_RoundTripThroughBigEndianTable()
    {
        var gen = from cluster in Gen.Choose(0, int.MaxValue)
                  from copied in Gen.Elements(true, false)
                  from index in Gen.Choose(0, 7)
                  select (offset: (long)cluster << 16, copied, index);
        Props.Check(gen, t =>
        {
            var table = new byte[64];
            table.AsSpan().Fill(0xFF);
            var e = L1Entry.Create(t.offset, t.copied);
            L1Entry.Write(table, t.index, e);
            // Independent big-endian read at the spec's bit positions.
            ulong raw = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(t.index * 8));
            Assert.Equal((ulong)t.offset | (t.copied ? 1UL << 63 : 0), raw);
            var back = L1Entry.Read(table, t.index);
            Assert.Equal(t.offset, back.L2Offset);
            Assert.Equal(t.copied, back.IsCopied);
            Assert.Equal(t.offset == 0, back.IsUnallocated);
            Assert.Equal(TableEntryStatus.Valid, back.Validate(G64K));
        });
    }

    [Theory]
    [InlineData(0x0000_0000_0001_0001UL, TableEntryStatus.ReservedBitsSet)]
    [InlineData(0x0000_0000_0001_0100UL, TableEntryStatus.ReservedBitsSet)]
    [InlineData(0x0000_0000_0001_0200UL, TableEntryStatus.Misaligned)]
    [InlineData(0x0000_0000_0000_8000UL, TableEntryStatus.Misaligned)]
    [InlineData(0x0100_0000_0001_0000UL, TableEntryStatus.OffsetTooLarge)]
    [InlineData(0x4000_0000_0000_0000UL, TableEntryStatus.OffsetTooLarge)]
    [InlineData(0x8000_0000_0001_0000UL, TableEntryStatus.Valid)]
    [InlineData(0x00ff_ffff_ffff_0000UL, TableEntryStatus.Valid)]
    public void Validate_EachInvalidPattern_ReportsIt(ulong raw, TableEntryStatus expected) =>
        Assert.Equal(expected, new L1Entry(raw).Validate(G64K));

    [Theory]
    [InlineData(-512L)]
    [InlineData(100L)]
    [InlineData(1L << 56)]
    public void Create_InvalidOffset_ThrowsArgumentOutOfRange(long offset) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => L1Entry.Create(offset, false));

    [Fact]
    public void Read_IndexPastTable_ThrowsArgumentOutOfRange()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => L1Entry.Read(new byte[16], 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => L1Entry.Read(new byte[16], -1));
    }

    [Theory]
    [InlineData(0x0000_0000_0001_0000UL, TableEntryStatus.Valid)]
    [InlineData(0x8000_0000_0001_0000UL, TableEntryStatus.OffsetTooLarge)]
    [InlineData(0x0100_0000_0001_0000UL, TableEntryStatus.Valid)]
    [InlineData(0x0000_0000_0001_0010UL, TableEntryStatus.ReservedBitsSet)]
    [InlineData(0x0000_0000_0001_0200UL, TableEntryStatus.Misaligned)]
    public void RefcountTableEntry_Validate_ReportsEachPattern(ulong raw, TableEntryStatus expected) =>
        Assert.Equal(expected, new RefcountTableEntry(raw).Validate(G64K));

    [Theory]
    [InlineData(0x0000_0000_0000_0000UL, TableEntryStatus.Valid, false)]
    [InlineData(0x0000_0000_0000_0001UL, TableEntryStatus.Valid, true)]
    [InlineData(0x0000_0000_0001_0001UL, TableEntryStatus.ReservedBitsSet, false)]
    [InlineData(0x0000_0000_0000_0002UL, TableEntryStatus.ReservedBitsSet, false)]
    [InlineData(0x0100_0000_0000_0000UL, TableEntryStatus.OffsetTooLarge, false)]
    [InlineData(0x0000_0000_0000_8000UL, TableEntryStatus.Misaligned, false)]
    public void BitmapTableEntry_Validate_ReportsEachPattern(ulong raw, TableEntryStatus expected, bool allOnes)
    {
        var e = new BitmapTableEntry(raw);
        Assert.Equal(expected, e.Validate(G64K));
        Assert.Equal(allOnes, e.IsAllOnes);
    }

    [Fact]
    public void RefcountAndBitmapEntries_WriteRead_RoundTrip()
    {
        var table = new byte[32];
        table.AsSpan().Fill(0xFF);
        RefcountTableEntry.Write(table, 1, RefcountTableEntry.Create(0x1234_0000));
        Assert.Equal(0x1234_0000L, RefcountTableEntry.Read(table, 1).BlockOffset);
        BitmapTableEntry.Write(table, 2, BitmapTableEntry.Allocated(0x50000));
        Assert.Equal(0x50000L, BitmapTableEntry.Read(table, 2).DataOffset);
        BitmapTableEntry.Write(table, 3, BitmapTableEntry.Unallocated(allOnes: true));
        Assert.Equal(1UL, BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(24)));
        Assert.Throws<ArgumentOutOfRangeException>(() => RefcountTableEntry.Create(0x1001));
        Assert.Throws<ArgumentOutOfRangeException>(() => BitmapTableEntry.Allocated(0));
    }
}

public class L2EntryTests
{
    [Fact]
    public void StandardEntries_WriteRead_RoundTripWithIndependentBitLayout()
    {
        var gen = from bits in Gen.Choose(9, 21)
                  from cluster in Gen.Choose(0, int.MaxValue)
                  from kind in Gen.Choose(0, 3)
                  from copied in Gen.Elements(true, false)
                  from index in Gen.Choose(0, 63)
                  select (bits, offset: ((long)cluster << bits) & 0x00ff_ffff_ffff_fe00L, kind, copied, index);
        Props.Check(gen, t =>
        {
            var g = ClusterGeometry.Create(t.bits);
            var entry = t.kind switch
            {
                0 => L2Entry.Normal(t.offset, t.copied),
                1 => L2Entry.Zero(t.offset, t.copied),
                2 => L2Entry.Unallocated,
                _ => L2Entry.Zero(),
            };
            var table = new byte[64 * 8];
            table.AsSpan().Fill(0xFF);
            L2Entry.Write(table, t.index, false, entry);
            ulong raw = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(t.index * 8));
            ulong expected = t.kind switch
            {
                0 => (ulong)t.offset | (t.copied ? 1UL << 63 : 0),
                1 => (ulong)t.offset | (t.copied ? 1UL << 63 : 0) | 1,
                2 => 0,
                _ => 1,
            };
            Assert.Equal(expected, raw);
            var back = L2Entry.Read(table, t.index, false);
            Assert.Equal(entry, back);
            Assert.False(back.IsExtended);
            Assert.Equal(L2EntryStatus.Valid, back.Validate(g));
            bool hasOffset = t.offset != 0 || t.copied;
            var expectedKind = t.kind switch
            {
                0 => hasOffset ? ClusterKind.Normal : ClusterKind.Unallocated,
                1 => hasOffset ? ClusterKind.ZeroAllocated : ClusterKind.Zero,
                2 => ClusterKind.Unallocated,
                _ => ClusterKind.Zero,
            };
            Assert.Equal(expectedKind, back.Kind);
            var expectedSub = expectedKind switch
            {
                ClusterKind.Normal => SubclusterKind.Allocated,
                ClusterKind.Unallocated => SubclusterKind.Unallocated,
                _ => SubclusterKind.Zero,
            };
            Assert.Equal(expectedSub, back.GetSubcluster(0));
            if (t.kind is 0 or 1) Assert.Equal(t.offset, back.HostOffset);
        });
    }

    [Fact]
    public void ExtendedEntries_WriteRead_RoundTripEntryAndBitmap()
    {
        var gen = from bits in Gen.Choose(14, 21)
                  from cluster in Gen.Choose(0, int.MaxValue)
                  from alloc in Gen.Choose(int.MinValue, int.MaxValue)
                  from zero in Gen.Choose(int.MinValue, int.MaxValue)
                  from copied in Gen.Elements(true, false)
                  from index in Gen.Choose(0, 31)
                  select (bits, offset: ((long)cluster << bits) & 0x00ff_ffff_ffff_fe00L, alloc: (uint)alloc, zero: (uint)zero & ~(uint)alloc, copied, index);
        Props.Check(gen, t =>
        {
            var g = ClusterGeometry.Create(t.bits, true);
            ulong bitmap = t.alloc | ((ulong)t.zero << 32);
            var entry = L2Entry.NormalExtended(t.offset, t.copied, bitmap);
            var table = new byte[32 * 16];
            table.AsSpan().Fill(0xFF);
            L2Entry.Write(table, t.index, true, entry);
            Assert.Equal((ulong)t.offset | (t.copied ? 1UL << 63 : 0), BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(t.index * 16)));
            Assert.Equal(bitmap, BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(t.index * 16 + 8)));
            var back = L2Entry.Read(table, t.index, true);
            Assert.Equal(entry, back);
            bool hasOffset = t.offset != 0 || t.copied;
            var status = back.Validate(g);
            if (!hasOffset && t.alloc != 0) Assert.Equal(L2EntryStatus.AllocatedWithoutOffset, status);
            else Assert.Equal(L2EntryStatus.Valid, status);
            for (int i = 0; i < 32; i++)
            {
                bool a = ((t.alloc >> i) & 1) != 0, z = ((t.zero >> i) & 1) != 0;
                var expected = z ? SubclusterKind.Zero : a ? SubclusterKind.Allocated : SubclusterKind.Unallocated;
                Assert.Equal(expected, back.GetSubcluster(i));
                // Run length against a naive count.
                int run = 0;
                for (int j = i; j < 32 && back.GetSubcluster(j) == expected; j++) run++;
                Assert.Equal(run, back.SubclusterRunLength(i));
            }
        });
    }

    public static TheoryData<ulong, ulong, bool, L2EntryStatus> InvalidEntries() => new()
    {
        // Standard (64 KiB clusters).
        { 0x0000_0000_0001_0002UL, 0, false, L2EntryStatus.ReservedBitsSet },
        { 0x0000_0000_0001_0100UL, 0, false, L2EntryStatus.ReservedBitsSet },
        { 0x0000_0000_0001_0200UL, 0, false, L2EntryStatus.Misaligned },
        { 0x0100_0000_0001_0000UL, 0, false, L2EntryStatus.OffsetTooLarge },
        { 0x2000_0000_0000_0000UL, 0, false, L2EntryStatus.OffsetTooLarge },
        { 0xc000_0000_0001_0000UL, 0, false, L2EntryStatus.CompressedWithCopied },
        // Extended (64 KiB clusters).
        { 0x0000_0000_0001_0001UL, 0, true, L2EntryStatus.ZeroFlagInExtended },
        { 0x0000_0000_0001_0000UL, 0x0000_0001_0000_0001UL, true, L2EntryStatus.AllocatedAndZero },
        { 0x0000_0000_0000_0000UL, 0x0000_0000_0000_0004UL, true, L2EntryStatus.AllocatedWithoutOffset },
        { 0x4000_0000_0001_0000UL, 0x0000_0000_0000_0001UL, true, L2EntryStatus.CompressedWithBitmap },
        { 0x0000_0000_0001_8000UL, 0x0000_0000_ffff_ffffUL, true, L2EntryStatus.Misaligned },
        { 0x0000_0000_0001_0000UL, 0x0000_0000_0000_0000UL, true, L2EntryStatus.Valid },
        { 0x8000_0000_0000_0000UL, 0x0000_0000_ffff_ffffUL, true, L2EntryStatus.Valid },
        { 0x0000_0000_0000_0000UL, 0xffff_ffff_0000_0000UL, true, L2EntryStatus.Valid },
    };

    [Theory]
    [MemberData(nameof(InvalidEntries))]
    public void Validate_EachInvalidCombination_ReportsIt(ulong raw, ulong bitmap, bool extended, L2EntryStatus expected)
    {
        var g = ClusterGeometry.Create(16, extended);
        var e = extended ? new L2Entry(raw, bitmap) : new L2Entry(raw);
        Assert.Equal(expected, e.Validate(g));
    }

    [Fact]
    public void Validate_FormatDifferentFromGeometry_ReportsFormatMismatch()
    {
        Assert.Equal(L2EntryStatus.FormatMismatch, new L2Entry(0).Validate(ClusterGeometry.Create(16, true)));
        Assert.Equal(L2EntryStatus.FormatMismatch, new L2Entry(0, 0).Validate(ClusterGeometry.Create(16, false)));
    }

    [Fact]
    public void Validate_CompressedOffsetAbove56BitsAtSmallClusters_Reported()
    {
        // cluster_bits 9: the offset field has 61 bits; bit 56 must be zero.
        var e = new L2Entry(L2Entry.CompressedFlag | (1UL << 56));
        Assert.Equal(L2EntryStatus.CompressedOffsetTooLarge, e.Validate(ClusterGeometry.Create(9)));
        Assert.Equal(ClusterKind.Compressed, e.Kind);
        Assert.Equal(SubclusterKind.Allocated, e.GetSubcluster(0));
    }

    [Fact]
    public void GetSubcluster_BothBitsSet_ReportsInvalid()
    {
        var e = new L2Entry(0x10000, 0x0000_0002_0000_0002UL);
        Assert.Equal(SubclusterKind.Invalid, e.GetSubcluster(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => e.GetSubcluster(32));
        Assert.Throws<ArgumentOutOfRangeException>(() => new L2Entry(0).GetSubcluster(1));
    }

    [Fact]
    public void Write_StandardTableWithBitmap_ThrowsArgumentException() =>
        Assert.Throws<ArgumentException>(() => L2Entry.Write(new byte[64], 0, false, new L2Entry(0, 5)));

    [Fact]
    public void SubclusterBitmap_Helpers_MatchNaiveBitManipulation()
    {
        var gen = from bitmap in Props.UInt64
                  from first in Gen.Choose(0, 32)
                  from count in Gen.Choose(0, 32)
                  select (bitmap, first, count: Math.Min(count, 32 - first));
        Props.Check(gen, t =>
        {
            ulong mask = 0;
            for (int i = t.first; i < t.first + t.count; i++) mask |= 1UL << i;
            Assert.Equal(mask, SubclusterBitmap.AllocMask(t.first, t.count));
            Assert.Equal(mask << 32, SubclusterBitmap.ZeroMask(t.first, t.count));
            ulong alloc = SubclusterBitmap.SetAllocated(t.bitmap, t.first, t.count);
            ulong zero = SubclusterBitmap.SetZero(t.bitmap, t.first, t.count);
            ulong none = SubclusterBitmap.SetUnallocated(t.bitmap, t.first, t.count);
            for (int i = 0; i < 32; i++)
            {
                bool inRange = i >= t.first && i < t.first + t.count;
                var before = SubclusterBitmap.KindOf(t.bitmap, i);
                Assert.Equal(inRange ? SubclusterKind.Allocated : before, SubclusterBitmap.KindOf(alloc, i));
                Assert.Equal(inRange ? SubclusterKind.Zero : before, SubclusterBitmap.KindOf(zero, i));
                Assert.Equal(inRange ? SubclusterKind.Unallocated : before, SubclusterBitmap.KindOf(none, i));
            }
        });
        Assert.Throws<ArgumentOutOfRangeException>(() => SubclusterBitmap.Range(30, 3));
    }
}

public class CompressedDescriptorTests
{
    [Fact]
    public void EncodeDecode_EveryClusterBits_CoversTheDataAndRoundTrips()
    {
        var gen = from bits in Gen.Choose(9, 21)
                  from offset in Props.NonNegative(48)
                  from lenFrac in Gen.Choose(1, 1 << 21)
                  select (bits, offset, length: 1 + (lenFrac - 1) % (1 << bits));
        Props.Check(gen, t =>
        {
            Assert.True(CompressedDescriptor.TryEncode(t.offset, t.length, t.bits, out var d));
            // Field split from the spec: x = 62 - (cluster_bits - 8).
            int x = 62 - (t.bits - 8);
            ulong sectors = (ulong)(((t.offset + t.length - 1) / 512) - (t.offset / 512));
            Assert.Equal((ulong)t.offset | (sectors << x), d.Raw);
            var back = CompressedDescriptor.Decode(d.Raw | L2Entry.CompressedFlag | L2Entry.CopiedFlag, t.bits);
            Assert.Equal(t.offset, back.HostOffset);
            Assert.Equal((int)sectors, back.AdditionalSectors);
            // The host range starts at the data and ends at the end of the sector holding its last byte.
            Assert.Equal(t.offset, back.HostStart);
            Assert.True(back.HostEnd >= t.offset + t.length);
            Assert.Equal(0, back.HostEnd % 512);
            Assert.True(back.HostEnd - (t.offset + t.length) < 512);
            Assert.False(back.HasOffsetBeyondLimit);
            var entry = L2Entry.Compressed(back);
            Assert.Equal(ClusterKind.Compressed, entry.Kind);
            Assert.Equal(back, entry.GetCompressedDescriptor(t.bits));
            Assert.Equal(L2EntryStatus.Valid, entry.Validate(ClusterGeometry.Create(t.bits)));
        }, cases: 500);
    }

    [Fact]
    public void TryEncode_SectorCountTooLarge_ReturnsFalse()
    {
        for (int bits = 9; bits <= 21; bits++)
        {
            int maxSectors = (1 << (bits - 8)) - 1;
            // Starting at a sector boundary, (maxSectors + 1) whole sectors fit, one more byte does not.
            Assert.True(CompressedDescriptor.TryEncode(1 << 20, (maxSectors + 1) * 512, bits, out _));
            Assert.False(CompressedDescriptor.TryEncode(1 << 20, (maxSectors + 1) * 512 + 1, bits, out _));
            // Offsets must fit both the field and 56 bits.
            int x = 62 - (bits - 8);
            long limit = Math.Min((1L << x) - 1, (1L << 56) - 1);
            Assert.True(CompressedDescriptor.TryEncode(limit - 1, 1, bits, out _));
            Assert.False(CompressedDescriptor.TryEncode(limit + 1, 1, bits, out _));
        }
        Assert.False(CompressedDescriptor.TryEncode(-1, 10, 16, out _));
        Assert.False(CompressedDescriptor.TryEncode(0, 0, 16, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => CompressedDescriptor.Encode(0, 0, 16));
        Assert.Throws<ArgumentOutOfRangeException>(() => CompressedDescriptor.Decode(0, 8));
    }
}

public class EntryDecodingPropertyTests
{
    [Fact]
    public void DecodeAnyRawEntry_EveryGeometry_NeverThrowsAndStaysConsistent()
    {
        var gen = from raw in Props.UInt64
                  from bitmap in Props.UInt64
                  from bits in Gen.Choose(9, 21)
                  from ext in Gen.Elements(false, true)
                  select (raw, bitmap, bits, ext: ext && bits >= 14);
        Props.Check(gen, t =>
        {
            var g = ClusterGeometry.Create(t.bits, t.ext);
            var e = t.ext ? new L2Entry(t.raw, t.bitmap) : new L2Entry(t.raw);
            var status = e.Validate(g);
            var kind = e.Kind;
            int subs = g.SubclustersPerCluster;
            int covered = 0;
            for (int i = 0; i < subs; i += e.SubclusterRunLength(i))
            {
                var k = e.GetSubcluster(i);
                if (status == L2EntryStatus.Valid) Assert.NotEqual(SubclusterKind.Invalid, k);
                covered++;
            }
            Assert.InRange(covered, 1, subs);
            if (kind == ClusterKind.Compressed)
            {
                var d = e.GetCompressedDescriptor(t.bits);
                Assert.InRange(d.HostLength, 1, (1 << (t.bits - 8)) * 512);
                Assert.True(d.HostEnd > d.HostStart);
            }
            else if (status == L2EntryStatus.Valid)
            {
                Assert.True(g.IsClusterAligned(e.HostOffset));
                Assert.True(e.HostOffset <= Qcow2Limits.MaxHostOffset);
            }
            var l1 = new L1Entry(t.raw);
            if (l1.Validate(g) == TableEntryStatus.Valid) Assert.True(g.IsClusterAligned(l1.L2Offset) && l1.L2Offset <= Qcow2Limits.MaxHostOffset);
            var rt = new RefcountTableEntry(t.raw);
            if (rt.Validate(g) == TableEntryStatus.Valid) Assert.True(rt.BlockOffset >= 0 && g.IsClusterAligned(rt.BlockOffset));
        }, cases: 2000);
    }
}
