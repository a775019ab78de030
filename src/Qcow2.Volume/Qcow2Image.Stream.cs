namespace Qcow2.Volume;

public sealed partial class Qcow2Image
{
    /// <summary>
    /// A seekable <see cref="Stream"/> over the guest disk, writable when the image is. The stream
    /// has its own position; disposing it does not dispose the image. Its length is fixed.
    /// </summary>
    public Stream AsStream() => new DiskImageStream(this);
}

/// <summary>A seekable stream over any <see cref="IDiskImage"/>; reads stop at the end of the disk, writes past it fail.</summary>
internal sealed class DiskImageStream : Stream
{
    private readonly IDiskImage _image;
    private long _position;

    public DiskImageStream(IDiskImage image) => _image = image;

    public override bool CanRead => true;

    public override bool CanSeek => true;

    public override bool CanWrite => !_image.IsReadOnly;

    public override long Length => _image.Size;

    public override long Position
    {
        get => _position;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _position = value;
        }
    }

    public override int Read(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        return Read(buffer.AsSpan(offset, count));
    }

    public override int Read(Span<byte> buffer)
    {
        int n = (int)Math.Clamp(_image.Size - _position, 0, buffer.Length);
        if (n == 0) return 0;
        _image.Read(_position, buffer[..n]);
        _position += n;
        return n;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int n = (int)Math.Clamp(_image.Size - _position, 0, buffer.Length);
        if (n == 0) return 0;
        await _image.ReadAsync(_position, buffer[..n], cancellationToken).ConfigureAwait(false);
        _position += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        Write(buffer.AsSpan(offset, count));
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (!CanWrite) throw new NotSupportedException("The image is read-only.");
        if (buffer.Length > _image.Size - _position) throw new IOException("A disk image stream cannot grow past the virtual size.");
        _image.Write(_position, buffer);
        _position += buffer.Length;
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (!CanWrite) throw new NotSupportedException("The image is read-only.");
        if (buffer.Length > _image.Size - _position) throw new IOException("A disk image stream cannot grow past the virtual size.");
        await _image.WriteAsync(_position, buffer, cancellationToken).ConfigureAwait(false);
        _position += buffer.Length;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush()
    {
        if (CanWrite) _image.Flush();
    }

    public override Task FlushAsync(CancellationToken cancellationToken) =>
        CanWrite ? _image.FlushAsync(cancellationToken).AsTask() : Task.CompletedTask;

    public override long Seek(long offset, SeekOrigin origin)
    {
        long target = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            SeekOrigin.End => _image.Size + offset,
            _ => throw new ArgumentOutOfRangeException(nameof(origin)),
        };
        if (target < 0) throw new IOException("Cannot seek before the start of the disk.");
        _position = target;
        return target;
    }

    public override void SetLength(long value) => throw new NotSupportedException("The virtual size of a disk image is fixed.");
}
