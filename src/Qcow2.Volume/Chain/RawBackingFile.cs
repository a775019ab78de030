using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Chain;

/// <summary>
/// A raw file as a read-only backing image: its size is the file length and reads past the end
/// return zeros (the spec's rule for a backing file shorter than its overlay).
/// </summary>
internal sealed class RawBackingFile : IDiskImage
{
    private readonly IStorage _storage;

    public RawBackingFile(IStorage storage)
    {
        _storage = storage;
        Size = storage.Length;
    }

    public string Format => "raw";

    public long Size { get; }

    public bool IsReadOnly => true;

    public void Read(long offset, Span<byte> destination)
    {
        int n = offset >= Size ? 0 : _storage.Read(offset, destination);
        if (n < destination.Length) destination[Math.Max(n, 0)..].Clear();
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        int n = offset >= Size ? 0 : await _storage.ReadAsync(offset, destination, ct).ConfigureAwait(false);
        if (n < destination.Length) destination.Span[Math.Max(n, 0)..].Clear();
    }

    public void Write(long offset, ReadOnlySpan<byte> source) => throw ReadOnly();

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default) => throw ReadOnly();

    public void WriteZeroes(long offset, long length, bool unmap = false) => throw ReadOnly();

    public void Discard(long offset, long length) => throw ReadOnly();

    public void Flush()
    {
    }

    public ValueTask FlushAsync(CancellationToken ct = default) => default;

    public BlockStatus GetBlockStatus(long offset, long maxLength) =>
        new(offset, Math.Min(maxLength, Math.Max(0, Size - offset)), BlockStatusFlags.Data | BlockStatusFlags.Allocated, 0, offset, _storage.Name);

    private static InvalidOperationException ReadOnly() => new("A backing file is opened read-only.");

    public void Dispose() => _storage.Dispose();

    public ValueTask DisposeAsync() => _storage.DisposeAsync();
}
