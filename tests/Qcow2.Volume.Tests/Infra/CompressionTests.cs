using System.IO.Compression;
using Qcow2.Spans;
using Qcow2.Volume.Compression;

namespace Qcow2.Volume.Tests.Infra;

public sealed class CompressionTests
{
    public static TheoryData<string> Codecs => new() { "zlib", "zstd" };

    private static ICompressionCodec Codec(string name) =>
        CompressionCodecs.Get(name == "zlib" ? CompressionType.Zlib : CompressionType.Zstd);

    /// <summary>Compressible but not trivial: text-like runs with random words.</summary>
    internal static byte[] Compressible(int length, int seed)
    {
        var rng = new Random(seed);
        var data = new byte[length];
        for (int i = 0; i < length; i++)
            data[i] = (byte)('a' + rng.Next(0, 4) + ((i / 64) % 3));
        return data;
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Compress_ThenDecompress_RoundTrips(string name)
    {
        var codec = Codec(name);
        foreach (int size in new[] { 512, 4096, 65536, 2 << 20 })
        {
            var data = Compressible(size, size);
            var packed = new byte[size];
            int n = codec.Compress(data, packed);
            Assert.InRange(n, 1, size - 1);
            var back = new byte[size];
            codec.Decompress(packed.AsSpan(0, n), back);
            Assert.Equal(data, back);
        }
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Compress_RandomData_ReturnsMinusOne(string name)
    {
        var data = StorageContractTests.Pattern(65536, 1);
        Assert.Equal(-1, Codec(name).Compress(data, new byte[65536]));
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Compress_DestinationTooSmall_ReturnsMinusOne(string name)
    {
        var data = Compressible(65536, 2);
        Assert.Equal(-1, Codec(name).Compress(data, new byte[16]));
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Decompress_TrailingGarbageAfterStream_IsIgnored(string name)
    {
        var codec = Codec(name);
        var data = Compressible(65536, 3);
        var packed = new byte[65536];
        int n = codec.Compress(data, packed);
        // Fill to the end of the last sector with junk, as a qcow2 file may hold there.
        int padded = (n + 511) / 512 * 512 + 512;
        var withTail = new byte[padded];
        packed.AsSpan(0, n).CopyTo(withTail);
        withTail.AsSpan(n).Fill(0xA5);
        var back = new byte[65536];
        codec.Decompress(withTail, back);
        Assert.Equal(data, back);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Decompress_TruncatedInput_ThrowsCorrupt(string name)
    {
        var codec = Codec(name);
        var data = Compressible(65536, 4);
        var packed = new byte[65536];
        int n = codec.Compress(data, packed);
        Assert.Throws<Qcow2CorruptImageException>(() => codec.Decompress(packed.AsSpan(0, n / 2), new byte[65536]));
        Assert.Throws<Qcow2CorruptImageException>(() => codec.Decompress(ReadOnlySpan<byte>.Empty, new byte[65536]));
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Decompress_StreamShorterThanCluster_ThrowsCorrupt(string name)
    {
        var codec = Codec(name);
        var data = Compressible(4096, 5);
        var packed = new byte[4096];
        int n = codec.Compress(data, packed);
        Assert.Throws<Qcow2CorruptImageException>(() => codec.Decompress(packed.AsSpan(0, n), new byte[8192]));
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void Decompress_Garbage_ThrowsCorrupt(string name)
    {
        var codec = Codec(name);
        var rng = new Random(6);
        for (int i = 0; i < 200; i++)
        {
            var junk = new byte[rng.Next(1, 2000)];
            rng.NextBytes(junk);
            // Random bytes may decode to something; what matters is that nothing but the typed error escapes.
            try
            {
                codec.Decompress(junk, new byte[65536]);
            }
            catch (Qcow2CorruptImageException)
            {
            }
        }
        Assert.Throws<Qcow2CorruptImageException>(() => codec.Decompress(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, new byte[4096]));
    }

    [Fact]
    public void ZstdDecompress_FrameLargerThanCluster_ThrowsCorrupt()
    {
        var codec = ZstdCodec.Default;
        var data = Compressible(8192, 7);
        var packed = new byte[8192];
        int n = codec.Compress(data, packed);
        Assert.Throws<Qcow2CorruptImageException>(() => codec.Decompress(packed.AsSpan(0, n), new byte[4096]));
    }

    [Fact]
    public void ZlibCompress_Output_DecodesWithAnIndependentRawInflater()
    {
        var data = Compressible(65536, 8);
        var packed = new byte[65536];
        int n = ZlibCodec.Default.Compress(data, packed);
        using var inflater = new DeflateStream(new MemoryStream(packed, 0, n), CompressionMode.Decompress);
        var back = new MemoryStream();
        inflater.CopyTo(back);
        Assert.Equal(data, back.ToArray());
    }

    [Fact]
    public void ZlibCompress_RepeatsFartherThanFourKiB_AreNotReferenced()
    {
        // A random 16 KiB block repeated: a 32 KiB-window deflater refers 16 KiB back, which a
        // streaming inflater with QEMU's 4 KiB window rejects; ours cannot see that far, so the
        // data does not shrink at all.
        var block = StorageContractTests.Pattern(16384, 9);
        var data = new byte[65536];
        for (int i = 0; i < 4; i++) block.CopyTo(data, i * 16384);

        var wide = new MemoryStream();
        using (var deflater = new DeflateStream(wide, CompressionLevel.Optimal, leaveOpen: true))
            deflater.Write(data);
        Assert.True(wide.Length < 40000, "the 32 KiB-window deflater should find the repeats");
        Assert.False(StreamingInflate4K(wide.ToArray(), 65536, out _));

        Assert.Equal(-1, ZlibCodec.Default.Compress(data, new byte[65536]));
    }

    [Fact]
    public void ZlibCompress_Output_DecodesWithAStreamingFourKiBWindowInflater()
    {
        // Repeats 3 KiB apart (inside the window) and text-like data throughout.
        var data = Compressible(65536, 12);
        var block = StorageContractTests.Pattern(3072, 13);
        for (int i = 0; i < 8; i++) block.CopyTo(data, 32768 + i * 3072);
        var packed = new byte[65536];
        int n = ZlibCodec.Default.Compress(data, packed);
        Assert.InRange(n, 1, 65535);
        Assert.True(StreamingInflate4K(packed.AsSpan(0, n).ToArray(), 65536, out var back));
        Assert.Equal(data, back);
    }

    /// <summary>
    /// Inflates with windowBits −12 in 512-byte output steps into a small ring, so only the 4 KiB
    /// window holds history: any reference farther back fails, as in a streaming 4 KiB inflater.
    /// </summary>
    private static unsafe bool StreamingInflate4K(byte[] input, int expected, out byte[] output)
    {
        output = new byte[expected];
        var z = (ZStream*)System.Runtime.InteropServices.NativeMemory.AllocZeroed((nuint)sizeof(ZStream));
        try
        {
            fixed (byte* v = ZlibNative.Version)
                Assert.Equal(0, ZlibNative.inflateInit2_(z, -12, v, sizeof(ZStream)));
            var step = new byte[512];
            int produced = 0;
            fixed (byte* src = input)
            fixed (byte* dst = step)
            {
                z->next_in = src;
                z->avail_in = (uint)input.Length;
                while (produced < expected)
                {
                    z->next_out = dst;
                    z->avail_out = (uint)step.Length;
                    int rc = ZlibNative.inflate(z, 0);
                    int got = step.Length - (int)z->avail_out;
                    step.AsSpan(0, Math.Min(got, expected - produced)).CopyTo(output.AsSpan(produced));
                    produced += got;
                    if (rc == 1) break;
                    if (rc != 0) return false;
                }
            }
            return produced == expected;
        }
        finally
        {
            ZlibNative.inflateEnd(z);
            System.Runtime.InteropServices.NativeMemory.Free(z);
        }
    }

    [Fact]
    public void ZlibCompress_RepeatsWithinFourKiB_DecodesWithTheFourKiBWindow()
    {
        var block = StorageContractTests.Pattern(2048, 10);
        var data = new byte[65536];
        for (int i = 0; i < 32; i++) block.CopyTo(data, i * 2048);
        var packed = new byte[65536];
        int n = ZlibCodec.Default.Compress(data, packed);
        Assert.InRange(n, 1, 8192);
        var back = new byte[65536];
        ZlibCodec.Default.Decompress(packed.AsSpan(0, n), back);
        Assert.Equal(data, back);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void CompressAndDecompress_AfterWarmUp_AllocateNothing(string name)
    {
        var codec = Codec(name);
        var data = Compressible(65536, 11);
        var packed = new byte[65536];
        var back = new byte[65536];
        int n = codec.Compress(data, packed);
        codec.Decompress(packed.AsSpan(0, n), back);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++)
        {
            n = codec.Compress(data, packed);
            codec.Decompress(packed.AsSpan(0, n), back);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Theory]
    [MemberData(nameof(Codecs))]
    public void CompressAndDecompress_OnManyThreads_AllRoundTrip(string name)
    {
        var codec = Codec(name);
        Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var data = Compressible(65536, 100 + i);
            var packed = new byte[65536];
            int n = codec.Compress(data, packed);
            var back = new byte[65536];
            codec.Decompress(packed.AsSpan(0, n), back);
            Assert.Equal(data, back);
        });
    }

    [Fact]
    public void Get_UnknownType_ThrowsUnsupported()
    {
        Assert.Throws<Qcow2UnsupportedImageException>(() => CompressionCodecs.Get((CompressionType)7));
        Assert.Equal(CompressionType.Zlib, CompressionCodecs.Get(CompressionType.Zlib).Type);
        Assert.Equal(CompressionType.Zstd, CompressionCodecs.Get(CompressionType.Zstd).Type);
    }
}
