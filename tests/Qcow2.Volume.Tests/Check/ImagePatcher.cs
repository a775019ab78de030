using System.Buffers.Binary;

namespace Qcow2.Volume.Tests.Check;

/// <summary>
/// Damages a qcow2 file in place for the check tests: locates the L1/L2 tables, refcount table and
/// blocks and the snapshot table through the header (its own small reader, independent of the
/// code under test) and patches single entries.
/// </summary>
public sealed class ImagePatcher : IDisposable
{
    private readonly FileStream _file;

    public ImagePatcher(string path)
    {
        _file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        Version = (int)U32(4);
        ClusterBits = (int)U32(20);
        L1Size = (int)U32(36);
        L1Offset = (long)U64(40);
        RefcountTableOffset = (long)U64(48);
        SnapshotsOffset = (long)U64(64);
        RefcountOrder = Version >= 3 ? (int)U32(96) : 4;
        ExtendedL2 = Version >= 3 && (U64(72) & 16) != 0;
    }

    public int Version { get; }
    public int ClusterBits { get; }
    public long ClusterSize => 1L << ClusterBits;
    public int L1Size { get; }
    public long L1Offset { get; }
    public long RefcountTableOffset { get; }
    public long SnapshotsOffset { get; }
    public int RefcountOrder { get; }
    public bool ExtendedL2 { get; }
    public int L2EntrySize => ExtendedL2 ? 16 : 8;
    public long FileLength => _file.Length;

    public ulong U64(long offset)
    {
        Span<byte> b = stackalloc byte[8];
        _file.Position = offset;
        _file.ReadExactly(b);
        return BinaryPrimitives.ReadUInt64BigEndian(b);
    }

    public uint U32(long offset)
    {
        Span<byte> b = stackalloc byte[4];
        _file.Position = offset;
        _file.ReadExactly(b);
        return BinaryPrimitives.ReadUInt32BigEndian(b);
    }

    public void WriteU64(long offset, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        _file.Position = offset;
        _file.Write(b);
    }

    public void WriteU32(long offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, value);
        _file.Position = offset;
        _file.Write(b);
    }

    public ulong L1(int index) => U64(L1Offset + index * 8L);
    public void SetL1(int index, ulong value) => WriteU64(L1Offset + index * 8L, value);

    public long L2TableOffset(int l1Index) => (long)(L1(l1Index) & 0x00ff_ffff_ffff_fe00UL);
    public long L2EntryOffset(int l1Index, int index) => L2TableOffset(l1Index) + (long)index * L2EntrySize;
    public ulong L2(int l1Index, int index) => U64(L2EntryOffset(l1Index, index));
    public void SetL2(int l1Index, int index, ulong value) => WriteU64(L2EntryOffset(l1Index, index), value);
    public ulong L2Bitmap(int l1Index, int index) => U64(L2EntryOffset(l1Index, index) + 8);
    public void SetL2Bitmap(int l1Index, int index, ulong value) => WriteU64(L2EntryOffset(l1Index, index) + 8, value);

    public ulong RefcountTableEntry(int index) => U64(RefcountTableOffset + index * 8L);
    public void SetRefcountTableEntry(int index, ulong value) => WriteU64(RefcountTableOffset + index * 8L, value);

    private (long ByteOffset, int Shift, int Bits) RefcountLocation(long cluster)
    {
        int bits = 1 << RefcountOrder;
        long perBlock = ClusterSize * 8 / bits;
        long block = (long)(RefcountTableEntry((int)(cluster / perBlock)) & ~0x1ffUL);
        if (block == 0) throw new InvalidOperationException($"cluster {cluster} has no refcount block");
        long bitIndex = (cluster % perBlock) * bits;
        return (block + bitIndex / 8, bits >= 8 ? 0 : (int)(bitIndex % 8), bits);
    }

    public ulong Refcount(long cluster)
    {
        var (at, shift, bits) = RefcountLocation(cluster);
        if (bits < 8)
        {
            _file.Position = at;
            return (ulong)((_file.ReadByte() >> shift) & ((1 << bits) - 1));
        }
        var b = new byte[bits / 8];
        _file.Position = at;
        _file.ReadExactly(b);
        ulong v = 0;
        foreach (byte x in b) v = (v << 8) | x;
        return v;
    }

    public void SetRefcount(long cluster, ulong value)
    {
        var (at, shift, bits) = RefcountLocation(cluster);
        if (bits < 8)
        {
            _file.Position = at;
            int old = _file.ReadByte();
            int mask = ((1 << bits) - 1) << shift;
            _file.Position = at;
            _file.WriteByte((byte)((old & ~mask) | (((int)value << shift) & mask)));
            return;
        }
        var b = new byte[bits / 8];
        for (int i = b.Length - 1; i >= 0; i--) { b[i] = (byte)value; value >>= 8; }
        _file.Position = at;
        _file.Write(b);
    }

    /// <summary>The first L2 entry (over all L1 entries of the active image) that satisfies the predicate.</summary>
    public (int L1Index, int Index) Find(Func<ulong, bool> predicate)
    {
        int entries = (int)(ClusterSize / L2EntrySize);
        for (int t = 0; t < L1Size; t++)
        {
            if (L2TableOffset(t) == 0) continue;
            for (int i = 0; i < entries; i++)
                if (predicate(L2(t, i))) return (t, i);
        }
        throw new InvalidOperationException("no matching L2 entry");
    }

    /// <summary>The first L2 entry satisfying the predicate.</summary>
    public ulong Entry(Func<ulong, bool> predicate)
    {
        var (t, i) = Find(predicate);
        return L2(t, i);
    }

    /// <summary>Rewrites the first L2 entry satisfying the predicate.</summary>
    public void Patch(Func<ulong, bool> predicate, Func<ulong, ulong> change)
    {
        var (t, i) = Find(predicate);
        SetL2(t, i, change(L2(t, i)));
    }

    /// <summary>Rewrites the subcluster bitmap of the first extended L2 entry satisfying the predicate.</summary>
    public void PatchBitmap(Func<ulong, bool> predicate, Func<ulong, ulong> change)
    {
        var (t, i) = Find(predicate);
        SetL2Bitmap(t, i, change(L2Bitmap(t, i)));
    }

    public void Dispose() => _file.Dispose();
}
