using Qcow2.Volume.Storage;

namespace Qcow2.Property.Tests.Harness;

/// <summary>A broken medium for the harnesses' own tests: passes everything through but flushes (a crash test that cannot tell must fail).</summary>
internal sealed class FlushSwallowingStorage(IStorage inner) : IStorage
{
    public long Length => inner.Length;
    public bool CanWrite => inner.CanWrite;
    public string Name => inner.Name;
    public int Read(long offset, Span<byte> destination) => inner.Read(offset, destination);
    public ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default) => inner.ReadAsync(offset, destination, cancellationToken);
    public void Write(long offset, ReadOnlySpan<byte> source) => inner.Write(offset, source);
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default) => inner.WriteAsync(offset, source, cancellationToken);
    public void Flush()
    {
    }
    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;
    public void SetLength(long length) => inner.SetLength(length);
    public void Dispose()
    {
    }
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
