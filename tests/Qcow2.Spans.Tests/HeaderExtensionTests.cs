using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using FsCheck.Fluent;

namespace Qcow2.Spans.Tests;

public class HeaderExtensionTests
{
    private static byte[] Area(int size, params (uint Type, byte[] Data)[] extensions)
    {
        var b = new byte[size];
        int pos = 0;
        foreach (var (type, data) in extensions) pos += HeaderExtensionEnumerator.WriteExtension(b.AsSpan(pos), type, data);
        if (pos + 8 <= size) HeaderExtensionEnumerator.WriteEnd(b.AsSpan(pos));
        return b;
    }

    [Fact]
    public void Walk_WellFormedArea_YieldsEveryExtensionThenEnds()
    {
        var area = Area(256,
            (Qcow2Constants.ExtensionBackingFormat, Encoding.ASCII.GetBytes("raw")),
            (0x12345678, new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 }),
            (Qcow2Constants.ExtensionFeatureNameTable, new byte[48]));
        var found = new List<(uint, int, int)>();
        var e = new HeaderExtensionEnumerator(area, 0);
        foreach (var ext in e) found.Add((ext.Type, ext.Offset, ext.Data.Length));
        Assert.Equal(new[] { (Qcow2Constants.ExtensionBackingFormat, 0, 3), (0x12345678u, 16, 9), (Qcow2Constants.ExtensionFeatureNameTable, 40, 48) }, found);
        Assert.Equal(HeaderExtensionError.None, e.Error);
        Assert.True(e.FoundEndMarker);
        Assert.Equal(96, e.EndOffset);
    }

    [Fact]
    public void Walk_ExtensionEndingExactlyAtAreaEnd_EndsWithoutError()
    {
        var area = Area(24, (0x1, new byte[16]));
        var e = new HeaderExtensionEnumerator(area, 0);
        int n = 0;
        foreach (var _ in e) n++;
        Assert.Equal(1, n);
        Assert.Equal(HeaderExtensionError.None, e.Error);
        Assert.False(e.FoundEndMarker);
    }

    [Fact]
    public void Walk_PaddingCutByAreaEnd_EndsWithoutError()
    {
        var area = new byte[8 + 5];
        BinaryPrimitives.WriteUInt32BigEndian(area, 0x1);
        BinaryPrimitives.WriteUInt32BigEndian(area.AsSpan(4), 5);
        var e = new HeaderExtensionEnumerator(area, 0);
        Assert.True(e.MoveNext());
        Assert.Equal(5, e.Current.Data.Length);
        Assert.False(e.MoveNext());
        Assert.Equal(HeaderExtensionError.None, e.Error);
    }

    [Fact]
    public void Walk_LengthPastEnd_ReportsTooLongAtThatExtension()
    {
        var area = Area(64, (0x1, new byte[8]));
        BinaryPrimitives.WriteUInt32BigEndian(area.AsSpan(16), 0x2);
        BinaryPrimitives.WriteUInt32BigEndian(area.AsSpan(20), 41); // 24 + 41 > 64
        var e = new HeaderExtensionEnumerator(area, 0);
        Assert.True(e.MoveNext());
        Assert.False(e.MoveNext());
        Assert.Equal(HeaderExtensionError.TooLong, e.Error);
        Assert.Equal(16, e.ErrorOffset);
        BinaryPrimitives.WriteUInt32BigEndian(area.AsSpan(20), uint.MaxValue);
        Assert.Equal(HeaderExtensionError.TooLong, new HeaderExtensionEnumerator(area, 0).Error);
    }

    [Fact]
    public void Walk_FewerThanEightBytesLeft_ReportsTruncated()
    {
        var area = new byte[16 + 4];
        BinaryPrimitives.WriteUInt32BigEndian(area, 0x1);
        BinaryPrimitives.WriteUInt32BigEndian(area.AsSpan(4), 8);
        area[16] = 0xAB;
        var e = new HeaderExtensionEnumerator(area, 0);
        Assert.Equal(HeaderExtensionError.Truncated, e.Error);
        Assert.Equal(16, e.ErrorOffset);
    }

    [Fact]
    public void Walk_KnownExtensionTwice_ReportsDuplicate()
    {
        var area = Area(128, (Qcow2Constants.ExtensionBitmaps, new byte[24]), (Qcow2Constants.ExtensionBitmaps, new byte[24]));
        var e = new HeaderExtensionEnumerator(area, 0);
        Assert.Equal(HeaderExtensionError.Duplicate, e.Error);
        Assert.Equal(32, e.ErrorOffset);
        // Unknown types may repeat.
        Assert.Equal(HeaderExtensionError.None, new HeaderExtensionEnumerator(Area(64, (0x9, new byte[1]), (0x9, new byte[1])), 0).Error);
    }

    [Theory]
    [InlineData(-8)]
    [InlineData(3)]
    [InlineData(72)]
    public void Walk_InvalidStart_ReportsInvalidStart(int start)
    {
        var e = new HeaderExtensionEnumerator(new byte[64], start);
        Assert.False(e.MoveNext());
        Assert.Equal(HeaderExtensionError.InvalidStart, e.Error);
    }

    [Fact]
    public void Walk_RandomBytes_NeverReadsPastTheBufferOrThrows()
    {
        // Random areas, often with small plausible lengths so that walks go several steps deep.
        var gen = from bytes in Props.Bytes(0, 300)
                  from plausible in Gen.Elements(true, false)
                  from start in Gen.Choose(0, 40)
                  select (bytes, plausible, start: start * 8);
        Props.Check(gen, t =>
        {
            var b = t.bytes;
            if (t.plausible)
            {
                for (int i = 4; i + 4 <= b.Length; i += 8) b[i] = b[i + 1] = b[i + 2] = 0;
            }
            var whole = new byte[b.Length + 64];
            b.CopyTo(whole, 32);
            ReadOnlySpan<byte> buffer = whole.AsSpan(32, b.Length);
            var e = new HeaderExtensionEnumerator(buffer, t.start);
            int steps = 0;
            while (e.MoveNext())
            {
                var ext = e.Current;
                Assert.True(buffer.Overlaps(ext.Data) || ext.Data.IsEmpty);
                // The data lies within the buffer.
                long dataStart = Unsafe.ByteOffset(ref MemoryMarshal.GetReference(buffer), ref MemoryMarshal.GetReference(ext.Data));
                Assert.InRange(dataStart, 0, buffer.Length);
                Assert.InRange(dataStart + ext.Data.Length, 0, buffer.Length);
                Assert.Equal(ext.Offset + 8, dataStart);
                Assert.True(++steps <= buffer.Length / 8);
            }
            _ = e.Error;
            _ = e.ErrorOffset;
        }, cases: 500);
    }

    [Fact]
    public void FeatureNameTable_Entries_DecodeTypesBitsAndNames()
    {
        var data = new byte[48 * 3 + 5];
        FeatureNameTable.WriteEntry(data, FeatureType.Incompatible, 0, "dirty bit"u8);
        FeatureNameTable.WriteEntry(data.AsSpan(48), FeatureType.Autoclear, 1, "raw external data"u8);
        var full = new byte[46];
        full.AsSpan().Fill((byte)'x');
        FeatureNameTable.WriteEntry(data.AsSpan(96), FeatureType.Incompatible, 63, full);
        var t = new FeatureNameTable(data);
        Assert.Equal(3, t.Count);
        Assert.True(t.HasTrailingBytes);
        Assert.True(t.TryGetName(FeatureType.Autoclear, 1, out var name));
        Assert.Equal("raw external data", Encoding.ASCII.GetString(name));
        Assert.True(t.TryGetName(FeatureType.Incompatible, 63, out name));
        Assert.Equal(46, name.Length);
        Assert.False(t.TryGetName(FeatureType.Compatible, 0, out _));
        int n = 0;
        foreach (var entry in t) { n++; Assert.True(entry.Bit <= 63); }
        Assert.Equal(3, n);
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = new FeatureNameTable(data)[3].Bit; });
    }
}
