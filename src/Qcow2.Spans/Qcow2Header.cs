using Qcow2.Spans.Layout;

namespace Qcow2.Spans;

/// <summary>
/// The image header (spec "Header"), every field typed, parsed once at open. Version 2 headers
/// read as 72 bytes with the spec's implied values (header_length 72, refcount_order 4) and
/// the version 3 fields zero; a version 3 header honours header_length: fields at or beyond it
/// read as zero, and additional fields this toolkit does not know are kept byte for byte so that
/// rewriting the header preserves them.
/// Parsing checks only what it needs to read the bytes; <c>HeaderValidator</c> checks the rules.
/// </summary>
public sealed class Qcow2Header
{
    private byte[]? _additionalFields;

    /// <summary>magic (must be <see cref="Qcow2Constants.Magic"/>).</summary>
    public uint Magic { get; set; } = Qcow2Constants.Magic;

    /// <summary>version (2 or 3).</summary>
    public uint Version { get; set; } = Qcow2Constants.Version3;

    /// <summary>backing_file_offset (0: no backing file).</summary>
    public ulong BackingFileOffset { get; set; }

    /// <summary>backing_file_size (name length in bytes).</summary>
    public uint BackingFileSize { get; set; }

    /// <summary>cluster_bits.</summary>
    public uint ClusterBits { get; set; } = 16;

    /// <summary>size: the virtual disk size in bytes.</summary>
    public ulong Size { get; set; }

    /// <summary>crypt_method (0 none, 1 AES, 2 LUKS).</summary>
    public uint CryptMethod { get; set; }

    /// <summary>l1_size: entries in the active L1 table.</summary>
    public uint L1Size { get; set; }

    /// <summary>l1_table_offset.</summary>
    public ulong L1TableOffset { get; set; }

    /// <summary>refcount_table_offset.</summary>
    public ulong RefcountTableOffset { get; set; }

    /// <summary>refcount_table_clusters.</summary>
    public uint RefcountTableClusters { get; set; }

    /// <summary>nb_snapshots.</summary>
    public uint SnapshotCount { get; set; }

    /// <summary>snapshots_offset.</summary>
    public ulong SnapshotsOffset { get; set; }

    /// <summary>incompatible_features (raw bits; unknown bits are kept).</summary>
    public IncompatibleFeatures IncompatibleFeatures { get; set; }

    /// <summary>compatible_features.</summary>
    public CompatibleFeatures CompatibleFeatures { get; set; }

    /// <summary>autoclear_features.</summary>
    public AutoclearFeatures AutoclearFeatures { get; set; }

    /// <summary>refcount_order (4 for version 2, as the spec assumes).</summary>
    public uint RefcountOrder { get; set; } = Qcow2Constants.DefaultRefcountOrder;

    /// <summary>header_length (72 for version 2).</summary>
    public uint HeaderLength { get; set; } = Qcow2Constants.HeaderLengthV3WithCompressionType;

    /// <summary>compression_type (raw byte; 0 when the field is absent).</summary>
    public CompressionType CompressionType { get; set; }

    /// <summary>
    /// Bytes 105–111 (the padding after compression_type, when header_length covers it) as a
    /// big-endian number; the spec requires zero. Written back as set.
    /// </summary>
    public ulong PaddingRaw { get; set; }

    /// <summary>
    /// Header bytes from offset 112 to header_length: additional fields unknown to this toolkit,
    /// preserved when the header is written back. Empty for most images.
    /// </summary>
    public ReadOnlySpan<byte> AdditionalFields => _additionalFields;

    /// <summary>Replaces <see cref="AdditionalFields"/> (copied).</summary>
    public void SetAdditionalFields(ReadOnlySpan<byte> fields) => _additionalFields = fields.IsEmpty ? null : fields.ToArray();

    /// <summary>The cluster size in bytes, or 0 when cluster_bits is outside 9..30 (validate first).</summary>
    public int ClusterSize => ClusterBits is >= Qcow2Limits.MinClusterBits and <= 30 ? 1 << (int)ClusterBits : 0;

    /// <summary>Refcount width in bits, or 0 when refcount_order is above 6.</summary>
    public int RefcountBits => RefcountOrder <= Qcow2Limits.MaxRefcountOrder ? 1 << (int)RefcountOrder : 0;

    /// <summary>True when the image has a backing file.</summary>
    public bool HasBackingFile => BackingFileOffset != 0;

    /// <summary>Incompatible bit 4.</summary>
    public bool HasExtendedL2 => (IncompatibleFeatures & IncompatibleFeatures.ExtendedL2) != 0;

    /// <summary>Incompatible bit 2.</summary>
    public bool HasExternalDataFile => (IncompatibleFeatures & IncompatibleFeatures.ExternalDataFile) != 0;

    /// <summary>Incompatible bit 0.</summary>
    public bool IsDirty => (IncompatibleFeatures & IncompatibleFeatures.Dirty) != 0;

    /// <summary>Incompatible bit 1.</summary>
    public bool IsCorrupt => (IncompatibleFeatures & IncompatibleFeatures.Corrupt) != 0;

    /// <summary>Compatible bit 0.</summary>
    public bool HasLazyRefcounts => (CompatibleFeatures & CompatibleFeatures.LazyRefcounts) != 0;

    /// <summary>True when compression_type lies within header_length (version 3, header_length &gt; 104).</summary>
    public bool HasCompressionTypeField => Version >= 3 && HeaderLength > Qcow2Constants.CompressionTypeOffset;

    /// <summary>Where the header extensions start: header_length (72 for version 2).</summary>
    public int ExtensionsStart => Version >= 3 ? (int)Math.Min(HeaderLength, (uint)int.MaxValue) : Qcow2Constants.HeaderLengthV2;

    /// <summary>
    /// Where the header extension area ends within a first cluster of <paramref name="clusterSize"/>
    /// bytes: at the backing file name when it lies inside the cluster, else at the cluster end.
    /// </summary>
    public int ExtensionsEnd(int clusterSize) =>
        BackingFileOffset != 0 && BackingFileOffset < (ulong)clusterSize ? (int)BackingFileOffset : clusterSize;

    /// <summary>The cluster geometry; false when cluster_bits (or extended L2 with it) is out of range.</summary>
    public bool TryGetClusterGeometry(out ClusterGeometry geometry) =>
        ClusterGeometry.TryCreate(ClusterBits > int.MaxValue ? -1 : (int)ClusterBits, HasExtendedL2, out geometry);

    /// <summary>The refcount geometry; false when cluster_bits or refcount_order is out of range.</summary>
    public bool TryGetRefcountGeometry(out RefcountGeometry geometry) =>
        RefcountGeometry.TryCreate(ClusterBits > int.MaxValue ? -1 : (int)ClusterBits,
            RefcountOrder > int.MaxValue ? -1 : (int)RefcountOrder, out geometry);

    /// <summary>
    /// Parses a header from the start of <paramref name="data"/> (give the first cluster, or at
    /// least header_length bytes).
    /// </summary>
    /// <exception cref="Qcow2CorruptImageException">data is shorter than the header it holds.</exception>
    public static Qcow2Header Parse(ReadOnlySpan<byte> data)
    {
        var h = new Qcow2Header();
        Parse(data, h);
        return h;
    }

    /// <summary>Parses into an existing instance (no allocation unless the header carries unknown additional fields).</summary>
    /// <exception cref="Qcow2CorruptImageException">data is shorter than the header it holds.</exception>
    /// <exception cref="ArgumentNullException">destination is null.</exception>
    public static void Parse(ReadOnlySpan<byte> data, Qcow2Header destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var status = TryParseCore(data, destination, out ulong raw, out string? reason);
        if (!status) ThrowHelper.ThrowCorrupt("header", 0, raw, reason!);
    }

    /// <summary>Parses a header; false (and null) when data is too short for the header it holds.</summary>
    public static bool TryParse(ReadOnlySpan<byte> data, out Qcow2Header? header)
    {
        var h = new Qcow2Header();
        if (!TryParseCore(data, h, out _, out _))
        {
            header = null;
            return false;
        }
        header = h;
        return true;
    }

    private static bool TryParseCore(ReadOnlySpan<byte> data, Qcow2Header h, out ulong raw, out string? reason)
    {
        raw = (ulong)data.Length;
        if (data.Length < Qcow2Constants.HeaderLengthV2)
        {
            reason = "The header needs at least 72 bytes.";
            return false;
        }
        var v2 = HeaderV2ReadOnlyView.Create(data);
        uint version = v2.Version;
        Span<byte> buffer = stackalloc byte[HeaderView.SizeInBytes];
        buffer.Clear();
        uint headerLength;
        byte[]? additional = null;
        if (version < 3)
        {
            data[..Qcow2Constants.HeaderLengthV2].CopyTo(buffer);
            headerLength = Qcow2Constants.HeaderLengthV2;
        }
        else
        {
            if (data.Length < Qcow2Constants.HeaderLengthV3Min)
            {
                reason = "A version 3 header needs at least 104 bytes.";
                return false;
            }
            headerLength = HeaderReadOnlyView.Create(data.Length >= HeaderView.SizeInBytes ? data : PadTo112(data, buffer)).HeaderLength;
            buffer.Clear();
            // Fields through header_length are always present in version 3; beyond 104 only
            // what header_length covers.
            uint known = Math.Clamp(headerLength, (uint)Qcow2Constants.HeaderLengthV3Min, (uint)HeaderView.SizeInBytes);
            if ((uint)data.Length < known)
            {
                raw = headerLength;
                reason = "header_length runs past the end of the data.";
                return false;
            }
            data[..(int)known].CopyTo(buffer);
            if (headerLength > HeaderView.SizeInBytes)
            {
                if ((ulong)data.Length < headerLength)
                {
                    raw = headerLength;
                    reason = "header_length runs past the end of the data.";
                    return false;
                }
                additional = data[HeaderView.SizeInBytes..(int)headerLength].ToArray();
            }
        }

        var v = HeaderReadOnlyView.Create(buffer);
        h.Magic = v.Magic;
        h.Version = v.Version;
        h.BackingFileOffset = v.BackingFileOffset;
        h.BackingFileSize = v.BackingFileSize;
        h.ClusterBits = v.ClusterBits;
        h.Size = v.Size;
        h.CryptMethod = v.CryptMethod;
        h.L1Size = v.L1Size;
        h.L1TableOffset = v.L1TableOffset;
        h.RefcountTableOffset = v.RefcountTableOffset;
        h.RefcountTableClusters = v.RefcountTableClusters;
        h.SnapshotCount = v.NbSnapshots;
        h.SnapshotsOffset = v.SnapshotsOffset;
        h.IncompatibleFeatures = (IncompatibleFeatures)v.IncompatibleFeatures;
        h.CompatibleFeatures = (CompatibleFeatures)v.CompatibleFeatures;
        h.AutoclearFeatures = (AutoclearFeatures)v.AutoclearFeatures;
        h.RefcountOrder = version < 3 ? Qcow2Constants.DefaultRefcountOrder : v.RefcountOrder;
        h.HeaderLength = headerLength;
        h.CompressionType = (CompressionType)v.CompressionType;
        h._additionalFields = additional;
        ulong padding = 0;
        foreach (byte b in v.Padding) padding = (padding << 8) | b;
        h.PaddingRaw = padding;
        reason = null;
        return true;
    }

    private static ReadOnlySpan<byte> PadTo112(ReadOnlySpan<byte> data, Span<byte> buffer)
    {
        buffer.Clear();
        data[..Math.Min(data.Length, buffer.Length)].CopyTo(buffer);
        return buffer;
    }

    /// <summary>
    /// Number of bytes <see cref="WriteTo"/> writes: 72 for version 2, header_length otherwise.
    /// </summary>
    public int EncodedLength => Version < 3 ? Qcow2Constants.HeaderLengthV2 : (int)Math.Min(HeaderLength, int.MaxValue);

    /// <summary>
    /// Writes the header (72 bytes for version 2; header_length bytes for version 3, with the
    /// compression_type field when header_length covers it, zero padding, and the preserved
    /// additional fields). Returns the number of bytes written.
    /// </summary>
    /// <exception cref="ArgumentException">destination is too small, or the header cannot be encoded as set
    /// (version 3 with header_length below 104 or not a multiple of 8, version 2 with version 3 fields,
    /// a compression type without room for the field).</exception>
    public int WriteTo(Span<byte> destination)
    {
        int length = EncodedLength;
        if (Version >= 3)
        {
            if (HeaderLength < Qcow2Constants.HeaderLengthV3Min || HeaderLength % 8 != 0)
                ThrowHelper.ThrowArgument(nameof(HeaderLength), "A version 3 header_length is at least 104 and a multiple of 8.");
            if (CompressionType != CompressionType.Zlib && HeaderLength <= Qcow2Constants.CompressionTypeOffset)
                ThrowHelper.ThrowArgument(nameof(CompressionType), "A non-zlib compression type needs header_length of at least 112.");
            if (_additionalFields is not null && HeaderLength != HeaderView.SizeInBytes + (uint)_additionalFields.Length)
                ThrowHelper.ThrowArgument(nameof(HeaderLength), "header_length must cover the preserved additional fields exactly.");
        }
        else if (IncompatibleFeatures != 0 || CompatibleFeatures != 0 || AutoclearFeatures != 0
                 || RefcountOrder != Qcow2Constants.DefaultRefcountOrder || CompressionType != CompressionType.Zlib)
        {
            ThrowHelper.ThrowArgument(nameof(Version), "A version 2 header has no feature bits, refcount_order 4 and no compression type.");
        }
        if (destination.Length < length) ThrowHelper.ThrowBufferTooSmall(nameof(destination), length, destination.Length);

        Span<byte> buffer = stackalloc byte[HeaderView.SizeInBytes];
        buffer.Clear();
        var v = HeaderView.Create(buffer);
        v.Magic = Magic;
        v.Version = Version;
        v.BackingFileOffset = BackingFileOffset;
        v.BackingFileSize = BackingFileSize;
        v.ClusterBits = ClusterBits;
        v.Size = Size;
        v.CryptMethod = CryptMethod;
        v.L1Size = L1Size;
        v.L1TableOffset = L1TableOffset;
        v.RefcountTableOffset = RefcountTableOffset;
        v.RefcountTableClusters = RefcountTableClusters;
        v.NbSnapshots = SnapshotCount;
        v.SnapshotsOffset = SnapshotsOffset;
        if (Version >= 3)
        {
            v.IncompatibleFeatures = (ulong)IncompatibleFeatures;
            v.CompatibleFeatures = (ulong)CompatibleFeatures;
            v.AutoclearFeatures = (ulong)AutoclearFeatures;
            v.RefcountOrder = RefcountOrder;
            v.HeaderLength = HeaderLength;
            v.CompressionType = (byte)CompressionType;
            ulong padding = PaddingRaw;
            var pad = v.Padding;
            for (int i = pad.Length - 1; i >= 0; i--, padding >>= 8) pad[i] = (byte)padding;
        }
        int known = Math.Min(length, HeaderView.SizeInBytes);
        buffer[..known].CopyTo(destination);
        if (length > HeaderView.SizeInBytes)
        {
            var rest = destination[HeaderView.SizeInBytes..length];
            rest.Clear();
            _additionalFields?.CopyTo(rest);
        }
        return length;
    }

    /// <summary>A copy of this header.</summary>
    public Qcow2Header Clone()
    {
        var c = (Qcow2Header)MemberwiseClone();
        c._additionalFields = (byte[]?)_additionalFields?.Clone();
        return c;
    }

    /// <summary>
    /// The backing file name bytes from the first cluster, or empty when there is none.
    /// </summary>
    /// <exception cref="Qcow2CorruptImageException">The name lies outside <paramref name="headerCluster"/> or is longer than 1023 bytes.</exception>
    public ReadOnlySpan<byte> GetBackingFileName(ReadOnlySpan<byte> headerCluster)
    {
        if (BackingFileOffset == 0) return default;
        if (BackingFileSize > Qcow2Limits.MaxBackingFileNameLength)
            ThrowHelper.ThrowCorrupt("header.backing_file_size", 16, BackingFileSize, "The backing file name is longer than 1023 bytes.");
        if (BackingFileOffset > (ulong)headerCluster.Length || BackingFileSize > (ulong)headerCluster.Length - BackingFileOffset)
            ThrowHelper.ThrowCorrupt("header.backing_file_offset", 8, BackingFileOffset, "The backing file name lies outside the first cluster.");
        return headerCluster.Slice((int)BackingFileOffset, (int)BackingFileSize);
    }
}
