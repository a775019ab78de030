namespace Qcow2.Volume.Storage;

/// <summary>
/// Positional byte storage under an image: a file, memory, or a test double. Implementations
/// are thread-safe for concurrent positional reads and writes to different ranges (there is no
/// shared position). <see cref="IOException"/> from the medium passes through unchanged.
/// </summary>
public interface IStorage : IDisposable, IAsyncDisposable
{
    /// <summary>Current length in bytes.</summary>
    long Length { get; }

    /// <summary>Whether writes are allowed.</summary>
    bool CanWrite { get; }

    /// <summary>A name for messages (the file path, or a description).</summary>
    string Name { get; }

    /// <summary>
    /// Reads up to <paramref name="destination"/>.Length bytes at <paramref name="offset"/>.
    /// Returns fewer only when the end of the storage is reached (0 at or past the end).
    /// </summary>
    int Read(long offset, Span<byte> destination);

    /// <inheritdoc cref="Read"/>
    ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default);

    /// <summary>Writes all of <paramref name="source"/> at <paramref name="offset"/>, growing the storage when needed.</summary>
    void Write(long offset, ReadOnlySpan<byte> source);

    /// <inheritdoc cref="Write"/>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default);

    /// <summary>Makes every completed write durable (fsync for files).</summary>
    void Flush();

    /// <inheritdoc cref="Flush"/>
    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>Truncates or extends (with zeros) the storage.</summary>
    void SetLength(long length);
}
