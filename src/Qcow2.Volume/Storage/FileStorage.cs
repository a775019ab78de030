using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qcow2.Volume.Storage;

/// <summary>
/// A file as <see cref="IStorage"/>: positional reads and writes through <see cref="RandomAccess"/>
/// on a <see cref="SafeFileHandle"/>. There is no shared file position, so any number of threads may
/// read and write different ranges at once. <see cref="Flush"/> is an fsync, unless the file was
/// opened with <c>flushToDisk: false</c> (QEMU's cache=unsafe, what qemu-img convert uses for its
/// target by default): then flushes leave the data to the kernel's writeback.
/// </summary>
/// <remarks>
/// The length is cached: it is read once at open, raised (never lowered) by writes that end past it,
/// and set by <see cref="SetLength"/>. Growth by concurrent writers is merged with a compare-and-swap
/// maximum, so the cached value is always the largest end written. Call <see cref="RefreshLength"/>
/// when another process may have changed the file.
/// </remarks>
public sealed class FileStorage : IStorage
{
    private readonly SafeFileHandle _handle;
    private readonly object _lengthLock = new();
    private readonly bool _flushToDisk;
    private long _length;
    private int _disposed;

    private FileStorage(SafeFileHandle handle, string path, bool writable, bool flushToDisk)
    {
        _handle = handle;
        Name = path;
        CanWrite = writable;
        _flushToDisk = flushToDisk;
        _length = RandomAccess.GetLength(handle);
    }

    /// <summary>Opens an existing file.</summary>
    /// <param name="path">The file.</param>
    /// <param name="writable">Open for reading and writing; otherwise read-only.</param>
    /// <exception cref="ArgumentException">The path is empty.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="IOException">The file cannot be opened.</exception>
    /// <exception cref="UnauthorizedAccessException">Access is denied.</exception>
    public static FileStorage Open(string path, bool writable = false) => Open(path, writable, flushToDisk: true);

    /// <summary>Opens an existing file, choosing whether <see cref="Flush"/> reaches the disk.</summary>
    /// <param name="path">The file.</param>
    /// <param name="writable">Open for reading and writing; otherwise read-only.</param>
    /// <param name="flushToDisk">
    /// True: <see cref="Flush"/> is an fsync. False: <see cref="Flush"/> does nothing (QEMU's
    /// cache=unsafe; a crash or power cut may then lose or tear what was written).
    /// </param>
    /// <exception cref="ArgumentException">The path is empty.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="IOException">The file cannot be opened.</exception>
    /// <exception cref="UnauthorizedAccessException">Access is denied.</exception>
    public static FileStorage Open(string path, bool writable, bool flushToDisk)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var handle = File.OpenHandle(
            path,
            FileMode.Open,
            writable ? FileAccess.ReadWrite : FileAccess.Read,
            writable ? FileShare.Read : FileShare.ReadWrite | FileShare.Delete,
            FileOptions.None);
        return Wrap(handle, path, writable, flushToDisk);
    }

    /// <summary>Creates a file (replacing an existing one unless <paramref name="overwrite"/> is false) and opens it read-write.</summary>
    /// <exception cref="ArgumentException">The path is empty.</exception>
    /// <exception cref="IOException">The file exists and <paramref name="overwrite"/> is false, or cannot be created.</exception>
    /// <exception cref="UnauthorizedAccessException">Access is denied.</exception>
    public static FileStorage Create(string path, bool overwrite = true) => Create(path, overwrite, flushToDisk: true);

    /// <summary>Creates a file (see <see cref="Create(string, bool)"/>), choosing whether <see cref="Flush"/> reaches the disk (see <see cref="Open(string, bool, bool)"/>).</summary>
    /// <exception cref="ArgumentException">The path is empty.</exception>
    /// <exception cref="IOException">The file exists and <paramref name="overwrite"/> is false, or cannot be created.</exception>
    /// <exception cref="UnauthorizedAccessException">Access is denied.</exception>
    public static FileStorage Create(string path, bool overwrite, bool flushToDisk)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var handle = File.OpenHandle(
            path,
            overwrite ? FileMode.Create : FileMode.CreateNew,
            FileAccess.ReadWrite,
            FileShare.Read,
            FileOptions.None);
        return Wrap(handle, path, writable: true, flushToDisk);
    }

    private static FileStorage Wrap(SafeFileHandle handle, string path, bool writable, bool flushToDisk)
    {
        try
        {
            return new FileStorage(handle, path, writable, flushToDisk);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public long Length => Volatile.Read(ref _length);

    /// <inheritdoc/>
    public bool CanWrite { get; }

    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>The underlying handle (for callers that need the file descriptor, e.g. hole probing).</summary>
    public SafeFileHandle DangerousHandle => _handle;

    /// <summary>Re-reads the length from the file system (when another process may have changed the file).</summary>
    public long RefreshLength()
    {
        ThrowIfDisposed();
        lock (_lengthLock)
        {
            long len = RandomAccess.GetLength(_handle);
            Volatile.Write(ref _length, len);
            return len;
        }
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="offset"/> is negative.</exception>
    public int Read(long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ThrowIfDisposed();
        int total = 0;
        while (total < destination.Length)
        {
            // pread may return short counts (signals, large requests); only 0 means end of file.
            int n = RandomAccess.Read(_handle, destination[total..], offset + total);
            if (n <= 0) break;
            total += n;
        }
        return total;
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="offset"/> is negative.</exception>
    public async ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ThrowIfDisposed();
        int total = 0;
        while (total < destination.Length)
        {
            int n = await RandomAccess.ReadAsync(_handle, destination[total..], offset + total, cancellationToken).ConfigureAwait(false);
            if (n <= 0) break;
            total += n;
        }
        return total;
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="offset"/> is negative or the end overflows.</exception>
    /// <exception cref="NotSupportedException">The storage is read-only.</exception>
    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        ValidateWrite(offset, source.Length);
        RandomAccess.Write(_handle, source, offset);
        RaiseLength(offset + source.Length);
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="offset"/> is negative or the end overflows.</exception>
    /// <exception cref="NotSupportedException">The storage is read-only.</exception>
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        ValidateWrite(offset, source.Length);
        await RandomAccess.WriteAsync(_handle, source, offset, cancellationToken).ConfigureAwait(false);
        RaiseLength(offset + source.Length);
    }

    /// <inheritdoc/>
    public void Flush()
    {
        ThrowIfDisposed();
        if (CanWrite && _flushToDisk) RandomAccess.FlushToDisk(_handle);
    }

    /// <inheritdoc/>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfDisposed();
        if (!CanWrite || !_flushToDisk) return ValueTask.CompletedTask;
        // fsync blocks; run it off the caller's thread like any other blocking file operation.
        return new ValueTask(Task.Run(() => RandomAccess.FlushToDisk(_handle), cancellationToken));
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    /// <exception cref="NotSupportedException">The storage is read-only.</exception>
    public void SetLength(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ThrowIfDisposed();
        if (!CanWrite) throw new NotSupportedException($"{Name} is open read-only.");
        lock (_lengthLock)
        {
            RandomAccess.SetLength(_handle, length);
            Volatile.Write(ref _length, length);
        }
    }

    /// <summary>
    /// Reserves disk space for a range (posix_fallocate), growing the file when the range ends past it;
    /// the content of the range reads as before (zeros where the file grew).
    /// Falls back to writing zeros past the end when the file system cannot preallocate.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative offset or length, or an overflowing end.</exception>
    /// <exception cref="NotSupportedException">The storage is read-only.</exception>
    /// <exception cref="IOException">The file system reports an error (e.g. out of space).</exception>
    public void Allocate(long offset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, long.MaxValue - offset);
        ThrowIfDisposed();
        if (!CanWrite) throw new NotSupportedException($"{Name} is open read-only.");
        if (length == 0) return;
        int rc = -1;
        if (OperatingSystem.IsLinux())
        {
            bool added = false;
            try
            {
                _handle.DangerousAddRef(ref added);
                rc = FileStorageNative.posix_fallocate((int)_handle.DangerousGetHandle(), offset, length);
            }
            finally
            {
                if (added) _handle.DangerousRelease();
            }
            // ENOSPC is a real failure; EOPNOTSUPP/EINVAL mean "cannot here", so fall back.
            if (rc == FileStorageNative.ENOSPC) throw new IOException($"{Name}: no space left on device while preallocating {length} bytes at {offset}.");
        }
        long end = offset + length;
        if (rc != 0 && end > RandomAccess.GetLength(_handle))
        {
            lock (_lengthLock) RandomAccess.SetLength(_handle, end);
        }
        RaiseLength(end);
    }

    private void ValidateWrite(long offset, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, long.MaxValue - count);
        ThrowIfDisposed();
        if (!CanWrite) throw new NotSupportedException($"{Name} is open read-only.");
    }

    private void RaiseLength(long end)
    {
        long current = Volatile.Read(ref _length);
        while (end > current)
        {
            long seen = Interlocked.CompareExchange(ref _length, end, current);
            if (seen == current) return;
            current = seen;
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <inheritdoc/>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _handle.Dispose();
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}

internal static partial class FileStorageNative
{
    public const int ENOSPC = 28;

    [LibraryImport("libc", SetLastError = false)]
    public static partial int posix_fallocate(int fd, long offset, long len);
}
