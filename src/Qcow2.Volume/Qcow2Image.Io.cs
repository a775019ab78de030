using System.Buffers;
using System.Runtime.CompilerServices;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume;

/// <summary>
/// One implementation of the data paths for sync and async callers (as System.Formats.Tar does):
/// the core methods are generic over an adapter whose static members either block or await.
/// With <see cref="SyncIo"/> every await completes synchronously, so the async state machine
/// never boxes and the sync entry points allocate nothing.
/// </summary>
internal interface IIoAdapter
{
    static abstract ValueTask<int> ReadAsync(IStorage storage, long offset, Memory<byte> buffer, CancellationToken ct);

    static abstract ValueTask WriteAsync(IStorage storage, long offset, ReadOnlyMemory<byte> buffer, CancellationToken ct);

    static abstract ValueTask ReadImageAsync(IDiskImage image, long offset, Memory<byte> buffer, CancellationToken ct);

    static abstract ValueTask FlushAsync(IStorage storage, CancellationToken ct);

    static abstract ValueTask WaitAsync(Task task, CancellationToken ct);
}

internal readonly struct SyncIo : IIoAdapter
{
    public static ValueTask<int> ReadAsync(IStorage storage, long offset, Memory<byte> buffer, CancellationToken ct) =>
        new(storage.Read(offset, buffer.Span));

    public static ValueTask WriteAsync(IStorage storage, long offset, ReadOnlyMemory<byte> buffer, CancellationToken ct)
    {
        storage.Write(offset, buffer.Span);
        return default;
    }

    public static ValueTask ReadImageAsync(IDiskImage image, long offset, Memory<byte> buffer, CancellationToken ct)
    {
        image.Read(offset, buffer.Span);
        return default;
    }

    public static ValueTask FlushAsync(IStorage storage, CancellationToken ct)
    {
        storage.Flush();
        return default;
    }

    public static ValueTask WaitAsync(Task task, CancellationToken ct)
    {
        task.Wait(ct);
        return default;
    }
}

internal readonly struct AsyncIo : IIoAdapter
{
    public static ValueTask<int> ReadAsync(IStorage storage, long offset, Memory<byte> buffer, CancellationToken ct) =>
        storage.ReadAsync(offset, buffer, ct);

    public static ValueTask WriteAsync(IStorage storage, long offset, ReadOnlyMemory<byte> buffer, CancellationToken ct) =>
        storage.WriteAsync(offset, buffer, ct);

    public static ValueTask ReadImageAsync(IDiskImage image, long offset, Memory<byte> buffer, CancellationToken ct) =>
        image.ReadAsync(offset, buffer, ct);

    public static ValueTask FlushAsync(IStorage storage, CancellationToken ct) => storage.FlushAsync(ct);

    public static ValueTask WaitAsync(Task task, CancellationToken ct) => new(task.WaitAsync(ct));
}

/// <summary>
/// Presents a pinned span as <see cref="Memory{T}"/> for the duration of a synchronous call, so
/// the sync entry points can run the shared core. One instance per thread is reused; a nested
/// use on the same thread (a backing image read through its public API) gets a fresh one.
/// </summary>
internal sealed unsafe class PinnedMemory : MemoryManager<byte>
{
    [ThreadStatic] private static PinnedMemory? t_cached;

    private byte* _pointer;
    private int _length;

    public static PinnedMemory Rent(byte* pointer, int length)
    {
        var m = t_cached ?? new PinnedMemory();
        t_cached = null;
        m._pointer = pointer;
        m._length = length;
        return m;
    }

    public static void Return(PinnedMemory m)
    {
        m._pointer = null;
        m._length = 0;
        t_cached = m;
    }

    public override Span<byte> GetSpan() => new(_pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}

internal static class ValueTaskExtensions
{
    /// <summary>Completes a value task that the sync adapter guarantees has already completed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void CompleteSync(this ValueTask task)
    {
        if (task.IsCompletedSuccessfully) return;
        task.AsTask().GetAwaiter().GetResult();
    }
}
