using Qcow2.Volume;
using Qcow2.Volume.Storage;

namespace Qcow2.Cli.Framework;

// Stand-ins for library API that DESIGN.md names but Qcow2.Volume does not have yet
// (RawImage, Qcow2Measure). Each is replaced by the
// library's type when it lands; until then the commands that need them fail with a one-line
// "not available yet" error instead of not building.

/// <summary>Stand-in for DESIGN's Qcow2Measure.</summary>
internal static class Qcow2Measure
{
    public readonly record struct Result(long Required, long FullyAllocated, long? Bitmaps);

    public static Result Measure(Qcow2CreateOptions options, IDiskImage? source) =>
        throw new NotSupportedException("measuring qcow2 targets is not available yet (Qcow2Measure is missing from Qcow2.Volume)");
}

/// <summary>Stand-in for DESIGN's RawImage: the file's bytes are the guest's bytes.</summary>
internal sealed class RawImage : IDiskImage
{
    private readonly FileStorage _storage;

    private RawImage(FileStorage storage, bool readOnly)
    {
        _storage = storage;
        IsReadOnly = readOnly;
        Size = storage.Length;
    }

    public static RawImage Open(string path, bool readOnly) =>
        new(FileStorage.Open(Path.GetFullPath(path), writable: !readOnly), readOnly);

    public string Format => "raw";
    public long Size { get; }
    public bool IsReadOnly { get; }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Size || length > Size - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), "Request outside the image");
    }

    private void CheckWritable()
    {
        if (IsReadOnly) throw new InvalidOperationException("The image is read-only");
    }

    public void Read(long offset, Span<byte> destination)
    {
        CheckRange(offset, destination.Length);
        int n = _storage.Read(offset, destination);
        destination[n..].Clear();
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        CheckRange(offset, destination.Length);
        int n = await _storage.ReadAsync(offset, destination, ct).ConfigureAwait(false);
        destination.Span[n..].Clear();
    }

    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        CheckWritable();
        CheckRange(offset, source.Length);
        _storage.Write(offset, source);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default)
    {
        CheckWritable();
        CheckRange(offset, source.Length);
        return _storage.WriteAsync(offset, source, ct);
    }

    public void WriteZeroes(long offset, long length, bool unmap = false)
    {
        CheckWritable();
        CheckRange(offset, length);
        var zeros = new byte[(int)Math.Min(length, 1 << 20)];
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(zeros.Length, length - done);
            _storage.Write(offset + done, zeros.AsSpan(0, n));
            done += n;
        }
    }

    public void Discard(long offset, long length) => CheckRange(offset, length);

    public void Flush() => _storage.Flush();

    public ValueTask FlushAsync(CancellationToken ct = default) => _storage.FlushAsync(ct);

    public BlockStatus GetBlockStatus(long offset, long maxLength)
    {
        CheckRange(offset, 0);
        long length = Math.Min(maxLength, Size - offset);
        return new BlockStatus(offset, length, BlockStatusFlags.Data | BlockStatusFlags.Allocated, 0, offset, null);
    }

    public void Dispose() => _storage.Dispose();

    public ValueTask DisposeAsync() => _storage.DisposeAsync();
}
