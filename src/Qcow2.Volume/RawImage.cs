using System.Runtime.InteropServices;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume;

/// <summary>
/// A raw image: the storage's bytes are the guest's bytes. Like QEMU, the virtual size is the
/// storage length rounded up to 512 bytes (the tail past the end of the file reads as zeros), and
/// block status reports the holes of a sparse file (SEEK_DATA/SEEK_HOLE) as zero.
/// </summary>
public sealed partial class RawImage : IDiskImage
{
    private const int SectorSize = 512;
    private const int ZeroChunk = 1 << 20;
    private static readonly byte[] s_zeros = new byte[ZeroChunk];

    private readonly IStorage _storage;
    private readonly bool _ownsStorage;
    private int _disposed;

    /// <summary>Wraps <paramref name="storage"/> as a raw image.</summary>
    /// <param name="storage">The bytes.</param>
    /// <param name="readOnly">Refuse writes (forced when the storage is read-only).</param>
    /// <param name="ownsStorage">Dispose the storage with the image.</param>
    /// <exception cref="ArgumentNullException"><paramref name="storage"/> is null.</exception>
    public RawImage(IStorage storage, bool readOnly = false, bool ownsStorage = true)
    {
        ArgumentNullException.ThrowIfNull(storage);
        _storage = storage;
        _ownsStorage = ownsStorage;
        IsReadOnly = readOnly || !storage.CanWrite;
        long length = storage.Length;
        Size = length > long.MaxValue - (SectorSize - 1) ? length : (length + SectorSize - 1) & ~(long)(SectorSize - 1);
    }

    /// <summary>Opens a raw image file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="IOException">The file cannot be opened.</exception>
    public static RawImage Open(string path, bool readOnly = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new RawImage(FileStorage.Open(Path.GetFullPath(path), writable: !readOnly), readOnly);
    }

    /// <summary>
    /// Creates a raw image file of <paramref name="size"/> bytes (replacing an existing file) and opens
    /// it read-write. <see cref="Preallocation.Falloc"/> reserves the space, <see cref="Preallocation.Full"/>
    /// writes zeros; otherwise the file is sparse (<see cref="Preallocation.Metadata"/> is refused, as by qemu-img).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative size.</exception>
    /// <exception cref="ArgumentException">Metadata preallocation, which raw images do not have.</exception>
    public static RawImage Create(string path, long size, Preallocation preallocation = Preallocation.Off)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ValidateCreate(size, preallocation);
        var storage = FileStorage.Create(Path.GetFullPath(path));
        try
        {
            Fill(storage, size, preallocation);
            return new RawImage(storage);
        }
        catch
        {
            storage.Dispose();
            throw;
        }
    }

    /// <summary>Writes a new raw image of <paramref name="size"/> bytes into <paramref name="storage"/> (previous contents discarded) and opens it.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative size.</exception>
    /// <exception cref="ArgumentException">Metadata preallocation.</exception>
    public static RawImage Create(IStorage storage, long size, Preallocation preallocation = Preallocation.Off, bool ownsStorage = false)
    {
        ArgumentNullException.ThrowIfNull(storage);
        ValidateCreate(size, preallocation);
        Fill(storage, size, preallocation);
        return new RawImage(storage, readOnly: false, ownsStorage);
    }

    private static void ValidateCreate(long size, Preallocation preallocation)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        if (preallocation == Preallocation.Metadata)
            throw new ArgumentException("Unsupported preallocation mode 'metadata' for a raw image", nameof(preallocation));
        if (!Enum.IsDefined(preallocation))
            throw new ArgumentException($"Invalid preallocation mode: '{preallocation}'", nameof(preallocation));
    }

    private static void Fill(IStorage storage, long size, Preallocation preallocation)
    {
        storage.SetLength(0);
        switch (preallocation)
        {
            case Preallocation.Falloc when storage is FileStorage fs:
                fs.Allocate(0, size);
                break;
            case Preallocation.Full:
                for (long done = 0; done < size;)
                {
                    int n = (int)Math.Min(ZeroChunk, size - done);
                    storage.Write(done, s_zeros.AsSpan(0, n));
                    done += n;
                }
                break;
        }
        if (storage.Length != size) storage.SetLength(size);
        storage.Flush();
    }

    /// <inheritdoc/>
    public string Format => "raw";

    /// <inheritdoc/>
    public long Size { get; }

    /// <inheritdoc/>
    public bool IsReadOnly { get; }

    /// <summary>The storage under the image.</summary>
    public IStorage Storage => _storage;

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the image.</exception>
    public void Read(long offset, Span<byte> destination)
    {
        CheckRange(offset, destination.Length);
        int n = _storage.Read(offset, destination);
        if (n < destination.Length) destination[Math.Max(n, 0)..].Clear();
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the image.</exception>
    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        CheckRange(offset, destination.Length);
        int n = await _storage.ReadAsync(offset, destination, ct).ConfigureAwait(false);
        if (n < destination.Length) destination.Span[Math.Max(n, 0)..].Clear();
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the image.</exception>
    /// <exception cref="InvalidOperationException">The image is read-only.</exception>
    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        CheckWritable();
        CheckRange(offset, source.Length);
        _storage.Write(offset, source);
    }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the image.</exception>
    /// <exception cref="InvalidOperationException">The image is read-only.</exception>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default)
    {
        CheckWritable();
        CheckRange(offset, source.Length);
        return _storage.WriteAsync(offset, source, ct);
    }

    /// <inheritdoc/>
    /// <remarks>With <paramref name="unmap"/> on a file, the range becomes a hole (punched); otherwise zeros are written.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The range is outside the image.</exception>
    /// <exception cref="InvalidOperationException">The image is read-only.</exception>
    public void WriteZeroes(long offset, long length, bool unmap = false)
    {
        CheckWritable();
        CheckRange(offset, length);
        if (length == 0) return;
        if (unmap && TryPunchHole(offset, length)) return;
        // Past the end of the file (the rounding tail) nothing needs writing: it reads as zeros.
        long end = Math.Min(offset + length, Math.Max(offset, _storage.Length));
        for (long pos = offset; pos < end;)
        {
            int n = (int)Math.Min(ZeroChunk, end - pos);
            _storage.Write(pos, s_zeros.AsSpan(0, n));
            pos += n;
        }
    }

    /// <inheritdoc/>
    /// <remarks>Like QEMU's raw driver on a file: the range is punched out and reads as zeros.</remarks>
    public void Discard(long offset, long length) => WriteZeroes(offset, length, unmap: true);

    /// <inheritdoc/>
    public void Flush()
    {
        ThrowIfDisposed();
        if (!IsReadOnly) _storage.Flush();
    }

    /// <inheritdoc/>
    public ValueTask FlushAsync(CancellationToken ct = default)
    {
        ThrowIfDisposed();
        return IsReadOnly ? ValueTask.CompletedTask : _storage.FlushAsync(ct);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Data where the file has data, Zero where it has a hole or past its end; every extent is
    /// allocated ("present") at depth 0 with its host offset equal to the guest offset, as QEMU reports.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The offset is outside the image or the length is not positive.</exception>
    public BlockStatus GetBlockStatus(long offset, long maxLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(offset, Size);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLength);
        ThrowIfDisposed();
        long limit = Math.Min(maxLength, Size - offset);
        long fileLength = _storage.Length;
        string? hostFile = _storage is FileStorage ? _storage.Name : null;
        if (offset >= fileLength)
            return new BlockStatus(offset, limit, BlockStatusFlags.Zero | BlockStatusFlags.Allocated, 0, offset, hostFile);
        long inFile = Math.Min(limit, fileLength - offset);
        if (_storage is FileStorage file && TryProbeHoles(file, offset, fileLength, out bool isData, out long runEnd))
        {
            long length = Math.Min(inFile, runEnd - offset);
            var flags = (isData ? BlockStatusFlags.Data : BlockStatusFlags.Zero) | BlockStatusFlags.Allocated;
            return new BlockStatus(offset, length, flags, 0, offset, hostFile);
        }
        return new BlockStatus(offset, inFile, BlockStatusFlags.Data | BlockStatusFlags.Allocated, 0, offset, hostFile);
    }

    /// <summary>Whether <paramref name="offset"/> lies in data or a hole, and where that run ends (lseek SEEK_DATA/SEEK_HOLE).</summary>
    internal static bool TryProbeHoles(FileStorage file, long offset, long fileLength, out bool isData, out long runEnd)
    {
        isData = true;
        runEnd = fileLength;
        if (!OperatingSystem.IsLinux()) return false;
        var handle = file.DangerousHandle;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            long data = Native.lseek(fd, offset, Native.SEEK_DATA);
            if (data < 0)
            {
                // ENXIO: no data at or after offset, the rest is a hole. Anything else: no probing here.
                if (Marshal.GetLastPInvokeError() != Native.ENXIO) return false;
                isData = false;
                runEnd = fileLength;
                return true;
            }
            if (data > offset)
            {
                isData = false;
                runEnd = Math.Min(data, fileLength);
                return true;
            }
            long hole = Native.lseek(fd, offset, Native.SEEK_HOLE);
            if (hole < 0) return false;
            isData = true;
            runEnd = Math.Min(hole, fileLength);
            return runEnd > offset;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    private bool TryPunchHole(long offset, long length)
    {
        if (_storage is not FileStorage file || !OperatingSystem.IsLinux()) return false;
        long fileLength = file.Length;
        if (offset >= fileLength) return true; // already reads as zeros
        long len = Math.Min(length, fileLength - offset);
        var handle = file.DangerousHandle;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return Native.fallocate((int)handle.DangerousGetHandle(), Native.FALLOC_FL_PUNCH_HOLE | Native.FALLOC_FL_KEEP_SIZE, offset, len) == 0;
        }
        finally
        {
            if (added) handle.DangerousRelease();
        }
    }

    private void CheckRange(long offset, long length)
    {
        ThrowIfDisposed();
        if (offset < 0 || length < 0 || offset > Size || length > Size - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"The range [{offset}, +{length}) is outside the image of {Size} bytes.");
    }

    private void CheckWritable()
    {
        if (IsReadOnly) throw new InvalidOperationException($"{_storage.Name} is open read-only.");
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <inheritdoc/>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0 && _ownsStorage) _storage.Dispose();
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0 && _ownsStorage) return _storage.DisposeAsync();
        return ValueTask.CompletedTask;
    }

    private static partial class Native
    {
        public const int SEEK_DATA = 3;
        public const int SEEK_HOLE = 4;
        public const int ENXIO = 6;
        public const int FALLOC_FL_KEEP_SIZE = 1;
        public const int FALLOC_FL_PUNCH_HOLE = 2;

        [LibraryImport("libc", SetLastError = true)]
        public static partial long lseek(int fd, long offset, int whence);

        [LibraryImport("libc", SetLastError = true)]
        public static partial int fallocate(int fd, int mode, long offset, long len);
    }
}
