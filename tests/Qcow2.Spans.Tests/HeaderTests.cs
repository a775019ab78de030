using System.Buffers.Binary;
using System.Text;
using FsCheck.Fluent;
using Qcow2.Spans.Layout;

namespace Qcow2.Spans.Tests;

public class HeaderTests
{
    /// <summary>A valid version 3 header: 64 KiB clusters, 1 GiB, laid out like qemu-img's.</summary>
    internal static Qcow2Header Valid() => new()
    {
        Version = 3,
        ClusterBits = 16,
        Size = 1UL << 30,
        L1Size = 2,
        L1TableOffset = 0x30000,
        RefcountTableOffset = 0x10000,
        RefcountTableClusters = 1,
        RefcountOrder = 4,
        HeaderLength = 112,
    };

    internal const long ValidFileLength = 0x40000;

    [Fact]
    public void WriteToParse_RandomHeaders_RoundTripEveryField()
    {
        var gen = from a in Props.UInt64 from b in Props.UInt64 from c in Props.UInt64 from d in Props.UInt64
                  from e in Props.UInt64 from f in Props.UInt64 from g in Props.UInt64 from h in Props.UInt64
                  from len in Gen.Elements(104u, 112u, 120u, 256u)
                  select new Qcow2Header
                  {
                      Magic = (uint)a, Version = 3, BackingFileOffset = b, BackingFileSize = (uint)(a >> 32),
                      ClusterBits = (uint)c, Size = d, CryptMethod = (uint)(c >> 32), L1Size = (uint)e,
                      L1TableOffset = f, RefcountTableOffset = g, RefcountTableClusters = (uint)(e >> 32),
                      SnapshotCount = (uint)h, SnapshotsOffset = h ^ a,
                      IncompatibleFeatures = (IncompatibleFeatures)(b ^ c), CompatibleFeatures = (CompatibleFeatures)(d ^ e),
                      AutoclearFeatures = (AutoclearFeatures)(f ^ g), RefcountOrder = (uint)(h >> 32), HeaderLength = len,
                      CompressionType = len > 104 ? (CompressionType)(byte)a : CompressionType.Zlib,
                      PaddingRaw = len > 104 ? (b & 0x00ff_ffff_ffff_ffffUL) : 0,
                  };
        Props.Check(gen, h =>
        {
            if (h.HeaderLength > 112) h.SetAdditionalFields(Props.MakeBytes((int)h.Size, (int)h.HeaderLength - 112));
            var buffer = new byte[300];
            buffer.AsSpan().Fill(0xEE);
            int n = h.WriteTo(buffer);
            Assert.Equal((int)h.HeaderLength, n);
            Assert.Equal(0xEE, buffer[n]);
            // Spot-check positions with an independent big-endian read at the spec's offsets.
            Assert.Equal(h.Magic, BinaryPrimitives.ReadUInt32BigEndian(buffer));
            Assert.Equal(h.Size, BinaryPrimitives.ReadUInt64BigEndian(buffer.AsSpan(24)));
            Assert.Equal((ulong)h.IncompatibleFeatures, BinaryPrimitives.ReadUInt64BigEndian(buffer.AsSpan(72)));
            Assert.Equal(h.HeaderLength, BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(100)));
            var p = Qcow2Header.Parse(buffer);
            Assert.Equal(h.Magic, p.Magic);
            Assert.Equal(h.BackingFileOffset, p.BackingFileOffset);
            Assert.Equal(h.BackingFileSize, p.BackingFileSize);
            Assert.Equal(h.ClusterBits, p.ClusterBits);
            Assert.Equal(h.Size, p.Size);
            Assert.Equal(h.CryptMethod, p.CryptMethod);
            Assert.Equal(h.L1Size, p.L1Size);
            Assert.Equal(h.L1TableOffset, p.L1TableOffset);
            Assert.Equal(h.RefcountTableOffset, p.RefcountTableOffset);
            Assert.Equal(h.RefcountTableClusters, p.RefcountTableClusters);
            Assert.Equal(h.SnapshotCount, p.SnapshotCount);
            Assert.Equal(h.SnapshotsOffset, p.SnapshotsOffset);
            Assert.Equal(h.IncompatibleFeatures, p.IncompatibleFeatures);
            Assert.Equal(h.CompatibleFeatures, p.CompatibleFeatures);
            Assert.Equal(h.AutoclearFeatures, p.AutoclearFeatures);
            Assert.Equal(h.RefcountOrder, p.RefcountOrder);
            Assert.Equal(h.HeaderLength, p.HeaderLength);
            Assert.Equal(h.CompressionType, p.CompressionType);
            Assert.Equal(h.PaddingRaw, p.PaddingRaw);
            Assert.True(h.AdditionalFields.SequenceEqual(p.AdditionalFields));
        }, cases: 200);
    }

    [Fact]
    public void Parse_Version2_Reads72BytesWithImpliedValues()
    {
        var b = new byte[512];
        b.AsSpan().Fill(0x77); // bytes past 72 must be ignored
        var v = HeaderV2View.Create(b);
        v.Magic = Qcow2Constants.Magic;
        v.Version = 2;
        v.ClusterBits = 12;
        v.Size = 123456;
        var h = Qcow2Header.Parse(b);
        Assert.Equal(2u, h.Version);
        Assert.Equal(72u, h.HeaderLength);
        Assert.Equal(4u, h.RefcountOrder);
        Assert.Equal(IncompatibleFeatures.None, h.IncompatibleFeatures);
        Assert.Equal(CompressionType.Zlib, h.CompressionType);
        Assert.Equal(72, h.ExtensionsStart);
        Assert.Equal(123456UL, h.Size);
        var outBuf = new byte[72];
        Assert.Equal(72, h.WriteTo(outBuf));
        Assert.Equal(b.AsSpan(0, 72).ToArray(), outBuf);
    }

    [Fact]
    public void Parse_HeaderLength104_IgnoresCompressionTypeByte()
    {
        var b = new byte[512];
        var v = HeaderView.Create(b);
        v.Magic = Qcow2Constants.Magic;
        v.Version = 3;
        v.HeaderLength = 104;
        v.CompressionType = 1;
        b[110] = 9;
        var h = Qcow2Header.Parse(b);
        Assert.Equal(CompressionType.Zlib, h.CompressionType);
        Assert.Equal(0UL, h.PaddingRaw);
        Assert.False(h.HasCompressionTypeField);
        // The data may end at header_length.
        Assert.Equal(104u, Qcow2Header.Parse(b.AsSpan(0, 104)).HeaderLength);
    }

    [Theory]
    [InlineData(0, 2u, 0u)]
    [InlineData(71, 2u, 0u)]
    [InlineData(100, 3u, 104u)]
    [InlineData(108, 3u, 112u)]
    [InlineData(200, 3u, 256u)]
    public void Parse_DataShorterThanHeader_ThrowsCorrupt(int length, uint version, uint headerLength)
    {
        var b = new byte[Math.Max(length, 112)];
        if (b.Length >= 104)
        {
            var v = HeaderView.Create(b);
            v.Magic = Qcow2Constants.Magic;
            v.Version = version;
            v.HeaderLength = headerLength;
        }
        var ex = Assert.Throws<Qcow2CorruptImageException>(() => Qcow2Header.Parse(b.AsSpan(0, length)));
        Assert.Equal("header", ex.Structure);
        Assert.False(Qcow2Header.TryParse(b.AsSpan(0, length), out var h));
        Assert.Null(h);
    }

    [Fact]
    public void WriteTo_InconsistentHeader_ThrowsArgumentException()
    {
        var h = Valid();
        h.HeaderLength = 100;
        Assert.Throws<ArgumentException>(() => h.WriteTo(new byte[512]));
        h = Valid();
        h.HeaderLength = 104;
        h.CompressionType = CompressionType.Zstd;
        Assert.Throws<ArgumentException>(() => h.WriteTo(new byte[512]));
        h = Valid();
        h.Version = 2;
        h.IncompatibleFeatures = IncompatibleFeatures.Dirty;
        Assert.Throws<ArgumentException>(() => h.WriteTo(new byte[512]));
        Assert.Throws<ArgumentException>(() => Valid().WriteTo(new byte[100]));
    }

    [Fact]
    public void GetBackingFileName_InsideAndOutsideCluster_SlicesOrThrows()
    {
        var cluster = new byte[512];
        Encoding.ASCII.GetBytes("base.qcow2").CopyTo(cluster, 400);
        var h = Valid();
        h.BackingFileOffset = 400;
        h.BackingFileSize = 10;
        Assert.Equal("base.qcow2", Encoding.ASCII.GetString(h.GetBackingFileName(cluster)));
        h.BackingFileSize = 200;
        Assert.Throws<Qcow2CorruptImageException>(() => h.GetBackingFileName(cluster));
        h.BackingFileOffset = ulong.MaxValue;
        h.BackingFileSize = 10;
        Assert.Throws<Qcow2CorruptImageException>(() => h.GetBackingFileName(cluster));
    }
}

public class ExceptionTests
{
    [Fact]
    public void CorruptException_CarriesStructureOffsetAndHexValue()
    {
        var e = new Qcow2CorruptImageException("L2 entry", 0x30008, 0xdead_beef, "bad");
        Assert.Equal("L2 entry", e.Structure);
        Assert.Equal(0x30008, e.Offset);
        Assert.Equal(0xdead_beefUL, e.RawValue);
        Assert.Equal("bad", e.Reason);
        Assert.Contains("0x30008", e.Message);
        Assert.Contains("0xdeadbeef", e.Message);
        Assert.DoesNotContain("offset", new Qcow2CorruptImageException("x", -1, 1, "y").Message);
    }

    [Fact]
    public void HeaderViolation_ToException_MatchesItsKind()
    {
        var corrupt = new HeaderViolation(HeaderRule.Magic, "magic", 0, 5, false, "bad magic").ToException();
        var c = Assert.IsType<Qcow2CorruptImageException>(corrupt);
        Assert.Equal("header.magic", c.Structure);
        var unsupported = new HeaderViolation(HeaderRule.Version, "version", 4, 9, true, "v9").ToException();
        Assert.Equal("version", Assert.IsType<Qcow2UnsupportedImageException>(unsupported).Feature);
    }
}
