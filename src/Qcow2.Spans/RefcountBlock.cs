using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Qcow2.Spans;

/// <summary>Outcome of a refcount increment or decrement.</summary>
public enum RefcountUpdateStatus
{
    /// <summary>Updated.</summary>
    Ok,

    /// <summary>The new value would exceed the refcount width; nothing was written.</summary>
    Overflow,

    /// <summary>The refcount is already zero; nothing was written.</summary>
    Underflow,
}

/// <summary>
/// Reading refcount entries of any width (spec "Host cluster management": refcount_bits = 1 &lt;&lt;
/// refcount_order; sub-byte widths are packed from the least significant bit, wider ones are
/// big-endian). Shared by <see cref="RefcountBlock"/> and <see cref="ReadOnlyRefcountBlock"/>.
/// </summary>
internal static class RefcountCodec
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int EntryCount(int byteLength, int order) => (int)(((long)byteLength << 3) >> order);

    public static void CheckOrder(int refcountOrder)
    {
        if ((uint)refcountOrder > Qcow2Limits.MaxRefcountOrder)
            ThrowHelper.ThrowArgumentOutOfRange(nameof(refcountOrder), refcountOrder, "refcount_order must be 0..6.");
    }

    public static ulong MaxValue(int order) => order == 6 ? ulong.MaxValue : (1UL << (1 << order)) - 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Get(ReadOnlySpan<byte> data, int order, int index)
    {
        switch (order)
        {
            case 0: return (uint)(data[index >> 3] >> (index & 7)) & 1u;
            case 1: return (uint)(data[index >> 2] >> ((index & 3) << 1)) & 3u;
            case 2: return (uint)(data[index >> 1] >> ((index & 1) << 2)) & 15u;
            case 3: return data[index];
            case 4: return BinaryPrimitives.ReadUInt16BigEndian(data.Slice(index << 1, 2));
            case 5: return BinaryPrimitives.ReadUInt32BigEndian(data.Slice(index << 2, 4));
            default: return BinaryPrimitives.ReadUInt64BigEndian(data.Slice(index << 3, 8));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Set(Span<byte> data, int order, int index, ulong value)
    {
        switch (order)
        {
            case 0: SetPacked(ref data[index >> 3], (index & 7), 1, (uint)value); break;
            case 1: SetPacked(ref data[index >> 2], (index & 3) << 1, 3, (uint)value); break;
            case 2: SetPacked(ref data[index >> 1], (index & 1) << 2, 15, (uint)value); break;
            case 3: data[index] = (byte)value; break;
            case 4: BinaryPrimitives.WriteUInt16BigEndian(data.Slice(index << 1, 2), (ushort)value); break;
            case 5: BinaryPrimitives.WriteUInt32BigEndian(data.Slice(index << 2, 4), (uint)value); break;
            default: BinaryPrimitives.WriteUInt64BigEndian(data.Slice(index << 3, 8), value); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SetPacked(ref byte b, int shift, uint mask, uint value) =>
        b = (byte)((b & ~(mask << shift)) | ((value & mask) << shift));

    /// <summary>First index ≥ start whose refcount is not zero, or -1.</summary>
    public static int IndexOfNonZero(ReadOnlySpan<byte> data, int order, int start)
    {
        int count = EntryCount(data.Length, order);
        if ((uint)start > (uint)count) ThrowHelper.ThrowIndexArgument(nameof(start), start, count + 1);
        if (start == count) return -1;
        if (order >= 3)
        {
            // Any non-zero byte inside an entry makes the entry non-zero; IndexOfAnyExcept is vectorised.
            int byteShift = order - 3;
            int i = data[(start << byteShift)..(count << byteShift)].IndexOfAnyExcept((byte)0);
            return i < 0 ? -1 : start + (i >> byteShift);
        }
        int perByteShift = 3 - order;              // log2(entries per byte)
        int byteIndex = start >> perByteShift;
        // The first, partially covered byte: drop the entries before start.
        int firstShift = (start & ((1 << perByteShift) - 1)) << order;
        uint first = (uint)data[byteIndex] >> firstShift;
        if (first != 0) return start + (BitOperations.TrailingZeroCount(first) >> order);
        int rest = byteIndex + 1;
        if (rest >= data.Length) return -1;
        int j = data[rest..].IndexOfAnyExcept((byte)0);
        if (j < 0) return -1;
        int b = rest + j;
        return (b << perByteShift) + (BitOperations.TrailingZeroCount((uint)data[b]) >> order);
    }

    /// <summary>First index ≥ start whose refcount is zero (a free cluster), or -1.</summary>
    public static int IndexOfZero(ReadOnlySpan<byte> data, int order, int start)
    {
        int count = EntryCount(data.Length, order);
        if ((uint)start > (uint)count) ThrowHelper.ThrowIndexArgument(nameof(start), start, count + 1);
        if (start == count) return -1;
        switch (order)
        {
            case 3:
            {
                int i = data[start..].IndexOf((byte)0);
                return i < 0 ? -1 : start + i;
            }
            case 4:
            {
                // A zero entry is zero in either byte order, so search the native-order view
                // (vectorised); the cast needs no alignment.
                var words = MemoryMarshal.Cast<byte, ushort>(data[..(count << 1)]);
                int i = words[start..].IndexOf((ushort)0);
                return i < 0 ? -1 : start + i;
            }
            case 5:
            {
                var words = MemoryMarshal.Cast<byte, uint>(data[..(count << 2)]);
                int i = words[start..].IndexOf(0u);
                return i < 0 ? -1 : start + i;
            }
            case 6:
            {
                var words = MemoryMarshal.Cast<byte, ulong>(data[..(count << 3)]);
                int i = words[start..].IndexOf(0UL);
                return i < 0 ? -1 : start + i;
            }
            default:
                return IndexOfZeroPacked(data, order, start, count);
        }
    }

    // Sub-byte widths. For 1-bit entries a byte holding a free entry is simply a byte that is
    // not 0xFF. For 2- and 4-bit entries, fold each field's bits into its lowest bit (OR of the
    // word shifted right by 0..width-1; shifts below the width never mix two fields), so a field
    // is zero exactly when its lowest bit is clear in the folded word. Whole vectors are checked
    // first and the first hit is located with the scalar 64-bit form.
    private static int IndexOfZeroPacked(ReadOnlySpan<byte> data, int order, int start, int count)
    {
        int perByteShift = 3 - order;
        int entriesPerByte = 1 << perByteShift;
        int i = start;
        // Head: entries up to the next byte boundary, one by one.
        int headEnd = Math.Min(count, (start + entriesPerByte - 1) & ~(entriesPerByte - 1));
        for (; i < headEnd; i++)
            if (Get(data, order, i) == 0) return i;
        if (i >= count) return -1;
        int firstByte = i >> perByteShift;
        if (order == 0)
        {
            int b = data[firstByte..].IndexOfAnyExcept((byte)0xFF);
            return b < 0 ? -1 : ((firstByte + b) << 3) + BitOperations.TrailingZeroCount(~(uint)data[firstByte + b]);
        }
        ulong lowBits = order == 1 ? 0x5555_5555_5555_5555UL : 0x1111_1111_1111_1111UL;
        int pos = firstByte;
        // The vector checks read lanes in native order; the fold assumes little-endian lanes.
        if (Vector256.IsHardwareAccelerated && BitConverter.IsLittleEndian)
        {
            var low = Vector256.Create(lowBits);
            while (pos + Vector256<byte>.Count <= data.Length)
            {
                var w = Vector256.Create(data.Slice(pos, Vector256<byte>.Count)).AsUInt64();
                var folded = order == 1
                    ? w | Vector256.ShiftRightLogical(w, 1)
                    : w | Vector256.ShiftRightLogical(w, 1) | Vector256.ShiftRightLogical(w, 2) | Vector256.ShiftRightLogical(w, 3);
                if ((folded & low) != low) break;
                pos += Vector256<byte>.Count;
            }
        }
        else if (Vector128.IsHardwareAccelerated && BitConverter.IsLittleEndian)
        {
            var low = Vector128.Create(lowBits);
            while (pos + Vector128<byte>.Count <= data.Length)
            {
                var w = Vector128.Create(data.Slice(pos, Vector128<byte>.Count)).AsUInt64();
                var folded = order == 1
                    ? w | Vector128.ShiftRightLogical(w, 1)
                    : w | Vector128.ShiftRightLogical(w, 1) | Vector128.ShiftRightLogical(w, 2) | Vector128.ShiftRightLogical(w, 3);
                if ((folded & low) != low) break;
                pos += Vector128<byte>.Count;
            }
        }
        while (pos + 8 <= data.Length)
        {
            ulong w = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(pos, 8));
            ulong folded = order == 1 ? w | (w >> 1) : w | (w >> 1) | (w >> 2) | (w >> 3);
            ulong zeroFields = ~folded & lowBits;
            if (zeroFields != 0) return (pos << perByteShift) + (BitOperations.TrailingZeroCount(zeroFields) >> order);
            pos += 8;
        }
        for (i = pos << perByteShift; i < count; i++)
            if (Get(data, order, i) == 0) return i;
        return -1;
    }

    /// <summary>Number of consecutive zero refcounts from start, at most maxLength.</summary>
    public static int CountFree(ReadOnlySpan<byte> data, int order, int start, int maxLength)
    {
        int count = EntryCount(data.Length, order);
        if ((uint)start > (uint)count) ThrowHelper.ThrowIndexArgument(nameof(start), start, count + 1);
        if (maxLength < 0) ThrowHelper.ThrowArgumentOutOfRange(nameof(maxLength), maxLength, "Must not be negative.");
        int nz = IndexOfNonZero(data, order, start);
        int end = nz < 0 ? count : nz;
        return Math.Min(end - start, maxLength);
    }

    public static bool FindFreeRun(ReadOnlySpan<byte> data, int order, int start, int minLength, out int runStart)
    {
        int count = EntryCount(data.Length, order);
        if ((uint)start > (uint)count) ThrowHelper.ThrowIndexArgument(nameof(start), start, count + 1);
        if (minLength <= 0) ThrowHelper.ThrowArgumentOutOfRange(nameof(minLength), minLength, "Must be positive.");
        int pos = start;
        while (pos < count)
        {
            int z = IndexOfZero(data, order, pos);
            if (z < 0) break;
            if (count - z < minLength) break;
            int nz = IndexOfNonZero(data, order, z);
            int end = nz < 0 ? count : nz;
            if (end - z >= minLength)
            {
                runStart = z;
                return true;
            }
            pos = end;
        }
        runStart = -1;
        return false;
    }

    public static int TrailingFreeCount(ReadOnlySpan<byte> data, int order)
    {
        int count = EntryCount(data.Length, order);
        if (order >= 3)
        {
            int last = data[..(count << (order - 3))].LastIndexOfAnyExcept((byte)0);
            return last < 0 ? count : count - 1 - (last >> (order - 3));
        }
        int lastByte = data.LastIndexOfAnyExcept((byte)0);
        if (lastByte < 0) return count;
        int perByteShift = 3 - order;
        int highest = 31 - BitOperations.LeadingZeroCount((uint)data[lastByte]);
        int lastIndex = (lastByte << perByteShift) + (highest >> order);
        return count - 1 - lastIndex;
    }

    public static int CountNonZero(ReadOnlySpan<byte> data, int order)
    {
        int count = EntryCount(data.Length, order);
        int n = 0;
        int i = 0;
        while (i < count)
        {
            int nz = IndexOfNonZero(data, order, i);
            if (nz < 0) break;
            int z = IndexOfZero(data, order, nz);
            int end = z < 0 ? count : z;
            n += end - nz;
            i = end;
        }
        return n;
    }
}

/// <summary>
/// A mutable view of one refcount block (one cluster) for refcount_order 0–6. Allocates nothing;
/// values that do not fit the width are refused, never truncated.
/// </summary>
public readonly ref struct RefcountBlock
{
    private readonly Span<byte> _data;
    private readonly int _order;

    /// <summary>Wraps a block.</summary>
    /// <exception cref="ArgumentOutOfRangeException">refcountOrder is outside 0..6.</exception>
    public RefcountBlock(Span<byte> block, int refcountOrder)
    {
        RefcountCodec.CheckOrder(refcountOrder);
        _data = block;
        _order = refcountOrder;
    }

    /// <summary>The block bytes.</summary>
    public Span<byte> Data => _data;

    /// <summary>log2 of the width in bits.</summary>
    public int RefcountOrder => _order;

    /// <summary>Width in bits.</summary>
    public int RefcountBits => 1 << _order;

    /// <summary>Number of entries.</summary>
    public int Count => RefcountCodec.EntryCount(_data.Length, _order);

    /// <summary>Largest storable refcount.</summary>
    public ulong MaxValue => RefcountCodec.MaxValue(_order);

    /// <summary>The read-only twin.</summary>
    public ReadOnlyRefcountBlock AsReadOnly() => new(_data, _order);

    /// <summary>The refcount at <paramref name="index"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the block.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Get(int index)
    {
        if ((uint)index >= (uint)Count) ThrowHelper.ThrowIndexArgument(nameof(index), index, Count);
        return RefcountCodec.Get(_data, _order, index);
    }

    /// <summary>Sets the refcount at <paramref name="index"/>; false (nothing written) when it does not fit.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the block.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TrySet(int index, ulong value)
    {
        if ((uint)index >= (uint)Count) ThrowHelper.ThrowIndexArgument(nameof(index), index, Count);
        if (value > MaxValue) return false;
        RefcountCodec.Set(_data, _order, index, value);
        return true;
    }

    /// <summary>Adds one; <see cref="RefcountUpdateStatus.Overflow"/> (nothing written) at the maximum.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the block.</exception>
    public RefcountUpdateStatus TryIncrement(int index, out ulong newValue)
    {
        ulong v = Get(index);
        if (v == MaxValue)
        {
            newValue = v;
            return RefcountUpdateStatus.Overflow;
        }
        newValue = v + 1;
        RefcountCodec.Set(_data, _order, index, newValue);
        return RefcountUpdateStatus.Ok;
    }

    /// <summary>Subtracts one; <see cref="RefcountUpdateStatus.Underflow"/> (nothing written) at zero.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the block.</exception>
    public RefcountUpdateStatus TryDecrement(int index, out ulong newValue)
    {
        ulong v = Get(index);
        if (v == 0)
        {
            newValue = 0;
            return RefcountUpdateStatus.Underflow;
        }
        newValue = v - 1;
        RefcountCodec.Set(_data, _order, index, newValue);
        return RefcountUpdateStatus.Ok;
    }

    /// <summary>Adds a signed delta; Overflow/Underflow (nothing written) when the result does not fit.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the block.</exception>
    public RefcountUpdateStatus TryAdd(int index, long delta, out ulong newValue)
    {
        ulong v = Get(index);
        newValue = v;
        if (delta >= 0)
        {
            if ((ulong)delta > MaxValue - v) return RefcountUpdateStatus.Overflow;
            newValue = v + (ulong)delta;
        }
        else
        {
            ulong d = (ulong)(-(delta + 1)) + 1; // |delta| without overflow at long.MinValue
            if (d > v) return RefcountUpdateStatus.Underflow;
            newValue = v - d;
        }
        RefcountCodec.Set(_data, _order, index, newValue);
        return RefcountUpdateStatus.Ok;
    }

    /// <summary>First index ≥ <paramref name="start"/> with a non-zero refcount, or -1 (vectorised).</summary>
    /// <exception cref="ArgumentOutOfRangeException">start is outside 0..Count.</exception>
    public int IndexOfNonZero(int start = 0) => RefcountCodec.IndexOfNonZero(_data, _order, start);

    /// <summary>First index ≥ <paramref name="start"/> with a zero refcount, or -1 (vectorised).</summary>
    /// <exception cref="ArgumentOutOfRangeException">start is outside 0..Count.</exception>
    public int IndexOfZero(int start = 0) => RefcountCodec.IndexOfZero(_data, _order, start);

    /// <summary>Number of consecutive free entries from <paramref name="start"/>, at most <paramref name="maxLength"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">start is outside 0..Count or maxLength is negative.</exception>
    public int CountFree(int start, int maxLength = int.MaxValue) => RefcountCodec.CountFree(_data, _order, start, maxLength);

    /// <summary>
    /// Finds the first run of at least <paramref name="minLength"/> free entries at or after
    /// <paramref name="start"/> inside this block.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">start is outside 0..Count or minLength is not positive.</exception>
    public bool FindFreeRun(int start, int minLength, out int runStart) =>
        RefcountCodec.FindFreeRun(_data, _order, start, minLength, out runStart);

    /// <summary>Number of free entries at the end of the block (a run that may continue into the next block).</summary>
    public int TrailingFreeCount() => RefcountCodec.TrailingFreeCount(_data, _order);

    /// <summary>Number of entries with a non-zero refcount.</summary>
    public int CountNonZero() => RefcountCodec.CountNonZero(_data, _order);
}

/// <summary>A read-only view of one refcount block for refcount_order 0–6.</summary>
public readonly ref struct ReadOnlyRefcountBlock
{
    private readonly ReadOnlySpan<byte> _data;
    private readonly int _order;

    /// <summary>Wraps a block.</summary>
    /// <exception cref="ArgumentOutOfRangeException">refcountOrder is outside 0..6.</exception>
    public ReadOnlyRefcountBlock(ReadOnlySpan<byte> block, int refcountOrder)
    {
        RefcountCodec.CheckOrder(refcountOrder);
        _data = block;
        _order = refcountOrder;
    }

    /// <summary>The block bytes.</summary>
    public ReadOnlySpan<byte> Data => _data;

    /// <summary>log2 of the width in bits.</summary>
    public int RefcountOrder => _order;

    /// <summary>Width in bits.</summary>
    public int RefcountBits => 1 << _order;

    /// <summary>Number of entries.</summary>
    public int Count => RefcountCodec.EntryCount(_data.Length, _order);

    /// <summary>Largest storable refcount.</summary>
    public ulong MaxValue => RefcountCodec.MaxValue(_order);

    /// <summary>The refcount at <paramref name="index"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is outside the block.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Get(int index)
    {
        if ((uint)index >= (uint)Count) ThrowHelper.ThrowIndexArgument(nameof(index), index, Count);
        return RefcountCodec.Get(_data, _order, index);
    }

    /// <inheritdoc cref="RefcountBlock.IndexOfNonZero"/>
    public int IndexOfNonZero(int start = 0) => RefcountCodec.IndexOfNonZero(_data, _order, start);

    /// <inheritdoc cref="RefcountBlock.IndexOfZero"/>
    public int IndexOfZero(int start = 0) => RefcountCodec.IndexOfZero(_data, _order, start);

    /// <inheritdoc cref="RefcountBlock.CountFree"/>
    public int CountFree(int start, int maxLength = int.MaxValue) => RefcountCodec.CountFree(_data, _order, start, maxLength);

    /// <inheritdoc cref="RefcountBlock.FindFreeRun"/>
    public bool FindFreeRun(int start, int minLength, out int runStart) =>
        RefcountCodec.FindFreeRun(_data, _order, start, minLength, out runStart);

    /// <inheritdoc cref="RefcountBlock.TrailingFreeCount"/>
    public int TrailingFreeCount() => RefcountCodec.TrailingFreeCount(_data, _order);

    /// <inheritdoc cref="RefcountBlock.CountNonZero"/>
    public int CountNonZero() => RefcountCodec.CountNonZero(_data, _order);
}
