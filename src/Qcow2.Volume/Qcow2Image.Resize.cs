using System.Buffers.Binary;
using Qcow2.Spans;

namespace Qcow2.Volume;

// Growing the virtual disk, with L1 table growth (relocation) when the table no longer covers it.
public sealed partial class Qcow2Image
{
    /// <summary>
    /// Grows the virtual size to <paramref name="newSize"/> (a multiple of 512). The new space reads
    /// as zeros (or from the backing file where it reaches). The L1 table is relocated to a larger
    /// one when needed; the header switches to it only once it is durable.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The size is smaller than the current one or not a multiple of 512.</exception>
    /// <exception cref="InvalidOperationException">The image is read-only.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The L1 table would exceed QEMU's 32 MiB limit.</exception>
    public void Resize(long newSize)
    {
        ThrowIfNotWritable();
        if (newSize < Size || newSize % Qcow2Constants.SectorSize != 0)
            throw new ArgumentOutOfRangeException(nameof(newSize), newSize, "The new size must be at least the current size and a multiple of 512 (shrinking is not supported).");
        lock (_meta)
        {
            long needed = _geo.L1EntriesFor(newSize);
            if (needed > Qcow2Limits.MaxL1Entries)
                throw new Qcow2UnsupportedImageException("l1_size", "The L1 table for this size would exceed QEMU's 32 MiB limit.");
            if (needed > _l1.Length) GrowL1Table((int)needed);
            _dataFile?.SetLength(Math.Max(_dataFile.Length, newSize));
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(b, (ulong)newSize);
            WriteHeaderBytes(24, b);
            _file.Flush();
            Volatile.Write(ref _size, newSize);
            Info = Info with { VirtualSize = newSize };
        }
    }

    /// <summary>Moves the active L1 table to new clusters holding at least <paramref name="entries"/> (caller holds the lock).</summary>
    private void GrowL1Table(int entries)
    {
        // Everything the current L1 points at must be on disk before a new table refers to it.
        FlushMetadataLocked();
        int perCluster = _clusterSize / 8;
        int clusters = (entries + perCluster - 1) / perCluster;
        var newL1 = new ulong[(long)clusters * perCluster <= Qcow2Limits.MaxL1Entries ? clusters * perCluster : entries];
        Array.Copy(_l1, newL1, _l1.Length);
        long offset = AllocateClusters(clusters);
        for (int c = 0; c < clusters; c++) _metadataClusters.Add((offset >> _clusterBits) + c);
        PersistDataAndRefcounts();
        WriteZeroClusters(offset, clusters);
        WriteTableRange(offset, newL1, 0, _l1.Length == 0 ? 0 : _l1.Length - 1);
        _file.Flush();
        Span<byte> h = stackalloc byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(h, (uint)newL1.Length);
        BinaryPrimitives.WriteUInt64BigEndian(h[4..], (ulong)offset);
        WriteHeaderBytes(36, h);
        _file.Flush();
        long oldOffset = _l1Offset;
        int oldClusters = (int)((_l1.Length * 8L + _clusterSize - 1) >> _clusterBits);
        _l1 = newL1;
        _l1Offset = offset;
        _l1DirtyStart = int.MaxValue;
        _l1DirtyEnd = -1;
        // The header on disk no longer points at the old table.
        if (oldOffset != 0)
        {
            for (int c = 0; c < oldClusters; c++) AddToRefcount((oldOffset >> _clusterBits) + c, -1);
        }
    }
}
