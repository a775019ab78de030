using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Qcow2.Spans;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Operations;

/// <summary>
/// QEMU's test for a metadata-preallocated qcow2 file: more clusters have a non-zero refcount than
/// the file occupies on disk (by a margin: at least max(occupied × 10/9, occupied + 2)). Only such
/// images have their data clusters' holes reported as zero by QEMU's block status.
/// </summary>
internal static partial class MetadataPreallocation
{
    private const int HeaderProbeSize = 4096;

    /// <summary>True when the qcow2 file in <paramref name="file"/> looks metadata-preallocated; false when it does not or cannot be read.</summary>
    public static bool Detect(FileStorage file)
    {
        try
        {
            return DetectCore(file);
        }
        catch (Exception e) when (e is Qcow2CorruptImageException or Qcow2UnsupportedImageException or IOException or ArgumentException)
        {
            return false;
        }
    }

    private static bool DetectCore(FileStorage file)
    {
        var head = new byte[HeaderProbeSize];
        int n = file.Read(0, head);
        if (!Qcow2Header.TryParse(head.AsSpan(0, n), out var header) || header is null) return false;
        if (!header.TryGetRefcountGeometry(out var geometry)) return false;
        int clusterSize = header.ClusterSize;
        if (clusterSize == 0) return false;
        long occupied = AllocatedBytes(file.Name);
        if (occupied < 0) return false;
        long realClusters = occupied / clusterSize;
        long threshold = Math.Max(realClusters * 10 / 9, realClusters + 2);
        long fileLength = file.Length;
        long endCluster = (fileLength + clusterSize - 1) / clusterSize;

        long tableBytes = (long)header.RefcountTableClusters * clusterSize;
        if (tableBytes <= 0 || tableBytes > Qcow2Limits.MaxRefcountTableSize) return false;
        var table = new byte[tableBytes];
        if (file.Read((long)header.RefcountTableOffset, table) != table.Length) return false;
        var block = new byte[clusterSize];
        long perBlock = geometry.EntriesPerBlock;
        long count = 0;
        for (long b = 0; b * perBlock < endCluster && b * 8 < table.Length; b++)
        {
            long blockOffset = (long)(BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan((int)(b * 8))) & RefcountTableEntry.OffsetMask);
            if (blockOffset == 0) continue;
            block.AsSpan().Clear();
            file.Read(blockOffset, block);
            var rb = new ReadOnlyRefcountBlock(block, geometry.RefcountOrder);
            int entries = (int)Math.Min(perBlock, endCluster - b * perBlock);
            for (int i = 0; i < entries; i++)
            {
                if (rb.Get(i) != 0 && ++count >= threshold) return true;
            }
        }
        return false;
    }

    /// <summary>Bytes the file occupies on disk (st_blocks × 512), or -1 when unknown.</summary>
    private static unsafe long AllocatedBytes(string path)
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture is not (Architecture.X64 or Architecture.Arm64)) return -1;
        // struct stat of glibc on x86_64 and aarch64 keeps st_blocks at byte 64.
        byte* buffer = stackalloc byte[256];
        return Stat(path, buffer) == 0 ? BinaryPrimitives.ReadInt64LittleEndian(new ReadOnlySpan<byte>(buffer + 64, 8)) * 512 : -1;
    }

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Stat(string path, byte* buffer);
}
