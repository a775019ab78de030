using Qcow2.Spans;

namespace Qcow2.Volume.Compression;

/// <summary>The codec for each qcow2 compression type.</summary>
public static class CompressionCodecs
{
    /// <summary>Returns the shared codec for <paramref name="type"/>.</summary>
    /// <exception cref="Qcow2UnsupportedImageException">The type is not one qcow2 defines (or the native library is missing).</exception>
    public static ICompressionCodec Get(CompressionType type) => type switch
    {
        CompressionType.Zlib => ZlibCodec.Default,
        CompressionType.Zstd => ZstdCodec.Default,
        _ => throw new Qcow2UnsupportedImageException(
            "compression_type",
            $"Unsupported compression type {(int)type}; qcow2 defines 0 (zlib) and 1 (zstd)."),
    };
}
