using Qcow2.Spans;

namespace Qcow2.Volume.Compression;

/// <summary>
/// Compresses and decompresses one cluster in the form qcow2 stores it (spec "Compressed Clusters
/// Descriptor"). Implementations are thread-safe and allocate nothing on the managed heap per call.
/// </summary>
public interface ICompressionCodec
{
    /// <summary>The header's compression_type value this codec implements.</summary>
    CompressionType Type { get; }

    /// <summary>
    /// Compresses <paramref name="source"/> into <paramref name="destination"/>.
    /// </summary>
    /// <returns>
    /// The compressed length, or -1 when the result would not be smaller than the source or does not
    /// fit in <paramref name="destination"/> (the caller then stores the cluster uncompressed).
    /// </returns>
    int Compress(ReadOnlySpan<byte> source, Span<byte> destination);

    /// <summary>
    /// Decompresses exactly <paramref name="destination"/>.Length bytes from <paramref name="source"/>.
    /// Input left over after the destination is full (the rest of the last sector, as qcow2 rounds
    /// compressed clusters up to sectors) is ignored.
    /// </summary>
    /// <exception cref="Qcow2CorruptImageException">The input is not a valid stream or ends before the destination is full.</exception>
    void Decompress(ReadOnlySpan<byte> source, Span<byte> destination);
}
