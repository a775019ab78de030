using System.Runtime.InteropServices;
using Qcow2.Spans;

namespace Qcow2.Volume.Compression;

/// <summary>
/// qcow2 compression type 1: one zstd frame per cluster, through the system's libzstd.so.1.
/// </summary>
/// <remarks>
/// A stored zstd cluster is a frame followed by whatever fills its last sector, so decompression
/// runs in streaming mode and stops as soon as the cluster is full; the frame must be complete at
/// that point (a frame that would produce more than a cluster is corrupt). The decoder writes
/// straight into the caller's buffer (ZSTD_d_stableOutBuffer), so a frame declaring a huge window
/// does not make it allocate one. Each thread keeps its own compression and decompression contexts.
/// </remarks>
public sealed unsafe class ZstdCodec : ICompressionCodec
{
    [ThreadStatic]
    private static ThreadContexts? t_contexts;

    /// <summary>The codec at zstd's default level 3 (what QEMU uses).</summary>
    public static ZstdCodec Default { get; } = new(ZstdNative.DefaultLevel);

    /// <summary>Creates a codec with a compression level.</summary>
    /// <param name="level">A zstd level, 1 to 22 (negative levels are the fast modes).</param>
    /// <exception cref="ArgumentOutOfRangeException">The level is out of range.</exception>
    public ZstdCodec(int level)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(level, -131072);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(level, 22);
        Level = level;
    }

    /// <summary>The compression level.</summary>
    public int Level { get; }

    /// <inheritdoc/>
    public CompressionType Type => CompressionType.Zstd;

    /// <inheritdoc/>
    /// <exception cref="Qcow2UnsupportedImageException">libzstd.so.1 is not installed.</exception>
    public int Compress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        int limit = Math.Min(destination.Length, source.Length - 1);
        if (limit <= 0) return -1;
        var contexts = t_contexts ??= new ThreadContexts();
        void* cctx = contexts.GetCompressor(Level);
        fixed (byte* src = source)
        fixed (byte* dst = destination)
        {
            // ZSTD_compress2 starts a new frame and knows the content size, like QEMU's single
            // ZSTD_e_end call; "destination too small" comes back as an error code.
            nuint rc = ZstdNative.ZSTD_compress2(cctx, dst, (nuint)limit, src, (nuint)source.Length);
            if (ZstdNative.ZSTD_isError(rc) != 0) return -1;
            return (int)rc;
        }
    }

    /// <inheritdoc/>
    /// <exception cref="Qcow2UnsupportedImageException">libzstd.so.1 is not installed.</exception>
    public void Decompress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if (destination.IsEmpty) return;
        var contexts = t_contexts ??= new ThreadContexts();
        void* dctx = contexts.GetDecompressor();
        fixed (byte* src = source)
        fixed (byte* dst = destination)
        {
            var input = new ZstdInBuffer { src = src, size = (nuint)source.Length, pos = 0 };
            var output = new ZstdOutBuffer { dst = dst, size = (nuint)destination.Length, pos = 0 };
            nuint rc = 0;
            while (output.pos < output.size)
            {
                nuint inBefore = input.pos, outBefore = output.pos;
                rc = ZstdNative.ZSTD_decompressStream(dctx, &output, &input);
                if (ZstdNative.ZSTD_isError(rc) != 0)
                {
                    // The context is left mid-frame; the next call resets it.
                    throw Corrupt(rc, "invalid zstd data: " + ZstdNative.ErrorName(rc));
                }
                if (rc == 0 && output.pos < output.size)
                {
                    // The frame ended early. Another frame may follow (QEMU's decoder would go on),
                    // but only if input remains; otherwise the cluster is short.
                    if (input.pos >= input.size)
                        throw Corrupt(0, $"the zstd frame ends after {output.pos} of {output.size} bytes");
                }
                // Guard against a decoder that neither consumes nor produces (it waits for input
                // that will never come): that is a truncated frame.
                if (input.pos <= inBefore && output.pos <= outBefore)
                    throw Corrupt(rc, $"the zstd data is truncated after producing {output.pos} of {output.size} bytes");
            }
            // The cluster is full: the frame must end here, or it claims more data than a cluster holds.
            if (rc != 0)
                throw Corrupt(rc, "the zstd frame holds more than one cluster of data");
        }
    }

    private static Qcow2CorruptImageException Corrupt(nuint code, string message) =>
        new("compressed cluster (zstd)", -1, code, message);

    /// <summary>Per-thread native contexts; the finalizer frees them when the thread is gone.</summary>
    private sealed class ThreadContexts
    {
        private void* _cctx;
        private int _cctxLevel;
        private void* _dctx;

        public void* GetCompressor(int level)
        {
            if (_cctx == null)
            {
                _cctx = ZstdNative.Create(static () => ZstdNative.ZSTD_createCCtx());
                _cctxLevel = int.MinValue;
            }
            if (_cctxLevel != level)
            {
                nuint rc = ZstdNative.ZSTD_CCtx_setParameter(_cctx, ZstdNative.ZSTD_c_compressionLevel, level);
                if (ZstdNative.ZSTD_isError(rc) != 0)
                    throw new ArgumentOutOfRangeException(nameof(level), level, "zstd refuses the level: " + ZstdNative.ErrorName(rc));
                _cctxLevel = level;
            }
            return _cctx;
        }

        public void* GetDecompressor()
        {
            if (_dctx == null)
            {
                _dctx = ZstdNative.Create(static () => ZstdNative.ZSTD_createDCtx());
                // Parameters are sticky across session resets.
                ZstdNative.ZSTD_DCtx_setParameter(_dctx, ZstdNative.ZSTD_d_stableOutBuffer, 1);
            }
            else
            {
                ZstdNative.ZSTD_DCtx_reset(_dctx, ZstdNative.ZSTD_reset_session_only);
            }
            return _dctx;
        }

        ~ThreadContexts()
        {
            if (_cctx != null)
            {
                ZstdNative.ZSTD_freeCCtx(_cctx);
                _cctx = null;
            }
            if (_dctx != null)
            {
                ZstdNative.ZSTD_freeDCtx(_dctx);
                _dctx = null;
            }
        }
    }
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct ZstdInBuffer
{
    public byte* src;
    public nuint size;
    public nuint pos;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct ZstdOutBuffer
{
    public byte* dst;
    public nuint size;
    public nuint pos;
}

internal static unsafe partial class ZstdNative
{
    private const string Library = "libzstd.so.1";

    public const int DefaultLevel = 3;
    public const int ZSTD_c_compressionLevel = 100;
    /// <summary>ZSTD_d_experimentalParam2: the output buffer does not move between calls.</summary>
    public const int ZSTD_d_stableOutBuffer = 1001;
    public const int ZSTD_reset_session_only = 1;

    public static void* Create(Func<nint> create)
    {
        nint p;
        try
        {
            p = create();
        }
        catch (DllNotFoundException e)
        {
            throw new Qcow2UnsupportedImageException("compression_type",
                $"zstd compression needs {Library}, which cannot be loaded: {e.Message}");
        }
        if (p == 0) throw new InsufficientMemoryException("libzstd could not allocate a context.");
        return (void*)p;
    }

    public static string ErrorName(nuint code) =>
        Marshal.PtrToStringUTF8(ZSTD_getErrorName(code)) ?? $"error {code}";

    [LibraryImport(Library)]
    public static partial nint ZSTD_createCCtx();

    [LibraryImport(Library)]
    public static partial nuint ZSTD_freeCCtx(void* cctx);

    [LibraryImport(Library)]
    public static partial nuint ZSTD_CCtx_setParameter(void* cctx, int param, int value);

    [LibraryImport(Library)]
    public static partial nuint ZSTD_compress2(void* cctx, void* dst, nuint dstCapacity, void* src, nuint srcSize);

    [LibraryImport(Library)]
    public static partial nint ZSTD_createDCtx();

    [LibraryImport(Library)]
    public static partial nuint ZSTD_freeDCtx(void* dctx);

    [LibraryImport(Library)]
    public static partial nuint ZSTD_DCtx_setParameter(void* dctx, int param, int value);

    [LibraryImport(Library)]
    public static partial nuint ZSTD_DCtx_reset(void* dctx, int reset);

    [LibraryImport(Library)]
    public static partial nuint ZSTD_decompressStream(void* dctx, ZstdOutBuffer* output, ZstdInBuffer* input);

    [LibraryImport(Library)]
    public static partial uint ZSTD_isError(nuint code);

    [LibraryImport(Library)]
    public static partial nint ZSTD_getErrorName(nuint code);
}
