using System.Runtime.InteropServices;
using Qcow2.Spans;

namespace Qcow2.Volume.Compression;

/// <summary>
/// qcow2 compression type 0: a raw deflate stream (no zlib header or checksum) with a 4 KiB
/// window, through the system's libz.so.1.
/// </summary>
/// <remarks>
/// QEMU deflates and inflates compressed clusters with windowBits −12, a 4 KiB window. We deflate
/// with the same window, so no back reference reaches further than 4 KiB and any raw inflater —
/// QEMU's, or a streaming one that keeps only a 4 KiB window — accepts our clusters. We inflate the
/// way QEMU does (windowBits −12, one call into the whole cluster), so we accept exactly what it
/// accepts. Each thread keeps its own native z_stream pair, reset between calls, so no call allocates.
/// </remarks>
public sealed unsafe class ZlibCodec : ICompressionCodec
{
    /// <summary>The window QEMU uses: 2^12 bytes, negative for a raw stream.</summary>
    private const int RawWindowBits = -12;
    private const int DefaultMemLevel = 9;

    [ThreadStatic]
    private static ThreadStreams? t_streams;

    /// <summary>The codec at zlib's default level (what QEMU uses).</summary>
    public static ZlibCodec Default { get; } = new(ZlibNative.Z_DEFAULT_COMPRESSION);

    /// <summary>Creates a codec with a compression level.</summary>
    /// <param name="level">−1 (zlib's default, 6) or 0–9.</param>
    /// <exception cref="ArgumentOutOfRangeException">The level is out of range.</exception>
    public ZlibCodec(int level)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(level, -1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(level, 9);
        Level = level;
    }

    /// <summary>The deflate level.</summary>
    public int Level { get; }

    /// <inheritdoc/>
    public CompressionType Type => CompressionType.Zlib;

    /// <inheritdoc/>
    public int Compress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        // Only a result strictly smaller than the input is worth storing compressed.
        int limit = Math.Min(destination.Length, source.Length - 1);
        if (limit <= 0) return -1;
        var streams = t_streams ??= new ThreadStreams();
        ZStream* z = streams.GetDeflate(Level);
        fixed (byte* src = source)
        fixed (byte* dst = destination)
        {
            z->next_in = src;
            z->avail_in = (uint)source.Length;
            z->next_out = dst;
            z->avail_out = (uint)limit;
            int rc = ZlibNative.deflate(z, ZlibNative.Z_FINISH);
            int produced = limit - (int)z->avail_out;
            z->next_in = null;
            z->next_out = null;
            // Z_OK / Z_BUF_ERROR with Z_FINISH: the output space ran out before the end.
            return rc == ZlibNative.Z_STREAM_END ? produced : -1;
        }
    }

    /// <inheritdoc/>
    public void Decompress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if (destination.IsEmpty) return;
        var streams = t_streams ??= new ThreadStreams();
        ZStream* z = streams.GetInflate();
        int rc;
        uint left;
        fixed (byte* src = source)
        fixed (byte* dst = destination)
        {
            z->next_in = src;
            z->avail_in = (uint)source.Length;
            z->next_out = dst;
            z->avail_out = (uint)destination.Length;
            rc = ZlibNative.inflate(z, ZlibNative.Z_FINISH);
            left = z->avail_out;
            z->next_in = null;
            z->next_out = null;
        }
        // A full destination is success whatever follows in the input (sector padding, garbage):
        // inflate stops when the output is full, with Z_STREAM_END or Z_BUF_ERROR (Z_OK is
        // accepted too, it only means "more could follow").
        if (left == 0 && rc is ZlibNative.Z_OK or ZlibNative.Z_STREAM_END or ZlibNative.Z_BUF_ERROR)
            return;
        string why = rc switch
        {
            ZlibNative.Z_STREAM_END => $"the deflate stream ends after {destination.Length - left} of {destination.Length} bytes",
            ZlibNative.Z_BUF_ERROR => $"the compressed data is truncated after producing {destination.Length - left} of {destination.Length} bytes",
            ZlibNative.Z_DATA_ERROR => "invalid deflate data" + ZlibNative.MessageSuffix(z),
            ZlibNative.Z_NEED_DICT => "the deflate stream asks for a preset dictionary",
            _ => $"inflate failed with code {rc}",
        };
        throw new Qcow2CorruptImageException("compressed cluster (zlib)", -1, unchecked((ulong)rc), why);
    }

    /// <summary>Per-thread native streams; the finalizer frees them when the thread is gone.</summary>
    private sealed class ThreadStreams
    {
        private ZStream* _deflate;
        private int _deflateLevel;
        private ZStream* _inflate;

        public ZStream* GetDeflate(int level)
        {
            if (_deflate == null)
            {
                var z = (ZStream*)NativeMemory.AllocZeroed((nuint)sizeof(ZStream));
                int rc;
                fixed (byte* version = ZlibNative.Version)
                    rc = ZlibNative.deflateInit2_(z, level, ZlibNative.Z_DEFLATED, RawWindowBits, DefaultMemLevel,
                        ZlibNative.Z_DEFAULT_STRATEGY, version, sizeof(ZStream));
                if (rc != ZlibNative.Z_OK)
                {
                    NativeMemory.Free(z);
                    throw ZlibNative.InitFailure("deflateInit2", rc);
                }
                _deflate = z;
                _deflateLevel = level;
                return z;
            }
            ZlibNative.deflateReset(_deflate);
            if (_deflateLevel != level)
            {
                // Right after a reset no data is pending, so this only changes the parameters.
                ZlibNative.deflateParams(_deflate, level, ZlibNative.Z_DEFAULT_STRATEGY);
                _deflateLevel = level;
            }
            return _deflate;
        }

        public ZStream* GetInflate()
        {
            if (_inflate == null)
            {
                var z = (ZStream*)NativeMemory.AllocZeroed((nuint)sizeof(ZStream));
                int rc;
                fixed (byte* version = ZlibNative.Version)
                    rc = ZlibNative.inflateInit2_(z, RawWindowBits, version, sizeof(ZStream));
                if (rc != ZlibNative.Z_OK)
                {
                    NativeMemory.Free(z);
                    throw ZlibNative.InitFailure("inflateInit2", rc);
                }
                _inflate = z;
                return z;
            }
            // inflateReset keeps the window allocated by the previous call.
            ZlibNative.inflateReset(_inflate);
            return _inflate;
        }

        ~ThreadStreams()
        {
            if (_deflate != null)
            {
                ZlibNative.deflateEnd(_deflate);
                NativeMemory.Free(_deflate);
                _deflate = null;
            }
            if (_inflate != null)
            {
                ZlibNative.inflateEnd(_inflate);
                NativeMemory.Free(_inflate);
                _inflate = null;
            }
        }
    }
}

/// <summary>zlib's z_stream for LP64 (uInt 32-bit, uLong 64-bit).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct ZStream
{
    public byte* next_in;
    public uint avail_in;
    public nuint total_in;
    public byte* next_out;
    public uint avail_out;
    public nuint total_out;
    public byte* msg;
    public void* state;
    public void* zalloc;
    public void* zfree;
    public void* opaque;
    public int data_type;
    public nuint adler;
    public nuint reserved;
}

internal static unsafe partial class ZlibNative
{
    private const string Library = "libz.so.1";

    public const int Z_OK = 0;
    public const int Z_STREAM_END = 1;
    public const int Z_NEED_DICT = 2;
    public const int Z_DATA_ERROR = -3;
    public const int Z_MEM_ERROR = -4;
    public const int Z_BUF_ERROR = -5;
    public const int Z_FINISH = 4;
    public const int Z_DEFLATED = 8;
    public const int Z_DEFAULT_STRATEGY = 0;
    public const int Z_DEFAULT_COMPRESSION = -1;

    /// <summary>
    /// The version we were written against; zlib only checks that the major digit matches
    /// (the u8 literal is NUL-terminated in memory).
    /// </summary>
    public static ReadOnlySpan<byte> Version => "1.2.11"u8;

    public static Exception InitFailure(string function, int rc) => rc == Z_MEM_ERROR
        ? new InsufficientMemoryException($"zlib {function} could not allocate its state.")
        : new InvalidOperationException($"zlib {function} failed with code {rc}.");

    public static string MessageSuffix(ZStream* z) =>
        z->msg == null ? "" : ": " + Marshal.PtrToStringUTF8((nint)z->msg);

    [LibraryImport(Library)]
    public static partial int deflateInit2_(ZStream* strm, int level, int method, int windowBits, int memLevel, int strategy, byte* version, int streamSize);

    [LibraryImport(Library)]
    public static partial int deflate(ZStream* strm, int flush);

    [LibraryImport(Library)]
    public static partial int deflateReset(ZStream* strm);

    [LibraryImport(Library)]
    public static partial int deflateParams(ZStream* strm, int level, int strategy);

    [LibraryImport(Library)]
    public static partial int deflateEnd(ZStream* strm);

    [LibraryImport(Library)]
    public static partial int inflateInit2_(ZStream* strm, int windowBits, byte* version, int streamSize);

    [LibraryImport(Library)]
    public static partial int inflate(ZStream* strm, int flush);

    [LibraryImport(Library)]
    public static partial int inflateReset(ZStream* strm);

    [LibraryImport(Library)]
    public static partial int inflateEnd(ZStream* strm);
}
