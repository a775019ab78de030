using System.Buffers.Binary;
using System.Text;
using Qcow2.Spans;
using Qcow2.Spans.Layout;
using Qcow2.Volume.Caching;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Compression;
using Qcow2.Volume.Snapshots;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume;

/// <summary>
/// A qcow2 image: open, read, write, snapshots (read-only), block status. Split by concern:
/// this file holds open and state; <c>.Read.cs</c>, <c>.Write.cs</c>, <c>.Allocation.cs</c>,
/// <c>.Metadata.cs</c> (caches and write-back order), <c>.Snapshots.cs</c>, <c>.Stream.cs</c>.
/// </summary>
/// <remarks>
/// Thread-safe: any number of threads may read and write at once. Metadata (L1, L2 cache,
/// refcounts) is guarded by one lock held only for lookups and updates; data I/O runs outside it.
/// </remarks>
public sealed partial class Qcow2Image : IDiskImage
{
    private readonly object _meta = new();
    private readonly IStorage _file;
    private readonly bool _ownsFile;
    private readonly string? _path;
    private readonly Qcow2OpenOptions _options;
    private readonly ClusterGeometry _geo;
    private readonly RefcountGeometry _rc;
    private readonly int _clusterBits;
    private readonly int _clusterSize;
    private readonly byte[] _headerBuffer;
    private readonly int _headerLength;
    private readonly int _version;
    private ulong _incompatible;
    private readonly ulong _compatible;
    private ulong _autoclear;
    private readonly MetadataCache _l2Cache;
    private readonly MetadataCache _refCache;
    private readonly ICompressionCodec? _codec;
    private readonly CompressionType _compressionType;
    private readonly bool _isSnapshotView;
    private readonly List<SnapshotInfo> _snapshots = [];
    private readonly List<BitmapInfo> _bitmaps = [];
    private readonly List<uint> _unknownExtensions = [];

    private ulong[] _l1;
    private long _l1Offset;
    private ulong[] _refTable;
    private long _refTableOffset;
    private int _refTableClusters;
    private long _snapshotsOffset;
    private IDiskImage? _backing;
    private bool _ownsBacking;
    private IStorage? _dataFile;
    private bool _ownsDataFile;
    private bool _dataFileRaw;
    private string? _backingName;
    private string? _backingFormat;
    private string? _dataFileName;
    private bool _readOnly;
    private bool _corrupt;
    private int _disposed;

    /// <summary>"qcow2".</summary>
    public string Format => "qcow2";

    /// <inheritdoc/>
    public long Size => Volatile.Read(ref _size);

    private long _size;

    /// <inheritdoc/>
    public bool IsReadOnly => _readOnly;

    /// <summary>What the image declares about itself (as found at open).</summary>
    public Qcow2ImageInfo Info { get; private set; } = null!;

    /// <summary>The backing image, or null.</summary>
    public IDiskImage? Backing => _backing;

    /// <summary>The internal snapshots.</summary>
    public IReadOnlyList<SnapshotInfo> Snapshots => _snapshots;

    /// <summary>The persistent bitmaps (their content is neither read nor updated).</summary>
    public IReadOnlyList<BitmapInfo> Bitmaps => _bitmaps;

    /// <summary>Counters of the L2 slice cache.</summary>
    public CacheStatistics L2CacheStatistics => _l2Cache.Statistics;

    /// <summary>Counters of the refcount block cache.</summary>
    public CacheStatistics RefcountCacheStatistics => _refCache.Statistics;

    /// <summary>The image file's storage.</summary>
    internal IStorage Storage => _file;

    /// <summary>Whether corruption was detected while writing (the image is then read-only).</summary>
    public bool IsCorrupt => _corrupt;

    /// <summary>Opens the image file at <paramref name="path"/>.</summary>
    /// <exception cref="Qcow2CorruptImageException">The image is malformed.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The image uses something not supported, or names a file the policy refuses.</exception>
    /// <exception cref="FileNotFoundException">The image, its backing file or data file is missing.</exception>
    public static Qcow2Image Open(string path, Qcow2OpenOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= Qcow2OpenOptions.Default;
        var full = Path.GetFullPath(path);
        var storage = FileStorage.Open(full, writable: !options.ReadOnly);
        try
        {
            return new Qcow2Image(storage, ownsFile: true, full, options, depth: 0, visited: [ImageFileResolver.Canonicalize(full)]);
        }
        catch
        {
            storage.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens an image held by <paramref name="storage"/>. The storage stays the caller's (it is not
    /// disposed with the image). Files named inside the image are opened only if the policy allows
    /// (denied by default); relative names resolve against the current directory.
    /// </summary>
    /// <exception cref="Qcow2CorruptImageException">The image is malformed.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The image uses something not supported, or names a file the policy refuses.</exception>
    public static Qcow2Image Open(IStorage storage, Qcow2OpenOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(storage);
        options ??= Qcow2OpenOptions.Default;
        if (!storage.CanWrite && !options.ReadOnly) options = options with { ReadOnly = true };
        return new Qcow2Image(storage, ownsFile: false, path: null, options, depth: 0, visited: []);
    }

    private Qcow2Image(IStorage file, bool ownsFile, string? path, Qcow2OpenOptions options, int depth, HashSet<string> visited)
    {
        _file = file;
        _ownsFile = ownsFile;
        _path = path;
        _options = options;
        _readOnly = options.ReadOnly || !file.CanWrite;

        long fileLength = file.Length;
        Span<byte> first = stackalloc byte[Qcow2Constants.HeaderLengthV3WithCompressionType];
        first.Clear();
        int got = file.Read(0, first);
        if (got < Qcow2Constants.HeaderLengthV2)
            throw new Qcow2CorruptImageException("header", 0, (ulong)Math.Max(got, 0), "The file is too short to hold a qcow2 header.");
        var hv = HeaderReadOnlyView.Create(first);
        if (hv.Magic != Qcow2Constants.Magic)
            throw new Qcow2CorruptImageException("header.magic", 0, hv.Magic, "Not a qcow2 image (bad magic).");
        uint clusterBits = hv.ClusterBits;
        if (clusterBits < Qcow2Limits.MinClusterBits || clusterBits > Qcow2Limits.MaxClusterBits)
            throw new Qcow2UnsupportedImageException("cluster_size",
                $"Unsupported cluster_bits {clusterBits}: cluster sizes from 512 bytes to 2 MiB are supported.");

        // The header, its extensions and (usually) the backing file name live in the first cluster.
        _headerBuffer = new byte[1 << (int)clusterBits];
        file.Read(0, _headerBuffer);

        var header = Qcow2Header.Parse(_headerBuffer);
        _version = (int)header.Version;
        _headerLength = header.ExtensionsStart;
        _incompatible = (ulong)header.IncompatibleFeatures;
        _compatible = (ulong)header.CompatibleFeatures;
        _autoclear = (ulong)header.AutoclearFeatures;
        _clusterBits = (int)clusterBits;
        _clusterSize = 1 << _clusterBits;
        if (_version is 2 or 3)
        {
            ReadExtensions(header.ExtensionsEnd(_clusterSize), out var featureNames);
            ThrowOnUnknownIncompatible(featureNames);
        }
        HeaderValidator.ThrowIfInvalid(header, fileLength);
        if (_extensionError is not null) throw _extensionError;

        if (!header.TryGetClusterGeometry(out _geo))
            throw new Qcow2UnsupportedImageException("extended_l2", $"Extended L2 entries need clusters of at least 16 KiB (cluster_bits {clusterBits}).");
        if (!header.TryGetRefcountGeometry(out _rc))
            throw new Qcow2UnsupportedImageException("refcount_order", $"Unsupported refcount_order {header.RefcountOrder}.");
        _size = (long)header.Size;

        if (header.CryptMethod is not (Qcow2Constants.CryptNone or Qcow2Constants.CryptAes or Qcow2Constants.CryptLuks))
            throw new Qcow2UnsupportedImageException("encryption", $"Unknown encryption method (crypt_method {header.CryptMethod}).");
        _encryption = (CryptMethod)header.CryptMethod;
        byte[]? secret = _encryption == CryptMethod.None ? null : options.EncryptionSecret;
        if (_encryption != CryptMethod.None && secret is null && !_readOnly)
            throw new Qcow2UnsupportedImageException("encryption",
                $"Encrypted images (crypt_method {header.CryptMethod}) open read-write only with their secret (Qcow2OpenOptions.EncryptionSecret); without it, read-only for their metadata.");
        if (_encryption == CryptMethod.Luks) _luks = ReadLuksHeader(fileLength);
        // Unlocked before anything is written, so a refused secret leaves the file untouched.
        if (secret is not null) UnlockEncryption(secret);

        _compressionType = header.HasCompressionTypeField ? header.CompressionType : CompressionType.Zlib;
        if (_compressionType is not (CompressionType.Zlib or CompressionType.Zstd))
            throw new Qcow2UnsupportedImageException("compression_type", $"Unsupported compression type {(byte)_compressionType}.");
        _codec = TryGetCodec(_compressionType);

        _corrupt = header.IsCorrupt;
        if (_corrupt && !_readOnly)
            throw new Qcow2CorruptImageException("header.incompatible_features", 72, _incompatible,
                "The image is marked corrupt: it can only be opened read-only (repair it first).");
        _dataFileRaw = (_autoclear & (ulong)AutoclearFeatures.DataFileRaw) != 0;

        bool wasDirty = header.IsDirty;
        if (wasDirty && !_readOnly)
        {
            // Lazy refcounts after a crash: the refcounts on disk may be stale. Rebuild them before
            // anything is allocated, then re-read the header (a repair may move the refcount table).
            RepairDirtyImage();
            // Every table location comes from the repaired header from here on (the refcount
            // table at bytes 48-59 and the snapshot table at 60-71 may have moved).
            file.Read(0, _headerBuffer);
            header = Qcow2Header.Parse(_headerBuffer);
            HeaderValidator.ThrowIfInvalid(header, file.Length);
            _incompatible = (ulong)header.IncompatibleFeatures;
            _autoclear = (ulong)header.AutoclearFeatures;
            _corrupt = header.IsCorrupt;
            if (_corrupt)
                throw new Qcow2CorruptImageException("header.incompatible_features", 72, _incompatible,
                    "The image was marked corrupt while repairing it: it can only be opened read-only.");
        }

        // L1 table.
        _l1Offset = (long)header.L1TableOffset;
        _l1 = ReadTable(_l1Offset, (int)Math.Min(header.L1Size, int.MaxValue), "L1 table");
        for (int i = 0; i < _l1.Length; i++)
        {
            var e = new L1Entry(_l1[i]);
            if (e.Validate(_geo) != TableEntryStatus.Valid)
                throw new Qcow2CorruptImageException("L1 entry", _l1Offset + i * 8L, _l1[i], $"Invalid L1 entry ({e.Validate(_geo)}).");
        }
        if (_geo.L1EntriesFor(Size) > _l1.Length)
            throw new Qcow2CorruptImageException("header.l1_size", 36, (ulong)_l1.Length, "The L1 table is too small for the virtual size.");

        // Refcount table.
        _refTableOffset = (long)header.RefcountTableOffset;
        if (header.RefcountTableClusters > Qcow2Limits.MaxRefcountTableSize / _clusterSize + 1)
            throw new Qcow2CorruptImageException("header.refcount_table_clusters", 56, header.RefcountTableClusters, "The refcount table is too large.");
        _refTableClusters = (int)header.RefcountTableClusters;
        _refTable = ReadTable(_refTableOffset, _refTableClusters * (_clusterSize / 8), "refcount table");
        for (int i = 0; i < _refTable.Length; i++)
        {
            var e = new RefcountTableEntry(_refTable[i]);
            if (e.Validate(_geo) != TableEntryStatus.Valid)
                throw new Qcow2CorruptImageException("refcount table entry", _refTableOffset + i * 8L, _refTable[i], $"Invalid refcount table entry ({e.Validate(_geo)}).");
        }

        ReadSnapshotTable((int)Math.Min(header.SnapshotCount, int.MaxValue), (long)header.SnapshotsOffset);

        // Caches: QEMU's defaults are a cluster per entry, enough L2 to map the whole disk (at
        // most 32 MiB), four clusters of refcount blocks.
        int entrySize = options.L2CacheEntrySize == 0 ? _clusterSize : options.L2CacheEntrySize;
        if (entrySize < 512 || entrySize > _clusterSize || (entrySize & (entrySize - 1)) != 0)
            throw new ArgumentException($"L2CacheEntrySize must be a power of two from 512 to the cluster size ({_clusterSize}).", nameof(options));
        long l2Bytes = options.L2CacheSize > 0
            ? options.L2CacheSize
            : Math.Min(32L << 20, Math.Max(1, _geo.L1EntriesFor(Size)) * (long)_clusterSize);
        int l2Entries = (int)Math.Clamp(l2Bytes / entrySize, 2, (256L << 20) / entrySize);
        _l2Cache = new MetadataCache(entrySize, l2Entries, WriteBackL2Slice);
        long refBytes = options.RefcountCacheSize > 0 ? options.RefcountCacheSize : 4L * _clusterSize;
        int refEntries = (int)Math.Clamp(refBytes / _clusterSize, 2, (64L << 20) / _clusterSize);
        _refCache = new MetadataCache(_clusterSize, refEntries, WriteBackRefcountBlock);

        ReadBackingName(header);
        OpenDataFile();
        OpenBacking(depth, visited);

        if (!_readOnly) PrepareForWriting();

        Info = BuildInfo(wasDirty);
    }

    /// <summary>A read-only view of an internal snapshot sharing this image's files.</summary>
    private Qcow2Image(Qcow2Image parent, SnapshotInfo snapshot)
    {
        _file = parent._file;
        _path = parent._path;
        _options = parent._options;
        _readOnly = true;
        _isSnapshotView = true;
        _geo = parent._geo;
        _rc = parent._rc;
        _clusterBits = parent._clusterBits;
        _clusterSize = parent._clusterSize;
        _headerBuffer = parent._headerBuffer;
        _headerLength = parent._headerLength;
        _version = parent._version;
        _incompatible = parent._incompatible;
        _compatible = parent._compatible;
        _autoclear = parent._autoclear;
        _codec = parent._codec;
        _compressionType = parent._compressionType;
        _backing = parent._backing;
        _dataFile = parent._dataFile;
        _dataFileRaw = parent._dataFileRaw;
        _backingName = parent._backingName;
        _backingFormat = parent._backingFormat;
        _dataFileName = parent._dataFileName;
        _encryption = parent._encryption;
        _luks = parent._luks;
        _crypto = parent._crypto;
        _refTable = parent._refTable;
        _refTableOffset = parent._refTableOffset;
        _refTableClusters = parent._refTableClusters;
        _size = snapshot.VirtualSize;
        _l1Offset = snapshot.L1TableOffset;
        _l1 = ReadTable(snapshot.L1TableOffset, snapshot.L1Size, "snapshot L1 table");
        for (int i = 0; i < _l1.Length; i++)
        {
            var e = new L1Entry(_l1[i]);
            if (e.Validate(_geo) != TableEntryStatus.Valid)
                throw new Qcow2CorruptImageException("snapshot L1 entry", _l1Offset + i * 8L, _l1[i], $"Invalid L1 entry ({e.Validate(_geo)}).");
        }
        int entrySize = parent._l2Cache.EntrySize;
        _l2Cache = new MetadataCache(entrySize, Math.Max(2, parent._l2Cache.Capacity / 4), WriteBackL2Slice);
        _refCache = new MetadataCache(_clusterSize, 2, WriteBackRefcountBlock);
        Info = parent.Info with { VirtualSize = Size };
    }

    private static ICompressionCodec? TryGetCodec(CompressionType type)
    {
        try
        {
            return CompressionCodecs.Get(type);
        }
        catch (DllNotFoundException)
        {
            // Reported when a compressed cluster is actually met.
            return null;
        }
    }

    private ulong[] ReadTable(long offset, int entries, string what)
    {
        if (entries < 0 || entries > Qcow2Limits.MaxL1Entries)
            throw new Qcow2CorruptImageException(what, offset, (ulong)entries, $"The {what} has too many entries.");
        if (entries == 0) return [];
        if (offset <= 0 || !_geo.IsClusterAligned(offset))
            throw new Qcow2CorruptImageException(what, offset, (ulong)offset, $"The {what} offset is not cluster aligned or is zero.");
        long bytes = entries * 8L;
        if (offset > _file.Length || bytes > _file.Length - offset)
            throw new Qcow2CorruptImageException(what, offset, (ulong)entries, $"The {what} extends past the end of the file.");
        var raw = GC.AllocateUninitializedArray<byte>((int)bytes);
        int got = _file.Read(offset, raw);
        if (got < raw.Length) raw.AsSpan(Math.Max(got, 0)).Clear();
        var table = new ulong[entries];
        for (int i = 0; i < entries; i++) table[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8, 8));
        return table;
    }

    private void ReadExtensions(int end, out byte[]? featureNames)
    {
        featureNames = null;
        int start = _headerLength;
        if (end < start) end = start;
        var en = new HeaderExtensionEnumerator(_headerBuffer.AsSpan(0, end), start);
        foreach (var ext in en)
        {
            switch (ext.Type)
            {
                case Qcow2Constants.ExtensionBackingFormat:
                    _backingFormat = Encoding.UTF8.GetString(ext.Data);
                    break;
                case Qcow2Constants.ExtensionFeatureNameTable:
                    featureNames = ext.Data.ToArray();
                    break;
                case Qcow2Constants.ExtensionExternalDataFile:
                    _dataFileName = Encoding.UTF8.GetString(ext.Data);
                    break;
                case Qcow2Constants.ExtensionBitmaps:
                    ReadBitmapDirectory(ext.Data, ext.Offset + Qcow2Constants.HeaderExtensionHeaderSize);
                    break;
                case Qcow2Constants.ExtensionFullDiskEncryption:
                    if (ext.Data.Length >= 16)
                    {
                        _cryptHeaderOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(ext.Data), long.MaxValue);
                        _cryptHeaderLength = (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(ext.Data[8..]), long.MaxValue);
                    }
                    break;
                default:
                    _unknownExtensions.Add(ext.Type);
                    break;
            }
        }
        if (en.Error != HeaderExtensionError.None)
            _extensionError = new Qcow2CorruptImageException("header extension", en.ErrorOffset, 0, $"Malformed header extensions ({en.Error}).");
    }

    private void ThrowOnUnknownIncompatible(byte[]? featureNames)
    {
        ulong unknown = FeatureBits.UnknownIncompatible(_incompatible);
        if (unknown == 0) return;
        var names = new StringBuilder();
        for (int bit = 0; bit < 64; bit++)
        {
            if ((unknown & (1UL << bit)) == 0) continue;
            if (names.Length > 0) names.Append(", ");
            if (featureNames is not null && new FeatureNameTable(featureNames).TryGetName(FeatureType.Incompatible, bit, out var n))
                names.Append(Encoding.UTF8.GetString(n)).Append(" (bit ").Append(bit).Append(')');
            else
                names.Append("unknown bit ").Append(bit);
        }
        throw new Qcow2UnsupportedImageException("incompatible_features",
            $"The image uses incompatible features this toolkit does not support: {names}.");
    }

    private void ReadBitmapDirectory(ReadOnlySpan<byte> ext, long extOffset)
    {
        if (!BitmapsExtensionReadOnlyView.TryCreate(ext, out var bv))
            throw new Qcow2CorruptImageException("bitmaps extension", extOffset, (ulong)ext.Length, "The bitmaps extension is too short.");
        uint count = bv.NbBitmaps;
        ulong size = bv.BitmapDirectorySize;
        long offset = (long)bv.BitmapDirectoryOffset;
        if (count > Qcow2Limits.MaxBitmaps)
            throw new Qcow2CorruptImageException("bitmaps extension.nb_bitmaps", extOffset, count, "Too many bitmaps.");
        if (size > Qcow2Limits.MaxBitmapDirectorySize)
            throw new Qcow2CorruptImageException("bitmaps extension.bitmap_directory_size", extOffset + 8, size, "The bitmap directory is too large.");
        if (count == 0 || size == 0) return;
        if (offset <= 0 || (offset & (_clusterSize - 1)) != 0 || offset > _file.Length || (long)size > _file.Length - offset)
            throw new Qcow2CorruptImageException("bitmaps extension.bitmap_directory_offset", extOffset + 16, (ulong)offset, "The bitmap directory lies outside the file or is misaligned.");
        var dir = new byte[(int)size];
        _file.Read(offset, dir);
        _bitmapDirectoryOffset = offset;
        int pos = 0;
        for (uint i = 0; i < count; i++)
        {
            if (!BitmapDirectoryEntryReadOnlyView.TryCreate(dir.AsSpan(pos), out var e))
                throw new Qcow2CorruptImageException("bitmap directory entry", offset + pos, i, "The bitmap directory is truncated.");
            int nameSize = e.NameSize;
            long entryLen = BitmapDirectoryEntryView.SizeInBytes + (long)e.ExtraDataSize + nameSize;
            if (entryLen > dir.Length - pos || nameSize > Qcow2Limits.MaxBitmapNameLength)
                throw new Qcow2CorruptImageException("bitmap directory entry", offset + pos, e.ExtraDataSize, "The bitmap directory entry extends past the directory.");
            string name = Encoding.UTF8.GetString(dir, pos + BitmapDirectoryEntryView.SizeInBytes + (int)e.ExtraDataSize, nameSize);
            int granularityBits = e.GranularityBits;
            _bitmaps.Add(new BitmapInfo(name, granularityBits < 63 ? 1L << granularityBits : 0, e.Flags,
                (long)e.BitmapTableOffset, (int)Math.Min(e.BitmapTableSize, int.MaxValue)));
            _bitmapFlagOffsets.Add(offset + pos + BitmapDirectoryEntryView.FlagsOffset);
            pos += (int)((entryLen + 7) & ~7L);
            if (pos > dir.Length) pos = dir.Length;
        }
    }

    private long _bitmapDirectoryOffset;
    private Qcow2CorruptImageException? _extensionError;
    private readonly List<long> _bitmapFlagOffsets = [];

    private void ReadSnapshotTable(int count, long offset)
    {
        _snapshotsOffset = offset;
        if (count == 0) return;
        if ((uint)count > Qcow2Limits.MaxSnapshots)
            throw new Qcow2CorruptImageException("header.nb_snapshots", 60, (ulong)count, "Too many snapshots.");
        if (offset <= 0 || !_geo.IsClusterAligned(offset) || offset >= _file.Length)
            throw new Qcow2CorruptImageException("header.snapshots_offset", 64, (ulong)offset, "The snapshot table lies outside the file or is misaligned.");
        // The table's length is only known by walking it: read a little, grow while entries need more.
        long available = Math.Min(_file.Length - offset, Qcow2Limits.MaxSnapshotTableSize);
        var table = new byte[(int)Math.Min(available, 64 * 1024)];
        int got = _file.Read(offset, table);
        int pos = 0;
        for (int i = 0; i < count; i++)
        {
            const int maxEntry = 1024 + 2 * ushort.MaxValue + 40 + Qcow2Limits.MaxSnapshotExtraDataSize;
            if (table.Length - pos < maxEntry && table.Length < available)
            {
                var bigger = new byte[(int)Math.Min(available, Math.Max(table.Length * 2L, pos + 2L * maxEntry))];
                got = _file.Read(offset, bigger);
                table = bigger;
            }
            var span = table.AsSpan(0, Math.Max(got, 0));
            if (pos > span.Length || !SnapshotTableEntryReadOnlyView.TryCreate(span[pos..], out var e))
                throw new Qcow2CorruptImageException("snapshot table entry", offset + pos, (ulong)i, "The snapshot table is truncated.");
            long extra = e.ExtraDataSize;
            if (extra > Qcow2Limits.MaxSnapshotExtraDataSize)
                throw new Qcow2CorruptImageException("snapshot table entry.extra_data_size", offset + pos + 36, (ulong)extra, "The snapshot extra data is too large.");
            long len = SnapshotTableEntryView.SizeInBytes + extra + e.IdStringSize + e.NameSize;
            if (len > span.Length - pos)
                throw new Qcow2CorruptImageException("snapshot table entry", offset + pos, (ulong)len, "The snapshot table entry extends past the table.");
            var extraData = span.Slice(pos + SnapshotTableEntryView.SizeInBytes, (int)extra);
            long diskSize = Size;
            if (extra >= 16) diskSize = (long)BinaryPrimitives.ReadUInt64BigEndian(extraData.Slice(8, 8));
            int idPos = pos + SnapshotTableEntryView.SizeInBytes + (int)extra;
            string id = Encoding.UTF8.GetString(span.Slice(idPos, e.IdStringSize));
            string name = Encoding.UTF8.GetString(span.Slice(idPos + e.IdStringSize, e.NameSize));
            long vmState = extra >= 8 ? (long)BinaryPrimitives.ReadUInt64BigEndian(extraData[..8]) : e.VmStateSize;
            if (diskSize < 0) throw new Qcow2CorruptImageException("snapshot extra data.disk_size", offset + pos + 48, (ulong)diskSize, "Invalid snapshot disk size.");
            var date = DateTimeOffset.FromUnixTimeSeconds(e.DateSeconds).AddTicks(e.DateNanoseconds / 100);
            _snapshots.Add(new SnapshotInfo(id, name, diskSize, vmState, date, e.VmClockNanoseconds, (long)e.L1TableOffset, (int)Math.Min(e.L1Size, int.MaxValue)));
            pos += (int)((len + 7) & ~7L);
            if (pos > span.Length) pos = span.Length;
        }
        _snapshotTableLength = pos;
    }

    private int _snapshotTableLength;

    private void ReadBackingName(Qcow2Header header)
    {
        var name = header.GetBackingFileName(_headerBuffer);
        if (!name.IsEmpty) _backingName = Encoding.UTF8.GetString(name);
    }

    /// <summary>The path names inside this image are relative to: its file, or (storage without a path) the current directory.</summary>
    private string ReferringPath => _path ?? (Path.IsPathRooted(_file.Name) ? _file.Name : "");

    private void OpenDataFile()
    {
        bool hasDataFile = (_incompatible & (ulong)IncompatibleFeatures.ExternalDataFile) != 0;
        if (!hasDataFile)
        {
            if (_dataFileName is not null)
                throw new Qcow2CorruptImageException("header extension (external data file)", -1, 0, "A data file is named but the external data file feature bit is not set.");
            if (_options.DataFileStorage is not null)
                throw new ArgumentException("A data file storage was given but the image has no external data file.", "options");
            return;
        }
        if (_dataFileName is null)
            throw new Qcow2UnsupportedImageException("data-file", "The image uses an external data file but does not name it.");
        if (_options.DataFileStorage is { } given)
        {
            // Handed over by the caller, not named by the image: no policy check, and not ours to close.
            _dataFile = given;
            _ownsDataFile = false;
            if (!given.CanWrite && !_readOnly)
                throw new ArgumentException("The data file storage is read-only: open the image read-only.", "options");
            return;
        }
        string resolved = ImageFileResolver.ResolveDataFile(ReferringPath, _dataFileName);
        var request = new ExternalFileRequest(ExternalFileKind.DataFile, _dataFileName, resolved, ReferringPath);
        if (!_options.ExternalFilePolicy.IsAllowed(request))
            throw new Qcow2UnsupportedImageException("external-file",
                $"The image names the data file '{_dataFileName}' ({resolved}); the external file policy refuses to open it.");
        if (!File.Exists(resolved)) throw new FileNotFoundException($"The data file '{_dataFileName}' named by the image was not found.", resolved);
        _dataFile = FileStorage.Open(resolved, writable: !_readOnly);
        _ownsDataFile = true;
    }

    private void OpenBacking(int depth, HashSet<string> visited)
    {
        if (_backingName is null || !_options.OpenBackingChain) return;
        if (depth + 1 > _options.MaxChainDepth)
            throw new Qcow2UnsupportedImageException("backing-chain",
                $"The backing chain is deeper than {_options.MaxChainDepth} images.");
        string resolved = ImageFileResolver.Resolve(ReferringPath, _backingName);
        var request = new ExternalFileRequest(ExternalFileKind.Backing, _backingName, resolved, ReferringPath);
        if (!_options.ExternalFilePolicy.IsAllowed(request))
            throw new Qcow2UnsupportedImageException("external-file",
                $"The image names the backing file '{_backingName}' ({resolved}); the external file policy refuses to open it.");
        string full = ImageFileResolver.Canonicalize(resolved);
        if (!visited.Add(full))
            throw new Qcow2CorruptImageException("backing file", 8, 0, $"The backing chain loops back to '{full}'.");
        if (!File.Exists(full)) throw new FileNotFoundException($"The backing file '{_backingName}' named by the image was not found.", full);

        string? format = _options.BackingFormatOverride ?? _backingFormat;
        var storage = FileStorage.Open(full, writable: false);
        try
        {
            if (format is null)
            {
                Span<byte> magic = stackalloc byte[4];
                int n = storage.Read(0, magic);
                format = n == 4 && BinaryPrimitives.ReadUInt32BigEndian(magic) == Qcow2Constants.Magic ? "qcow2" : "raw";
            }
            if (format == "qcow2")
            {
                var opts = _options with { ReadOnly = true, BackingFormatOverride = null, DataFileStorage = null };
                if (_options.BackingSecretResolver is { } resolveSecret) opts = opts with { EncryptionSecret = resolveSecret(request) };
                _backing = new Qcow2Image(storage, ownsFile: true, full, opts, depth + 1, visited);
            }
            else if (format == "raw")
            {
                _backing = new RawBackingFile(storage);
            }
            else
            {
                throw new Qcow2UnsupportedImageException("backing_fmt", $"Unsupported backing file format '{format}'.");
            }
            _ownsBacking = true;
        }
        catch (Exception e)
        {
            storage.Dispose();
            // Say which file refused the secret (the deepest one, when the chain is longer).
            if (e is Crypto.Qcow2KeyException { BackingFile: null } key) throw new Crypto.Qcow2KeyException(key.Message, full, key);
            throw;
        }
    }

    private CryptMethod _encryption;
    private LuksInfo? _luks;
    private long _cryptHeaderOffset = -1;
    private long _cryptHeaderLength;

    /// <summary>Reads the LUKS header the full disk encryption extension points at.</summary>
    private LuksInfo ReadLuksHeader(long fileLength)
    {
        long offset = _cryptHeaderOffset;
        if (offset < 0)
            throw new Qcow2CorruptImageException("header.crypt_method", 32, Qcow2Constants.CryptLuks,
                "The image is LUKS encrypted but has no full disk encryption header extension.");
        if (offset == 0 || !_geo.IsClusterAligned(offset) || offset > fileLength - 592 || _cryptHeaderLength < 592)
            throw new Qcow2CorruptImageException("full disk encryption extension", offset, (ulong)_cryptHeaderLength,
                "The LUKS header offset is misaligned, too short or outside the file.");
        var buffer = new byte[592];
        int got = _file.Read(offset, buffer);
        return LuksInfo.Parse(buffer.AsSpan(0, Math.Max(got, 0)), offset);
    }

    private void ThrowIfEncrypted()
    {
        if (_encryption != CryptMethod.None && _crypto is null)
            throw new Qcow2UnsupportedImageException("encryption",
                $"The image is encrypted ({(_encryption == CryptMethod.Luks ? "luks" : "aes")}): its data cannot be read without its secret (Qcow2OpenOptions.EncryptionSecret).");
    }

    private Qcow2ImageInfo BuildInfo(bool wasDirty) => new()
    {
        Version = _version,
        VirtualSize = Size,
        ClusterSize = _clusterSize,
        RefcountBits = _rc.RefcountBits,
        IncompatibleFeatures = (IncompatibleFeatures)_incompatible,
        CompatibleFeatures = (CompatibleFeatures)_compatible,
        AutoclearFeatures = (AutoclearFeatures)_autoclear,
        LazyRefcounts = (_compatible & (ulong)CompatibleFeatures.LazyRefcounts) != 0,
        ExtendedL2 = _geo.ExtendedL2,
        CompressionType = _compressionType,
        BackingFile = _backingName,
        BackingFormat = _backingFormat,
        DataFile = _dataFileName,
        DataFileRaw = _dataFileRaw,
        Dirty = wasDirty,
        Corrupt = _corrupt,
        Encryption = _encryption,
        Luks = _luks,
        SnapshotCount = _snapshots.Count,
        BitmapCount = _bitmaps.Count,
        UnknownHeaderExtensions = _unknownExtensions.ToArray(),
    };

    /// <summary>Opens an internal snapshot's content, read-only, by id or (when no id matches) by name.</summary>
    /// <exception cref="KeyNotFoundException">No snapshot has that id or name.</exception>
    /// <exception cref="Qcow2CorruptImageException">The snapshot's L1 table is malformed.</exception>
    public IDiskImage OpenSnapshot(string idOrName)
    {
        ArgumentNullException.ThrowIfNull(idOrName);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var s = _snapshots.Find(x => x.Id == idOrName) ?? _snapshots.Find(x => x.Name == idOrName)
            ?? throw new KeyNotFoundException($"No snapshot with id or name '{idOrName}'.");
        // Writes cached in the active image do not touch snapshot tables, but make them durable anyway
        // so the view reads what is on disk consistently.
        if (!_readOnly) Flush();
        return new Qcow2Image(this, s);
    }

    /// <summary>Flushes (when writable), clears the dirty bit after a clean flush, and closes the files this image opened.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            if (!_readOnly && !_isSnapshotView && !_corrupt) CloseCleanly();
        }
        finally
        {
            if (!_isSnapshotView)
            {
                if (_ownsBacking) _backing?.Dispose();
                if (_ownsDataFile) _dataFile?.Dispose();
                if (_ownsFile) _file.Dispose();
                _crypto?.Dispose();
            }
        }
    }

    /// <inheritdoc cref="Dispose"/>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed != 0, this);
}
