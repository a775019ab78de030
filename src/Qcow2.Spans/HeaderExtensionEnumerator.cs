using System.Buffers.Binary;

namespace Qcow2.Spans;

/// <summary>Why a header extension walk stopped early.</summary>
public enum HeaderExtensionError
{
    /// <summary>The walk ended at the end marker or exactly at the end of the buffer.</summary>
    None = 0,

    /// <summary>Fewer than 8 bytes remain for the next extension header.</summary>
    Truncated,

    /// <summary>An extension's length runs past the end of the buffer.</summary>
    TooLong,

    /// <summary>A known extension type appears a second time (the spec allows each at most once).</summary>
    Duplicate,

    /// <summary>The start offset is outside the buffer or not a multiple of 8.</summary>
    InvalidStart,
}

/// <summary>One header extension: its type, where its 8-byte header starts, and its data.</summary>
public readonly ref struct HeaderExtension
{
    internal HeaderExtension(uint type, int offset, ReadOnlySpan<byte> data)
    {
        Type = type;
        Offset = offset;
        Data = data;
    }

    /// <summary>The extension type code (see <see cref="Qcow2Constants"/>).</summary>
    public uint Type { get; }

    /// <summary>Offset of the extension's 8-byte header within the walked buffer.</summary>
    public int Offset { get; }

    /// <summary>The extension data (exactly its declared length; padding excluded).</summary>
    public ReadOnlySpan<byte> Data { get; }
}

/// <summary>
/// Walks the header extensions (spec "Header extensions"): each is
/// <code>
/// 0 type (u32)  4 length (u32)  8 data[length]  then zero padding to a multiple of 8
/// </code>
/// ending at type 0 or at the end of the area. Allocation-free; never reads past the buffer.
/// Pass the area from the end of the header (header_length) to the end of the extension area
/// (the backing file name offset, or the end of the first cluster). After the loop,
/// <see cref="Error"/> tells whether the walk ended normally.
/// </summary>
public ref struct HeaderExtensionEnumerator
{
    private readonly ReadOnlySpan<byte> _buffer;
    private readonly int _start;
    private int _next;
    private uint _seenKnown;
    private HeaderExtension _current;
    private bool _done;

    /// <summary>Starts a walk of <paramref name="headerCluster"/> at byte <paramref name="start"/> (usually header_length).</summary>
    public HeaderExtensionEnumerator(ReadOnlySpan<byte> headerCluster, int start)
    {
        _buffer = headerCluster;
        _start = start;
        _next = start;
        _seenKnown = 0;
        _current = default;
        _done = start < 0 || start > headerCluster.Length || (start & 7) != 0;
    }

    /// <summary>
    /// Why the walk stops early, or None. It depends only on the buffer and the start, so it is
    /// right on any copy of the enumerator (<c>foreach</c> walks a copy), before or after the loop.
    /// </summary>
    public readonly HeaderExtensionError Error
    {
        get
        {
            Walk(_buffer, _start, out var error, out _, out _, out _);
            return error;
        }
    }

    /// <summary>Offset in the buffer of the extension (or position) at fault, or -1.</summary>
    public readonly int ErrorOffset
    {
        get
        {
            Walk(_buffer, _start, out _, out int offset, out _, out _);
            return offset;
        }
    }

    /// <summary>True when the walk stops at an explicit end marker (type 0).</summary>
    public readonly bool FoundEndMarker
    {
        get
        {
            Walk(_buffer, _start, out _, out _, out bool found, out _);
            return found;
        }
    }

    /// <summary>Where the walk ends: the start of the end marker, the buffer end, or the offset at fault.</summary>
    public readonly int EndOffset
    {
        get
        {
            Walk(_buffer, _start, out _, out _, out _, out int end);
            return end;
        }
    }

    /// <summary>The current extension.</summary>
    public readonly HeaderExtension Current => _current;

    /// <summary>Returns this enumerator (for <c>foreach</c>).</summary>
    public readonly HeaderExtensionEnumerator GetEnumerator() => this;

    /// <summary>Advances to the next extension; false at the end or on an error.</summary>
    public bool MoveNext()
    {
        if (_done) return false;
        var step = Step(_buffer, ref _next, ref _seenKnown, out _current);
        if (step != StepResult.Extension)
        {
            _done = true;
            return false;
        }
        return true;
    }

    private enum StepResult { Extension, End, EndMarker, Truncated, TooLong, Duplicate }

    private static StepResult Step(ReadOnlySpan<byte> buffer, scoped ref int next, scoped ref uint seenKnown, out HeaderExtension current)
    {
        current = default;
        int remaining = buffer.Length - next;
        if (remaining == 0) return StepResult.End;
        if (remaining < Qcow2Constants.HeaderExtensionHeaderSize) return StepResult.Truncated;
        var header = buffer.Slice(next, Qcow2Constants.HeaderExtensionHeaderSize);
        uint type = BinaryPrimitives.ReadUInt32BigEndian(header);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header[4..]);
        if (type == Qcow2Constants.ExtensionEnd) return StepResult.EndMarker;
        // Unsigned comparison: a huge length cannot wrap around.
        if (length > (uint)(remaining - Qcow2Constants.HeaderExtensionHeaderSize)) return StepResult.TooLong;
        uint bit = KnownBit(type);
        if (bit != 0)
        {
            if ((seenKnown & bit) != 0) return StepResult.Duplicate;
            seenKnown |= bit;
        }
        int dataStart = next + Qcow2Constants.HeaderExtensionHeaderSize;
        current = new HeaderExtension(type, next, buffer.Slice(dataStart, (int)length));
        // The padding may be cut by the end of the area; the next step then sees the end.
        long padded = dataStart + (((long)length + 7) & ~7L);
        next = (int)Math.Min(padded, buffer.Length);
        return StepResult.Extension;
    }

    private static void Walk(ReadOnlySpan<byte> buffer, int start, out HeaderExtensionError error, out int errorOffset, out bool foundEnd, out int end)
    {
        foundEnd = false;
        if (start < 0 || start > buffer.Length || (start & 7) != 0)
        {
            error = HeaderExtensionError.InvalidStart;
            errorOffset = start;
            end = start;
            return;
        }
        int next = start;
        uint seen = 0;
        while (true)
        {
            int at = next;
            var r = Step(buffer, ref next, ref seen, out _);
            switch (r)
            {
                case StepResult.Extension:
                    continue;
                case StepResult.End:
                    error = HeaderExtensionError.None;
                    errorOffset = -1;
                    end = at;
                    return;
                case StepResult.EndMarker:
                    error = HeaderExtensionError.None;
                    errorOffset = -1;
                    foundEnd = true;
                    end = at;
                    return;
                default:
                    error = r switch
                    {
                        StepResult.Truncated => HeaderExtensionError.Truncated,
                        StepResult.TooLong => HeaderExtensionError.TooLong,
                        _ => HeaderExtensionError.Duplicate,
                    };
                    errorOffset = at;
                    end = at;
                    return;
            }
        }
    }

    private static uint KnownBit(uint type) => type switch
    {
        Qcow2Constants.ExtensionBackingFormat => 1,
        Qcow2Constants.ExtensionFeatureNameTable => 2,
        Qcow2Constants.ExtensionBitmaps => 4,
        Qcow2Constants.ExtensionFullDiskEncryption => 8,
        Qcow2Constants.ExtensionExternalDataFile => 16,
        _ => 0,
    };

    /// <summary>
    /// Finds the first extension of <paramref name="type"/>; false when absent or when the walk
    /// failed before reaching it (check <paramref name="error"/>).
    /// </summary>
    public static bool TryFind(ReadOnlySpan<byte> headerCluster, int start, uint type, out ReadOnlySpan<byte> data, out HeaderExtensionError error)
    {
        var e = new HeaderExtensionEnumerator(headerCluster, start);
        while (e.MoveNext())
        {
            if (e.Current.Type == type)
            {
                data = e.Current.Data;
                error = HeaderExtensionError.None;
                return true;
            }
        }
        data = default;
        error = e.Error;
        return false;
    }

    /// <summary>
    /// Writes one extension (header, data, zero padding) at the start of <paramref name="destination"/>;
    /// returns the bytes written.
    /// </summary>
    /// <exception cref="ArgumentException">destination is too small.</exception>
    public static int WriteExtension(Span<byte> destination, uint type, ReadOnlySpan<byte> data)
    {
        int total = Qcow2Constants.HeaderExtensionHeaderSize + ((data.Length + 7) & ~7);
        if (destination.Length < total) ThrowHelper.ThrowBufferTooSmall(nameof(destination), total, destination.Length);
        BinaryPrimitives.WriteUInt32BigEndian(destination, type);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)data.Length);
        data.CopyTo(destination[8..]);
        destination.Slice(8 + data.Length, total - 8 - data.Length).Clear();
        return total;
    }

    /// <summary>Writes the end marker (8 zero bytes); returns 8.</summary>
    /// <exception cref="ArgumentException">destination is shorter than 8 bytes.</exception>
    public static int WriteEnd(Span<byte> destination)
    {
        if (destination.Length < 8) ThrowHelper.ThrowBufferTooSmall(nameof(destination), 8, destination.Length);
        destination[..8].Clear();
        return 8;
    }
}
