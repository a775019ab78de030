using System.Collections.Concurrent;

namespace Qcow2.Volume.Storage;

/// <summary>
/// Storage in memory, for tests and fuzzing. The contents are kept in fixed-size chunks that are
/// allocated only when written, so a write at a huge offset costs one chunk, not the whole range;
/// unwritten ranges read as zeros. Thread-safe: reads and writes run concurrently (different
/// ranges, like a file), <see cref="SetLength"/> excludes them.
/// </summary>
/// <remarks>
/// <see cref="Dispose"/> does not discard the contents: an image closed over this storage (which
/// disposes it) can be reopened from the same instance.
/// </remarks>
public sealed class MemoryStorage : IStorage
{
    /// <summary>Chunk size in bytes (a power of two).</summary>
    public const int ChunkSize = 1 << ChunkBits;
    private const int ChunkBits = 16;
    private const int ChunkMask = ChunkSize - 1;

    private readonly ConcurrentDictionary<long, byte[]> _chunks = new();
    // Reads and writes take the read side; SetLength takes the write side so that a shrink
    // cannot interleave with a write that would leave stale bytes past the new end.
    private readonly ReaderWriterLockSlim _resize = new(LockRecursionPolicy.NoRecursion);
    private long _length;

    /// <summary>Creates empty writable storage.</summary>
    /// <param name="name">A name for messages.</param>
    public MemoryStorage(string name = "memory")
    {
        ArgumentNullException.ThrowIfNull(name);
        Name = name;
        CanWrite = true;
    }

    /// <summary>Creates storage holding a copy of <paramref name="contents"/>.</summary>
    /// <param name="contents">The initial bytes.</param>
    /// <param name="writable">Whether writes are allowed.</param>
    /// <param name="name">A name for messages.</param>
    public MemoryStorage(ReadOnlySpan<byte> contents, bool writable = true, string name = "memory")
    {
        ArgumentNullException.ThrowIfNull(name);
        Name = name;
        CanWrite = true;
        Write(0, contents);
        CanWrite = writable;
    }

    /// <inheritdoc/>
    public long Length => Volatile.Read(ref _length);

    /// <inheritdoc/>
    public bool CanWrite { get; }

    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>Bytes of memory held by chunks (for tests that check sparse behaviour).</summary>
    public long AllocatedBytes => (long)_chunks.Count * ChunkSize;

    /// <summary>A read-only view sharing nothing: a copy of the current contents.</summary>
    /// <exception cref="InvalidOperationException">The contents exceed 2 GiB.</exception>
    public MemoryStorage CloneReadOnly() => new(ToArray(), writable: false, Name);

    /// <summary>A writable copy of the current contents (chunk by chunk, still sparse).</summary>
    public MemoryStorage Clone()
    {
        var copy = new MemoryStorage(Name);
        _resize.EnterReadLock();
        try
        {
            foreach (var (index, chunk) in _chunks)
                copy._chunks[index] = (byte[])chunk.Clone();
            copy._length = Length;
        }
        finally
        {
            _resize.ExitReadLock();
        }
        return copy;
    }

    /// <summary>Copies the whole contents into a new array.</summary>
    /// <exception cref="InvalidOperationException">The contents exceed the maximum array length.</exception>
    public byte[] ToArray()
    {
        long length = Length;
        if (length > Array.MaxLength)
            throw new InvalidOperationException($"{Name} holds {length} bytes, more than an array can.");
        var result = new byte[length];
        Read(0, result);
        return result;
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="offset"/> is negative.</exception>
    public int Read(long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        _resize.EnterReadLock();
        try
        {
            long length = Volatile.Read(ref _length);
            if (offset >= length) return 0;
            int count = (int)Math.Min(destination.Length, length - offset);
            int done = 0;
            while (done < count)
            {
                long position = offset + done;
                int inChunk = (int)(position & ChunkMask);
                int n = Math.Min(count - done, ChunkSize - inChunk);
                var target = destination.Slice(done, n);
                if (_chunks.TryGetValue(position >> ChunkBits, out var chunk))
                    chunk.AsSpan(inChunk, n).CopyTo(target);
                else
                    target.Clear();
                done += n;
            }
            return count;
        }
        finally
        {
            _resize.ExitReadLock();
        }
    }

    /// <inheritdoc/>
    public ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested) return ValueTask.FromCanceled<int>(cancellationToken);
        return ValueTask.FromResult(Read(offset, destination.Span));
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="offset"/> is negative or the end overflows.</exception>
    /// <exception cref="NotSupportedException">The storage is read-only.</exception>
    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, long.MaxValue - source.Length);
        if (!CanWrite) throw new NotSupportedException($"{Name} is read-only.");
        _resize.EnterReadLock();
        try
        {
            int done = 0;
            while (done < source.Length)
            {
                long position = offset + done;
                int inChunk = (int)(position & ChunkMask);
                int n = Math.Min(source.Length - done, ChunkSize - inChunk);
                var chunk = _chunks.GetOrAdd(position >> ChunkBits, static _ => new byte[ChunkSize]);
                source.Slice(done, n).CopyTo(chunk.AsSpan(inChunk, n));
                done += n;
            }
            long end = offset + source.Length;
            long current = Volatile.Read(ref _length);
            while (end > current)
            {
                long seen = Interlocked.CompareExchange(ref _length, end, current);
                if (seen == current) break;
                current = seen;
            }
        }
        finally
        {
            _resize.ExitReadLock();
        }
    }

    /// <inheritdoc/>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested) return ValueTask.FromCanceled(cancellationToken);
        Write(offset, source.Span);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public void Flush()
    {
    }

    /// <inheritdoc/>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        cancellationToken.IsCancellationRequested ? ValueTask.FromCanceled(cancellationToken) : ValueTask.CompletedTask;

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    /// <exception cref="NotSupportedException">The storage is read-only.</exception>
    public void SetLength(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (!CanWrite) throw new NotSupportedException($"{Name} is read-only.");
        _resize.EnterWriteLock();
        try
        {
            if (length < _length)
            {
                // Drop whole chunks past the end and clear the tail of the last one, so that a later
                // extension reads zeros as a file would.
                foreach (var index in _chunks.Keys)
                {
                    if (index > (length - 1) >> ChunkBits || length == 0)
                        _chunks.TryRemove(index, out _);
                }
                int inChunk = (int)(length & ChunkMask);
                if (inChunk != 0 && _chunks.TryGetValue(length >> ChunkBits, out var last))
                    last.AsSpan(inChunk).Clear();
            }
            Volatile.Write(ref _length, length);
        }
        finally
        {
            _resize.ExitWriteLock();
        }
    }

    /// <summary>Does nothing: the contents stay readable so that the storage can be reopened.</summary>
    public void Dispose()
    {
    }

    /// <inheritdoc cref="Dispose"/>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    /// <inheritdoc/>
    public override string ToString() => Name;
}
