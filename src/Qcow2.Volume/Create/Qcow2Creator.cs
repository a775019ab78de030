using System.Buffers.Binary;
using System.Text;
using Qcow2.Spans;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume;

/// <summary>
/// Writes a new, complete qcow2 image: header and header extensions as QEMU writes them, a
/// refcount table and blocks that describe every cluster in use (themselves included), the L1
/// table, and for preallocation the L2 tables and data clusters.
/// </summary>
/// <remarks>
/// Layout: cluster 0 the header, then the refcount table, the refcount blocks, the L1 table, the
/// L2 tables and the data clusters, each contiguous. For images whose refcounts fit one block
/// this is byte for byte what <c>qemu-img create</c> writes (refcount table at cluster 1, its
/// block at 2, L1 at 3); larger images differ only in where the refcount structures sit.
/// </remarks>
public static class Qcow2Creator
{
    private const int FullZeroChunk = 1 << 20;

    /// <summary>
    /// Creates the image file at <paramref name="path"/> (replacing an existing file) and, when the
    /// options name an external data file, that file too (replacing an existing file).
    /// </summary>
    /// <remarks>
    /// A relative <see cref="Qcow2CreateOptions.DataFile"/> name is created where
    /// <c>qemu-img create</c> creates it: relative to <paramref name="dataFileDirectory"/>, by default
    /// the process's current directory (not the image's directory), and it is stored in the image as
    /// given. Opening looks for it beside the image first, then from the current directory
    /// (<see cref="ImageFileResolver.ResolveDataFile"/>), so creation refuses when a different file of
    /// that name already lies beside the image: the image would open that file instead.
    /// </remarks>
    /// <param name="path">The image file.</param>
    /// <param name="options">The image's options.</param>
    /// <param name="dataFileDirectory">The directory a relative data file name is created in; null for the current directory, as qemu-img.</param>
    /// <exception cref="ArgumentException">Invalid options (qemu-img's messages), or a data file that is the image itself.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The data file name uses a protocol other than <c>file:</c>.</exception>
    /// <exception cref="IOException">The files cannot be written, or a different file of the data file's name lies beside the image.</exception>
    public static void Create(string path, Qcow2CreateOptions options, string? dataFileDirectory = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(options);
        if (dataFileDirectory is { Length: 0 }) throw new ArgumentException("The data file directory is empty.", nameof(dataFileDirectory));
        options.Validate();
        _ = ComputeLayout(options); // refuse before any file is touched
        string? dataPath = options.DataFile is null ? null : DataFilePath(path, options.DataFile, dataFileDirectory);
        bool done = false, imageCreated = false, dataCreated = false;
        FileStorage? image = null, data = null;
        try
        {
            image = FileStorage.Create(path);
            imageCreated = true;
            if (dataPath is not null)
            {
                data = FileStorage.Create(dataPath);
                dataCreated = true;
            }
            Create(image, options, data);
            done = true;
        }
        finally
        {
            image?.Dispose();
            data?.Dispose();
            if (!done)
            {
                if (imageCreated) TryDelete(path);
                if (dataCreated) TryDelete(dataPath!);
            }
        }
    }

    /// <summary>
    /// Writes a new image into <paramref name="storage"/> (whose previous contents are discarded).
    /// When <paramref name="dataFile"/> is given it is the external data file the options name: it
    /// is sized to the virtual size (and preallocated as asked); without it only the name is recorded.
    /// </summary>
    /// <exception cref="ArgumentException">Invalid options, or a data file storage without <see cref="Qcow2CreateOptions.DataFile"/>.</exception>
    /// <exception cref="NotSupportedException">A storage is read-only.</exception>
    /// <exception cref="IOException">The storage fails.</exception>
    public static void Create(IStorage storage, Qcow2CreateOptions options, IStorage? dataFile = null)
    {
        ArgumentNullException.ThrowIfNull(storage);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (dataFile is not null && options.DataFile is null)
            throw new ArgumentException("A data file storage was given but the options name no data file.", nameof(dataFile));
        if (!storage.CanWrite) throw new NotSupportedException($"{storage.Name} is read-only.");
        var layout = ComputeLayout(options);
        int cs = layout.ClusterSize;

        storage.SetLength(0);
        var cluster = new byte[cs];

        WriteRefcountTable(storage, layout);
        WriteRefcountBlocks(storage, layout, cluster);
        if (layout.Preallocated) WriteL1AndL2(storage, layout, options, cluster);

        // The L1 table of an image without preallocation is all zeros: the length covers it.
        long end = layout.FileLength;
        switch (options.Preallocation)
        {
            case Preallocation.Falloc when options.DataFile is null && storage is FileStorage fs:
                fs.Allocate(layout.DataOffset, layout.DataClusters * cs);
                break;
            case Preallocation.Full when options.DataFile is null:
                WriteZeros(storage, layout.DataOffset, layout.DataClusters * cs);
                break;
        }
        if (storage.Length < end) storage.SetLength(end);

        // Header last, so a half-written image never carries a valid-looking header.
        Array.Clear(cluster);
        WriteHeaderCluster(cluster, layout, options);
        storage.Write(0, cluster);

        if (dataFile is not null)
        {
            PrepareDataFile(dataFile, options.Preallocation, layout.Size);
            dataFile.Flush();
        }
        storage.Flush();
    }

    /// <summary>Where everything goes in a new image (exposed for tests and <c>measure</c>-like callers).</summary>
    internal static CreateLayout ComputeLayout(Qcow2CreateOptions o)
    {
        int clusterBits = System.Numerics.BitOperations.Log2((uint)o.ClusterSize);
        var geometry = ClusterGeometry.Create(clusterBits, o.ExtendedL2);
        int refcountOrder = System.Numerics.BitOperations.Log2((uint)o.RefcountBits);
        long cs = geometry.ClusterSize;
        long size = (o.Size + 511) & ~511L;

        long l1Entries = size == 0 ? 0 : (size - 1) / geometry.BytesPerL2Table + 1;
        if (l1Entries > Qcow2Limits.MaxL1Entries)
            throw new ArgumentException(Qcow2CreateOptions.TooLarge, nameof(o.Size));
        long l1Clusters = CeilDiv(l1Entries * 8, cs);
        bool preallocated = o.Preallocation != Preallocation.Off || o.DataFileRaw;
        bool external = o.DataFile is not null;
        long l2Tables = preallocated ? l1Entries : 0;
        long dataClusters = preallocated && !external ? CeilDiv(size, cs) : 0;
        long fixedClusters = 1 + l1Clusters + l2Tables + dataClusters;

        // The refcount blocks count themselves and the table: iterate to the fixed point.
        long entriesPerBlock = (cs * 8) >> refcountOrder;
        long tableClusters = 1, blocks = 0;
        while (true)
        {
            long total = fixedClusters + tableClusters + blocks;
            long needBlocks = CeilDiv(total, entriesPerBlock);
            long needTable = Math.Max(1, CeilDiv(needBlocks * 8, cs));
            if (needBlocks == blocks && needTable == tableClusters) break;
            blocks = needBlocks;
            tableClusters = needTable;
        }
        if (tableClusters * cs > Qcow2Limits.MaxRefcountTableSize)
            throw new ArgumentException(Qcow2CreateOptions.TooLarge, nameof(o.Size));

        long reftable = cs;
        long refblocks = reftable + tableClusters * cs;
        long l1 = refblocks + blocks * cs;
        long l2 = l1 + l1Clusters * cs;
        long data = l2 + l2Tables * cs;
        long totalClusters = fixedClusters + tableClusters + blocks;
        long fileLength = preallocated
            ? totalClusters * cs
            : l1Entries > 0 ? l1 + l1Entries * 8 : l1;
        return new CreateLayout(geometry, refcountOrder, size, preallocated,
            reftable, (int)tableClusters, refblocks, blocks,
            l1Entries == 0 ? 0 : l1, l1Entries, l2, l2Tables, data, dataClusters, totalClusters, fileLength);
    }

    private static void WriteRefcountTable(IStorage storage, CreateLayout layout)
    {
        var table = new byte[layout.RefcountTableClusters * layout.ClusterSize];
        for (long i = 0; i < layout.RefcountBlocks; i++)
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan((int)(i * 8)), (ulong)(layout.RefcountBlocksOffset + i * layout.ClusterSize));
        storage.Write(layout.RefcountTableOffset, table);
    }

    private static void WriteRefcountBlocks(IStorage storage, CreateLayout layout, byte[] cluster)
    {
        // Clusters 0 .. TotalClusters-1 are all in use once: full blocks of ones, then a partial one.
        int perBlock = (layout.ClusterSize * 8) >> layout.RefcountOrder;
        Array.Clear(cluster);
        var block = new RefcountBlock(cluster, layout.RefcountOrder);
        for (int i = 0; i < perBlock; i++) block.TrySet(i, 1);
        long remaining = layout.TotalClusters;
        for (long b = 0; b < layout.RefcountBlocks; b++, remaining -= perBlock)
        {
            if (remaining < perBlock)
            {
                for (int i = (int)remaining; i < perBlock; i++) block.TrySet(i, 0);
            }
            storage.Write(layout.RefcountBlocksOffset + b * layout.ClusterSize, cluster);
        }
    }

    private static void WriteL1AndL2(IStorage storage, CreateLayout layout, Qcow2CreateOptions o, byte[] cluster)
    {
        int cs = layout.ClusterSize;
        bool external = o.DataFile is not null;
        int entrySize = layout.Geometry.L2EntrySize;
        int perTable = layout.Geometry.L2Entries;
        long guestClusters = CeilDiv(layout.Size, cs);

        // L1: one cluster at a time, every entry pointing at its preallocated L2 table.
        int l1PerCluster = cs / 8;
        for (long first = 0; first < layout.L1Entries; first += l1PerCluster)
        {
            Array.Clear(cluster);
            int n = (int)Math.Min(l1PerCluster, layout.L1Entries - first);
            for (int i = 0; i < n; i++)
            {
                long l2 = layout.L2Offset + (first + i) * cs;
                BinaryPrimitives.WriteUInt64BigEndian(cluster.AsSpan(i * 8), (ulong)l2 | L1Entry.CopiedFlag);
            }
            storage.Write(layout.L1Offset + first * 8, cluster.AsSpan(0, n * 8));
        }

        // L2: standard entries "offset | COPIED"; extended entries the same with an empty
        // subcluster bitmap (QEMU leaves the subclusters unallocated so a backing file shows through).
        for (long t = 0; t < layout.L2Tables; t++)
        {
            Array.Clear(cluster);
            long firstCluster = t * perTable;
            int n = (int)Math.Min(perTable, guestClusters - firstCluster);
            for (int i = 0; i < n; i++)
            {
                long guest = (firstCluster + i) * cs;
                long host = external ? guest : layout.DataOffset + guest;
                BinaryPrimitives.WriteUInt64BigEndian(cluster.AsSpan(i * entrySize), (ulong)host | L2Entry.CopiedFlag);
            }
            storage.Write(layout.L2Offset + t * cs, cluster);
        }
    }

    private static void WriteHeaderCluster(Span<byte> cluster, CreateLayout layout, Qcow2CreateOptions o)
    {
        int version = o.Version;
        var h = new Qcow2Header
        {
            Version = (uint)version,
            ClusterBits = (uint)layout.Geometry.ClusterBits,
            Size = (ulong)layout.Size,
            L1Size = (uint)layout.L1Entries,
            L1TableOffset = (ulong)layout.L1Offset,
            RefcountTableOffset = (ulong)layout.RefcountTableOffset,
            RefcountTableClusters = (uint)layout.RefcountTableClusters,
            RefcountOrder = (uint)layout.RefcountOrder,
        };
        if (version >= 3)
        {
            h.HeaderLength = Qcow2Constants.HeaderLengthV3WithCompressionType;
            h.CompressionType = o.CompressionType;
            if (o.DataFile is not null) h.IncompatibleFeatures |= IncompatibleFeatures.ExternalDataFile;
            if (o.CompressionType != CompressionType.Zlib) h.IncompatibleFeatures |= IncompatibleFeatures.CompressionType;
            if (o.ExtendedL2) h.IncompatibleFeatures |= IncompatibleFeatures.ExtendedL2;
            if (o.LazyRefcounts) h.CompatibleFeatures |= CompatibleFeatures.LazyRefcounts;
            if (o.DataFileRaw) h.AutoclearFeatures |= AutoclearFeatures.DataFileRaw;
        }

        // Extensions in QEMU's order: backing format, data file name, feature name table (version 3,
        // clusters above 4 KiB only: QEMU leaves it out where it would crowd the backing file name),
        // end marker; then the backing file name itself.
        int pos = h.EncodedLength;
        int limit = cluster.Length;
        if (o.BackingFile is not null && o.BackingFormat is not null)
            pos = AddExtension(cluster, pos, Qcow2Constants.ExtensionBackingFormat, Encoding.UTF8.GetBytes(o.BackingFormat));
        if (o.DataFile is not null)
            pos = AddExtension(cluster, pos, Qcow2Constants.ExtensionExternalDataFile, Encoding.UTF8.GetBytes(StoredDataFileName(o.DataFile)));
        if (version >= 3 && layout.ClusterSize > 4096)
        {
            Span<byte> table = stackalloc byte[FeatureTableEntries.Length * Qcow2Constants.FeatureNameEntrySize];
            for (int i = 0; i < FeatureTableEntries.Length; i++)
            {
                var (type, bit) = FeatureTableEntries[i];
                FeatureNameTable.WriteEntry(table[(i * Qcow2Constants.FeatureNameEntrySize)..], type, bit,
                    Encoding.ASCII.GetBytes(FeatureBits.GetKnownName(type, bit)!));
            }
            pos = AddExtension(cluster, pos, Qcow2Constants.ExtensionFeatureNameTable, table);
        }
        pos = AddExtension(cluster, pos, Qcow2Constants.ExtensionEnd, ReadOnlySpan<byte>.Empty);
        if (o.BackingFile is not null)
        {
            var name = Encoding.UTF8.GetBytes(o.BackingFile);
            if (pos + name.Length > limit)
                throw new ArgumentException("The header extensions and the backing file name do not fit in the header cluster.", nameof(o.BackingFile));
            name.CopyTo(cluster[pos..]);
            h.BackingFileOffset = (ulong)pos;
            h.BackingFileSize = (uint)name.Length;
        }
        h.WriteTo(cluster);
    }

    /// <summary>The feature name table QEMU 7.2 writes, in its order.</summary>
    private static readonly (FeatureType Type, int Bit)[] FeatureTableEntries =
    [
        (FeatureType.Incompatible, 0),
        (FeatureType.Incompatible, 1),
        (FeatureType.Incompatible, 2),
        (FeatureType.Incompatible, 3),
        (FeatureType.Incompatible, 4),
        (FeatureType.Compatible, 0),
        (FeatureType.Autoclear, 0),
        (FeatureType.Autoclear, 1),
    ];

    private static int AddExtension(Span<byte> cluster, int pos, uint type, ReadOnlySpan<byte> data)
    {
        int padded = (data.Length + 7) & ~7;
        if ((long)pos + 8 + padded > cluster.Length)
            throw new ArgumentException("The header extensions do not fit in the header cluster (use a larger cluster size or shorter names).");
        BinaryPrimitives.WriteUInt32BigEndian(cluster[pos..], type);
        BinaryPrimitives.WriteUInt32BigEndian(cluster[(pos + 4)..], (uint)data.Length);
        data.CopyTo(cluster[(pos + 8)..]);
        return pos + 8 + padded;
    }

    private static void PrepareDataFile(IStorage dataFile, Preallocation mode, long size)
    {
        if (!dataFile.CanWrite) throw new NotSupportedException($"{dataFile.Name} is read-only.");
        dataFile.SetLength(0);
        switch (mode)
        {
            case Preallocation.Falloc when dataFile is FileStorage fs:
                fs.Allocate(0, size);
                break;
            case Preallocation.Full:
                WriteZeros(dataFile, 0, size);
                break;
        }
        if (dataFile.Length != size) dataFile.SetLength(size);
    }

    private static void WriteZeros(IStorage storage, long offset, long length)
    {
        if (length <= 0) return;
        var zeros = new byte[(int)Math.Min(FullZeroChunk, length)];
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(zeros.Length, length - done);
            storage.Write(offset + done, zeros.AsSpan(0, n));
            done += n;
        }
    }

    /// <summary>
    /// Where a new image's data file is created: an absolute name as it is, a relative one from
    /// <paramref name="baseDirectory"/> (the current directory when null), as qemu-img creates it.
    /// Refused when it is the image itself, or when a different file of that name lies beside the
    /// image (opening would take that one, <see cref="ImageFileResolver.ResolveDataFile"/>).
    /// </summary>
    private static string DataFilePath(string imagePath, string name, string? baseDirectory)
    {
        string dir = baseDirectory is null ? Directory.GetCurrentDirectory() : Path.GetFullPath(baseDirectory);
        // Resolve validates the name (NUL, protocols) and drops a file: prefix.
        string created = ImageFileResolver.Resolve(Path.Combine(dir, "image"), name);
        string image = ImageFileResolver.Canonicalize(imagePath);
        if (string.Equals(ImageFileResolver.Canonicalize(created), image, StringComparison.Ordinal))
            throw new ArgumentException("The data file cannot be the image file itself.", "options");
        string besideImage = ImageFileResolver.Resolve(imagePath, name);
        if (File.Exists(besideImage)
            && !string.Equals(ImageFileResolver.Canonicalize(besideImage), ImageFileResolver.Canonicalize(created), StringComparison.Ordinal))
        {
            throw new IOException(
                $"The data file '{name}' would be created at '{created}' (relative names are taken from the current directory, as qemu-img does), " +
                $"but '{besideImage}' beside the image has that name and would be opened as the image's data file instead; " +
                "remove it, or give the data file an absolute name.");
        }
        return created;
    }

    /// <summary>The data file name as the image stores it: as given, less a <c>file:</c> prefix (as qemu-img stores it).</summary>
    private static string StoredDataFileName(string name) =>
        name.StartsWith("file:", StringComparison.Ordinal) ? name["file:".Length..] : name;

    private static long CeilDiv(long a, long b) => a == 0 ? 0 : (a - 1) / b + 1;

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>The placement of every structure in a new image (byte offsets; counts in clusters or entries).</summary>
internal readonly record struct CreateLayout(
    ClusterGeometry Geometry,
    int RefcountOrder,
    long Size,
    bool Preallocated,
    long RefcountTableOffset,
    int RefcountTableClusters,
    long RefcountBlocksOffset,
    long RefcountBlocks,
    long L1Offset,
    long L1Entries,
    long L2Offset,
    long L2Tables,
    long DataOffset,
    long DataClusters,
    long TotalClusters,
    long FileLength)
{
    public int ClusterSize => Geometry.ClusterSize;
}
