using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Qcow2.Spans;

namespace Qcow2.Volume.Check;

/// <summary>
/// The check's own reference counts: one slot per host cluster, in exactly the on-disk refcount
/// block format of the image (width 2^order bits, big-endian, sub-byte widths packed low bits
/// first). A refcount block is therefore a plain slice of this array, which makes comparison
/// with the stored blocks a memory compare and a rebuild a plain write.
/// </summary>
internal sealed class RefcountArray
{
    private readonly int _order;
    private readonly int _blockBytes;
    private readonly long _maxBytes;
    private byte[] _data;

    public RefcountArray(int refcountOrder, int clusterBits, long clusters, long maxBytes)
    {
        _order = refcountOrder;
        _blockBytes = 1 << clusterBits;
        _maxBytes = Math.Min(maxBytes, Array.MaxLength);
        EntriesPerBlockBits = clusterBits + 3 - refcountOrder;
        MaxValue = refcountOrder == 6 ? ulong.MaxValue : (1UL << (1 << refcountOrder)) - 1;
        _data = [];
        if (!TryEnsure(clusters)) throw new InsufficientMemoryException();
    }

    /// <summary>log2 of the refcounts one refcount block holds.</summary>
    public int EntriesPerBlockBits { get; }

    public ulong MaxValue { get; }

    /// <summary>Clusters the array can hold right now.</summary>
    public long Capacity => ((long)_data.Length << 3) >> _order;

    /// <summary>Bytes that <paramref name="clusters"/> slots take, rounded up to whole refcount blocks.</summary>
    public long BytesFor(long clusters)
    {
        long blocks = (clusters + (1L << EntriesPerBlockBits) - 1) >> EntriesPerBlockBits;
        return blocks * _blockBytes;
    }

    /// <summary>Grows (zero-filled) to hold at least <paramref name="clusters"/> slots; false when over the limit.</summary>
    public bool TryEnsure(long clusters)
    {
        if (clusters < 0 || clusters > (long.MaxValue >> 4)) return false;
        if (clusters <= Capacity) return true;
        long bytes = BytesFor(clusters);
        if (bytes > _maxBytes) return false;
        // Grow geometrically so a rebuild that appends clusters one at a time stays linear.
        long want = Math.Max(bytes, Math.Min(_maxBytes / _blockBytes * _blockBytes, (long)_data.Length * 3 / 2));
        var grown = new byte[want];
        _data.CopyTo(grown, 0);
        _data = grown;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Get(long index)
    {
        switch (_order)
        {
            case 4: return BinaryPrimitives.ReadUInt16BigEndian(_data.AsSpan((int)(index << 1), 2));
            case 3: return _data[index];
            case 5: return BinaryPrimitives.ReadUInt32BigEndian(_data.AsSpan((int)(index << 2), 4));
            case 6: return BinaryPrimitives.ReadUInt64BigEndian(_data.AsSpan((int)(index << 3), 8));
            default:
                int bits = 1 << _order;
                int perByte = 8 >> _order;
                int shift = (int)(index & (perByte - 1)) * bits;
                return (ulong)((_data[index / perByte] >> shift) & ((1 << bits) - 1));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Set(long index, ulong value)
    {
        switch (_order)
        {
            case 4: BinaryPrimitives.WriteUInt16BigEndian(_data.AsSpan((int)(index << 1), 2), (ushort)value); break;
            case 3: _data[index] = (byte)value; break;
            case 5: BinaryPrimitives.WriteUInt32BigEndian(_data.AsSpan((int)(index << 2), 4), (uint)value); break;
            case 6: BinaryPrimitives.WriteUInt64BigEndian(_data.AsSpan((int)(index << 3), 8), value); break;
            default:
                int bits = 1 << _order;
                int perByte = 8 >> _order;
                int shift = (int)(index & (perByte - 1)) * bits;
                int mask = ((1 << bits) - 1) << shift;
                ref byte b = ref _data[index / perByte];
                b = (byte)((b & ~mask) | (((int)value << shift) & mask));
                break;
        }
    }

    /// <summary>The slots of refcount block <paramref name="blockIndex"/> (must be within the capacity).</summary>
    public Span<byte> Block(long blockIndex) => _data.AsSpan(checked((int)(blockIndex * _blockBytes)), _blockBytes);

    /// <summary>Reads a refcount from a stored refcount block (through the format layer's codec).</summary>
    public static ulong GetFrom(ReadOnlySpan<byte> block, int order, int index) => new ReadOnlyRefcountBlock(block, order).Get(index);

    /// <summary>Writes a refcount into a stored refcount block (through the format layer's codec).</summary>
    public static void SetIn(Span<byte> block, int order, int index, ulong value)
    {
        bool fits = new RefcountBlock(block, order).TrySet(index, value);
        System.Diagnostics.Debug.Assert(fits, "counted refcounts never exceed the width");
    }
}
