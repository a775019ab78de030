using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Qcow2.Spans;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Check;

/// <summary>
/// What the checker needs from the header and its extensions, read directly from the storage.
/// Validation here is only what makes the image impossible to examine at all (qemu-img cannot open
/// it either); everything else is the checker's business and becomes a finding.
/// </summary>
internal sealed class CheckImage
{
    // Header field offsets (spec "Header"); v2 ends at 72.
    private const int MagicOffset = 0, VersionOffset = 4, BackingFileOffsetOffset = 8, ClusterBitsOffset = 20;
    private const int SizeOffset = 24, CryptMethodOffset = 32, L1SizeOffset = 36, L1TableOffsetOffset = 40;
    private const int RefcountTableOffsetOffset = 48, RefcountTableClustersOffset = 56;
    private const int NbSnapshotsOffset = 60, SnapshotsOffsetOffset = 64;
    internal const int IncompatibleFeaturesOffset = 72;
    private const int AutoclearFeaturesOffset = 88, RefcountOrderOffset = 96, HeaderLengthOffset = 100;
    private const int V2HeaderLength = 72, V3MinHeaderLength = 104;

    private const uint Qcow2Magic = 0x514649fb;                 // "QFI\xfb"
    private const uint ExtensionEnd = 0;
    private const uint ExtensionBitmaps = 0x23852875;
    private const uint ExtensionCryptoHeader = 0x0537be77;

    internal const ulong IncompatDirty = 1, IncompatCorrupt = 2, IncompatDataFile = 4, IncompatCompressionType = 8, IncompatExtendedL2 = 16;
    private const ulong IncompatKnown = 31;
    private const ulong AutoclearBitmaps = 1;
    private const uint CryptLuks = 2;

    // QEMU's limits: QCOW_MAX_L1_SIZE (32 MiB of L1 table) bounds the memory an L1 read may take;
    // QCOW_MAX_REFTABLE_SIZE (8 MiB) likewise for the refcount table.
    internal const long MaxL1Bytes = Qcow2Limits.MaxL1Size;
    internal const long MaxRefcountTableBytes = Qcow2Limits.MaxRefcountTableSize;
    internal const int MaxSnapshots = Qcow2Limits.MaxSnapshots;
    internal const int SnapshotHeaderSize = 40;
    internal const long MaxSnapshotTableBytes = Qcow2Limits.MaxSnapshotTableSize;
    internal const int MaxSnapshotExtraData = Qcow2Limits.MaxSnapshotExtraDataSize;
    internal const int MaxBitmaps = Qcow2Limits.MaxBitmaps;
    internal const long MaxBitmapDirectoryBytes = Qcow2Limits.MaxBitmapDirectorySize;
    private const int MinClusterBits = Qcow2Limits.MinClusterBits, MaxClusterBits = Qcow2Limits.MaxClusterBits;
    private const int MinExtendedL2ClusterBits = Qcow2Limits.MinExtendedL2ClusterBits;

    public required long FileLength { get; init; }
    public required int Version { get; init; }
    public required int ClusterBits { get; init; }
    public int ClusterSize => 1 << ClusterBits;
    public required long VirtualSize { get; init; }
    public required int RefcountOrder { get; init; }
    public required long L1Offset { get; init; }
    public required int L1Size { get; init; }
    public required long RefcountTableOffset { get; init; }
    public required int RefcountTableClusters { get; init; }
    public required uint NbSnapshots { get; init; }
    public required ulong SnapshotsOffset { get; init; }
    public required ulong IncompatibleFeatures { get; init; }
    public required int HeaderLength { get; init; }
    public bool ExtendedL2 => (IncompatibleFeatures & IncompatExtendedL2) != 0;
    public bool HasDataFile => (IncompatibleFeatures & IncompatDataFile) != 0;
    public int L2EntrySize => ExtendedL2 ? 16 : 8;
    public int L2Entries => ClusterSize / L2EntrySize;
    public long RefcountTableEntries => (long)RefcountTableClusters << (ClusterBits - 3);

    public uint NbBitmaps { get; init; }
    public ulong BitmapDirectoryOffset { get; init; }
    public ulong BitmapDirectorySize { get; init; }
    public ulong CryptoHeaderOffset { get; init; }
    public ulong CryptoHeaderLength { get; init; }

    /// <summary>File offset of the full disk encryption header extension's data (offset, then length), or 0.</summary>
    public long CryptoExtensionDataOffset { get; init; }

    private static Qcow2CorruptImageException Corrupt(string field, long offset, ulong raw, string message) =>
        new(field, offset, raw, message);

    /// <summary>Reads the header cluster and extensions.</summary>
    /// <exception cref="Qcow2CorruptImageException">The header is unusable.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The header uses something unsupported.</exception>
    public static CheckImage Read(IStorage storage)
    {
        long fileLength = storage.Length;
        RefuseAsQemuOpenDoes(storage, fileLength);
        Span<byte> fixedPart = stackalloc byte[V3MinHeaderLength + 8];
        fixedPart.Clear();
        int got = storage.Read(0, fixedPart);
        if (got < V2HeaderLength)
            throw Corrupt("header", 0, (ulong)got, "the file is too short to hold a qcow2 header");
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[MagicOffset..]);
        if (magic != Qcow2Magic)
            throw Corrupt("header.magic", MagicOffset, magic, "Image is not in qcow2 format");
        uint version = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[VersionOffset..]);
        if (version is not (2 or 3))
            throw new Qcow2UnsupportedImageException("version", $"qcow2 version {version} is not supported");
        uint clusterBits = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[ClusterBitsOffset..]);
        if (clusterBits is < MinClusterBits or > MaxClusterBits)
            throw new Qcow2UnsupportedImageException("cluster_bits", $"cluster_bits {clusterBits} is outside {MinClusterBits}..{MaxClusterBits}");
        int clusterSize = 1 << (int)clusterBits;

        uint headerLength = V2HeaderLength;
        ulong incompatible = 0, autoclear = 0;
        uint refcountOrder = 4;
        if (version == 3)
        {
            if (got < V3MinHeaderLength)
                throw Corrupt("header", 0, (ulong)got, "the file is too short to hold a version 3 header");
            headerLength = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[HeaderLengthOffset..]);
            if (headerLength < V3MinHeaderLength)
                throw Corrupt("header.header_length", HeaderLengthOffset, headerLength, "qcow2 header too short");
            if (headerLength > clusterSize)
                throw Corrupt("header.header_length", HeaderLengthOffset, headerLength, "qcow2 header exceeds cluster size");
            incompatible = BinaryPrimitives.ReadUInt64BigEndian(fixedPart[IncompatibleFeaturesOffset..]);
            autoclear = BinaryPrimitives.ReadUInt64BigEndian(fixedPart[AutoclearFeaturesOffset..]);
            refcountOrder = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[RefcountOrderOffset..]);
            if ((incompatible & ~IncompatKnown) != 0)
                throw new Qcow2UnsupportedImageException("incompatible_features", $"unsupported incompatible features 0x{incompatible & ~IncompatKnown:x}");
            if (refcountOrder > 6)
                throw Corrupt("header.refcount_order", RefcountOrderOffset, refcountOrder, "refcount width may not exceed 64 bits");
            if ((incompatible & IncompatExtendedL2) != 0 && clusterBits < MinExtendedL2ClusterBits)
                throw Corrupt("header.cluster_bits", ClusterBitsOffset, clusterBits, "extended L2 entries need clusters of at least 16 KiB");
        }

        ulong size = BinaryPrimitives.ReadUInt64BigEndian(fixedPart[SizeOffset..]);
        if (size > long.MaxValue / 2)
            throw Corrupt("header.size", SizeOffset, size, "virtual size too large");
        uint crypt = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[CryptMethodOffset..]);
        if (crypt > CryptLuks)
            throw new Qcow2UnsupportedImageException("crypt_method", $"encryption method {crypt} is not supported");

        uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[L1SizeOffset..]);
        ulong l1Offset = BinaryPrimitives.ReadUInt64BigEndian(fixedPart[L1TableOffsetOffset..]);
        if (l1Size > MaxL1Bytes / 8)
            throw Corrupt("header.l1_size", L1SizeOffset, l1Size, "active L1 table too large");
        // Enough L1 entries to map the virtual size: each maps one L2 table's worth of guest bytes.
        int l2Bits = (int)clusterBits - ((incompatible & IncompatExtendedL2) != 0 ? 4 : 3);
        ulong bytesPerL1 = 1UL << ((int)clusterBits + l2Bits);
        ulong l1Needed = (size + bytesPerL1 - 1) / bytesPerL1;
        if (l1Size < l1Needed)
            throw Corrupt("header.l1_size", L1SizeOffset, l1Size, "L1 table is too small for the virtual size");
        if (l1Offset > long.MaxValue - (ulong)l1Size * 8 || (l1Offset & (ulong)(clusterSize - 1)) != 0)
            throw Corrupt("header.l1_table_offset", L1TableOffsetOffset, l1Offset, "invalid L1 table offset");

        ulong rtOffset = BinaryPrimitives.ReadUInt64BigEndian(fixedPart[RefcountTableOffsetOffset..]);
        uint rtClusters = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[RefcountTableClustersOffset..]);
        if (rtClusters > (MaxRefcountTableBytes >> (int)clusterBits))
            throw Corrupt("header.refcount_table_clusters", RefcountTableClustersOffset, rtClusters, "reference count table too large");
        if (rtOffset > long.MaxValue - ((ulong)rtClusters << (int)clusterBits) || (rtOffset & (ulong)(clusterSize - 1)) != 0)
            throw Corrupt("header.refcount_table_offset", RefcountTableOffsetOffset, rtOffset, "invalid reference count table offset");

        // Header extensions: from the end of the header to the backing file name, or the end of the cluster.
        ulong backingOffset = BinaryPrimitives.ReadUInt64BigEndian(fixedPart[BackingFileOffsetOffset..]);
        long extEnd = backingOffset != 0 ? (long)Math.Min(backingOffset, (ulong)clusterSize) : clusterSize;
        byte[] cluster = new byte[clusterSize];
        storage.Read(0, cluster);
        uint nbBitmaps = 0;
        ulong dirOffset = 0, dirSize = 0, cryptoOffset = 0, cryptoLength = 0;
        long cryptoAt = 0;
        long pos = headerLength;
        while (pos < extEnd)
        {
            if (pos + 8 > extEnd)
                throw Corrupt("header extension", pos, 0, "Header extension too large");
            uint type = BinaryPrimitives.ReadUInt32BigEndian(cluster.AsSpan((int)pos));
            uint len = BinaryPrimitives.ReadUInt32BigEndian(cluster.AsSpan((int)pos + 4));
            pos += 8;
            if (len > extEnd - pos)
                throw Corrupt("header extension", pos - 8, type, "Header extension too large");
            if (type == ExtensionEnd) break;
            var data = cluster.AsSpan((int)pos, (int)len);
            if (type == ExtensionBitmaps)
            {
                if (len != 24) throw Corrupt("bitmaps extension", pos - 8, len, "invalid extension length");
                if ((autoclear & AutoclearBitmaps) != 0)
                {
                    nbBitmaps = BinaryPrimitives.ReadUInt32BigEndian(data);
                    dirSize = BinaryPrimitives.ReadUInt64BigEndian(data[8..]);
                    dirOffset = BinaryPrimitives.ReadUInt64BigEndian(data[16..]);
                    if (nbBitmaps > MaxBitmaps || nbBitmaps == 0)
                        throw Corrupt("bitmaps extension", pos, nbBitmaps, "invalid number of bitmaps");
                    if (dirSize > MaxBitmapDirectoryBytes)
                        throw Corrupt("bitmaps extension", pos + 8, dirSize, "bitmap directory too large");
                    if ((dirOffset & (ulong)(clusterSize - 1)) != 0 || dirOffset > long.MaxValue - dirSize)
                        throw Corrupt("bitmaps extension", pos + 16, dirOffset, "invalid bitmap directory offset");
                }
            }
            else if (type == ExtensionCryptoHeader)
            {
                if (len != 16) throw Corrupt("crypto header extension", pos - 8, len, "invalid extension length");
                if (crypt != CryptLuks) throw Corrupt("crypto header extension", pos - 8, crypt, "crypto header extension only expected with LUKS encryption");
                cryptoAt = pos;
                cryptoOffset = BinaryPrimitives.ReadUInt64BigEndian(data);
                cryptoLength = BinaryPrimitives.ReadUInt64BigEndian(data[8..]);
                if ((cryptoOffset & (ulong)(clusterSize - 1)) != 0 || cryptoOffset > long.MaxValue - Math.Min(cryptoLength, long.MaxValue / 2))
                    throw Corrupt("crypto header extension", pos, cryptoOffset, "invalid crypto header offset");
                if (cryptoLength > long.MaxValue / 2)
                    throw Corrupt("crypto header extension", pos + 8, cryptoLength, "invalid crypto header length");
            }
            pos += (len + 7L) & ~7L;
        }

        return new CheckImage
        {
            FileLength = fileLength,
            Version = (int)version,
            ClusterBits = (int)clusterBits,
            VirtualSize = (long)size,
            RefcountOrder = (int)refcountOrder,
            L1Offset = (long)l1Offset,
            L1Size = (int)l1Size,
            RefcountTableOffset = (long)rtOffset,
            RefcountTableClusters = (int)rtClusters,
            NbSnapshots = BinaryPrimitives.ReadUInt32BigEndian(fixedPart[NbSnapshotsOffset..]),
            SnapshotsOffset = BinaryPrimitives.ReadUInt64BigEndian(fixedPart[SnapshotsOffsetOffset..]),
            IncompatibleFeatures = incompatible,
            HeaderLength = (int)headerLength,
            NbBitmaps = nbBitmaps,
            BitmapDirectoryOffset = dirOffset,
            BitmapDirectorySize = dirSize,
            CryptoHeaderOffset = cryptoOffset,
            CryptoHeaderLength = cryptoLength,
            CryptoExtensionDataOffset = cryptoAt,
        };
    }

    internal static int RefcountTableHeaderOffset => RefcountTableOffsetOffset;

    /// <summary>
    /// Runs the format's header validation (<see cref="HeaderValidator"/>, with the extensions and the
    /// image's feature name table) and throws for the first violation, in the order QEMU checks them,
    /// that makes qemu-img refuse to open the image; the exception's reason is qemu-img's wording. Rules
    /// QEMU does not enforce at open (tables past the end of the file, a zero table offset, the
    /// snapshot table) are left to the check, which reports them as findings as qemu-img check does.
    /// </summary>
    private static void RefuseAsQemuOpenDoes(IStorage storage, long fileLength)
    {
        Span<byte> head = stackalloc byte[V3MinHeaderLength + 8];
        head.Clear();
        if (storage.Read(0, head) < V2HeaderLength) return;
        if (BinaryPrimitives.ReadUInt32BigEndian(head[MagicOffset..]) != Qcow2Magic) return;
        uint clusterBits = BinaryPrimitives.ReadUInt32BigEndian(head[ClusterBitsOffset..]);
        int length = clusterBits is >= MinClusterBits and <= MaxClusterBits ? 1 << (int)clusterBits : head.Length;
        byte[] cluster = new byte[length];
        storage.Read(0, cluster);
        if (!Qcow2Header.TryParse(cluster, out var header) || header is null) return;
        Span<HeaderViolation> found = new HeaderViolation[HeaderValidator.MaxViolations];
        int n = HeaderValidator.Validate(header, fileLength, found, cluster);
        int bestRank = int.MaxValue;
        string? bestMessage = null;
        HeaderViolation best = default;
        for (int i = 0; i < n; i++)
        {
            var (rank, message) = QemuOpenError(found[i], header, cluster);
            if (message is not null && rank < bestRank)
            {
                bestRank = rank;
                bestMessage = message;
                best = found[i];
            }
        }
        if (bestMessage is null) return;
        if (best.IsUnsupported) throw new Qcow2UnsupportedImageException(best.Field, bestMessage);
        throw new Qcow2CorruptImageException("header." + best.Field, best.FieldOffset, best.RawValue, bestMessage);
    }

    /// <summary>
    /// Whether qemu-img refuses to open an image with this violation, and if so, when (rank: the
    /// order of QEMU's checks at open) and with which message (qemu-img 7.2's words, checked against it).
    /// </summary>
    private static (int Rank, string? Message) QemuOpenError(in HeaderViolation v, Qcow2Header h, ReadOnlySpan<byte> cluster)
    {
        var inv = CultureInfo.InvariantCulture;
        long clusterSize = h.ClusterBits is >= MinClusterBits and <= MaxClusterBits ? 1L << (int)h.ClusterBits : 0;
        switch (v.Rule)
        {
            case HeaderRule.Version: return (1, string.Create(inv, $"Unsupported qcow2 version {h.Version}"));
            case HeaderRule.ClusterBits: return (2, string.Create(inv, $"Unsupported cluster size: 2^{h.ClusterBits}"));
            case HeaderRule.HeaderLength:
                if (h.HeaderLength < V3MinHeaderLength) return (3, "qcow2 header too short");
                if (clusterSize != 0 && h.HeaderLength > clusterSize) return (3, "qcow2 header exceeds cluster size");
                return (5, "Header extension too large");
            case HeaderRule.BackingFileOffset:
                if (clusterSize != 0 && h.BackingFileOffset > (ulong)clusterSize) return (4, "Invalid backing file offset");
                if (h.BackingFileOffset < (ulong)h.ExtensionsStart) return (0, null);
                return (20, "Backing file name too long");
            case HeaderRule.ExtensionArea:
                return v.RawValue is (ulong)HeaderExtensionError.Truncated or (ulong)HeaderExtensionError.TooLong
                    ? (5, "Header extension too large") : (0, null);
            case HeaderRule.UnknownIncompatibleFeature: return (6, UnsupportedFeatures(h, cluster));
            case HeaderRule.RefcountOrder: return (7, "Reference count entry width too large; may not exceed 64 bits");
            case HeaderRule.CompressionType:
                {
                    byte ct = (byte)h.CompressionType;
                    bool bit = (h.IncompatibleFeatures & Qcow2.Spans.IncompatibleFeatures.CompressionType) != 0;
                    if (ct > (byte)CompressionType.Zstd) return (8, string.Create(inv, $"qcow2: unknown compression type: {ct}"));
                    return (8, bit ? "qcow2: Compression type incompatible feature bit must not be set"
                                   : "qcow2: Compression type incompatible feature bit must be set");
                }
            case HeaderRule.CryptMethod: return (9, string.Create(inv, $"Unsupported encryption method {h.CryptMethod}"));
            case HeaderRule.ExtendedL2ClusterBits:
                return (10, string.Create(inv, $"Unsupported subcluster size: {clusterSize / 32}"));
            case HeaderRule.DataFileRawWithoutDataFile: return (11, "data-file-raw requires a data file");
            case HeaderRule.RefcountTableClusters:
                return h.RefcountTableClusters != 0 ? (12, "Reference count table too large") : (0, null);
            case HeaderRule.RefcountTableOffset:
                return h.RefcountTableOffset != 0 ? (13, "Reference count table offset invalid") : (0, null);
            case HeaderRule.L1SizeLimit: return (14, "Active L1 table too large");
            case HeaderRule.L1SizeTooSmall: return (15, "L1 table is too small");
            case HeaderRule.L1TableOffset:
                return h.L1TableOffset != 0 ? (16, "Active L1 table offset invalid") : (0, null);
            case HeaderRule.BackingFileSize: return (20, "Backing file name too long");
            default: return (0, null);
        }
    }

    /// <summary>
    /// qemu-img's list of unsupported incompatible features: the names the image's feature name
    /// table gives the unknown bits (in table order), then the bits left unnamed as one hex mask.
    /// </summary>
    private static string UnsupportedFeatures(Qcow2Header h, ReadOnlySpan<byte> cluster)
    {
        ulong mask = (ulong)h.IncompatibleFeatures & ~IncompatKnown;
        var parts = new List<string>();
        int start = h.ExtensionsStart;
        int end = h.ExtensionsEnd(cluster.Length);
        if (start >= 0 && start <= end && end <= cluster.Length
            && HeaderExtensionEnumerator.TryFind(cluster[start..end], 0, Qcow2Constants.ExtensionFeatureNameTable, out var table, out _))
        {
            const int EntrySize = 48, NameLength = 46;
            for (int at = 0; at + EntrySize <= table.Length; at += EntrySize)
            {
                int type = table[at], bit = table[at + 1];
                if (type != 0 || bit >= 64 || (mask & (1UL << bit)) == 0) continue;
                var name = table.Slice(at + 2, NameLength);
                int zero = name.IndexOf((byte)0);
                parts.Add(Encoding.UTF8.GetString(zero >= 0 ? name[..zero] : name));
                mask &= ~(1UL << bit);
            }
        }
        if (mask != 0) parts.Add("Unknown incompatible feature: " + mask.ToString("x", CultureInfo.InvariantCulture));
        return "Unsupported qcow2 feature(s): " + string.Join(", ", parts);
    }
}
