using Qcow2.Volume.Storage;

namespace Qcow2.Property.Tests.Harness;

/// <summary>
/// A storage that holds chosen operations: the first read (or write) by a given thread touching a
/// given range waits, once, until the test releases it. Races between threads then run in the order
/// a test chooses, deterministically.
/// </summary>
internal sealed class GateStorage(IStorage inner) : IStorage
{
    private readonly List<Gate> _gates = [];

    /// <summary>One held operation: <see cref="Reached"/> is set when it arrives, it goes on at <see cref="Release"/>.</summary>
    public sealed class Gate(int thread, bool write, long start, long length)
    {
        internal int Armed = 1;

        public ManualResetEventSlim Reached { get; } = new();
        public ManualResetEventSlim Release { get; } = new();

        internal bool Matches(bool isWrite, long offset, int count) =>
            isWrite == write && Environment.CurrentManagedThreadId == thread && offset < start + length && offset + count > start;
    }

    /// <summary>Holds the first read (or write, with <paramref name="write"/>) by thread <paramref name="thread"/> that touches [start, start + length).</summary>
    public Gate Hold(int thread, bool write, long start, long length)
    {
        var gate = new Gate(thread, write, start, length);
        lock (_gates) _gates.Add(gate);
        return gate;
    }

    public long Length => inner.Length;
    public bool CanWrite => inner.CanWrite;
    public string Name => inner.Name;

    public int Read(long offset, Span<byte> destination)
    {
        Wait(false, offset, destination.Length);
        return inner.Read(offset, destination);
    }

    public ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        Wait(false, offset, destination.Length);
        return inner.ReadAsync(offset, destination, cancellationToken);
    }

    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        Wait(true, offset, source.Length);
        inner.Write(offset, source);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        Wait(true, offset, source.Length);
        return inner.WriteAsync(offset, source, cancellationToken);
    }

    public void Flush() => inner.Flush();
    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);
    public void SetLength(long length) => inner.SetLength(length);

    private void Wait(bool write, long offset, int count)
    {
        Gate? hit = null;
        lock (_gates)
        {
            foreach (var gate in _gates)
            {
                if (gate.Armed == 0 || !gate.Matches(write, offset, count)) continue;
                gate.Armed = 0;
                hit = gate;
                break;
            }
        }
        if (hit is null) return;
        hit.Reached.Set();
        // Released by the test; the bound only keeps a broken run from hanging.
        hit.Release.Wait(TimeSpan.FromSeconds(30));
    }

    public void Dispose()
    {
        lock (_gates)
        {
            foreach (var gate in _gates)
            {
                gate.Reached.Dispose();
                gate.Release.Dispose();
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
