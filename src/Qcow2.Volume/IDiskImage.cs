namespace Qcow2.Volume;

/// <summary>
/// A virtual disk: a guest address space of <see cref="Size"/> bytes that can be read, written,
/// zeroed, discarded and queried for allocation. Implemented by <see cref="Qcow2Image"/> and the raw image.
/// </summary>
/// <remarks>
/// Offsets are guest offsets. Every method is safe to call from many threads at once.
/// Ranges outside <c>[0, Size)</c> are caller mistakes (<see cref="ArgumentOutOfRangeException"/>).
/// </remarks>
public interface IDiskImage : IDisposable, IAsyncDisposable
{
    /// <summary>"qcow2" or "raw".</summary>
    string Format { get; }

    /// <summary>The virtual size in bytes.</summary>
    long Size { get; }

    /// <summary>Whether writes are refused.</summary>
    bool IsReadOnly { get; }

    /// <summary>Reads <paramref name="destination"/>.Length bytes at guest <paramref name="offset"/>.</summary>
    void Read(long offset, Span<byte> destination);

    /// <inheritdoc cref="Read"/>
    ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default);

    /// <summary>Writes <paramref name="source"/> at guest <paramref name="offset"/>.</summary>
    void Write(long offset, ReadOnlySpan<byte> source);

    /// <inheritdoc cref="Write"/>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default);

    /// <summary>Makes a range read as zeros; with <paramref name="unmap"/> its host space may be released.</summary>
    void WriteZeroes(long offset, long length, bool unmap = false);

    /// <summary>Releases the host space of a range; its content afterwards is unspecified (zeros or the backing file's).</summary>
    void Discard(long offset, long length);

    /// <summary>Makes every completed write durable.</summary>
    void Flush();

    /// <inheritdoc cref="Flush"/>
    ValueTask FlushAsync(CancellationToken ct = default);

    /// <summary>The allocation status of one extent starting at <paramref name="offset"/>, at most <paramref name="maxLength"/> bytes long.</summary>
    BlockStatus GetBlockStatus(long offset, long maxLength);
}
