using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Qcow2.Spans.Layout;

namespace Qcow2.Spans;

/// <summary>The rules of the spec (and QEMU's limits) that <see cref="HeaderValidator"/> checks.</summary>
public enum HeaderRule
{
    /// <summary>magic is not "QFI\xfb".</summary>
    Magic,

    /// <summary>version is not 2 or 3.</summary>
    Version,

    /// <summary>cluster_bits is below 9 (corrupt) or above 21 (QEMU's limit: unsupported).</summary>
    ClusterBits,

    /// <summary>Version 3 header_length below 104, not a multiple of 8, or beyond the first cluster.</summary>
    HeaderLength,

    /// <summary>refcount_order above 6.</summary>
    RefcountOrder,

    /// <summary>crypt_method is not 0, 1 or 2.</summary>
    CryptMethod,

    /// <summary>size does not fit a signed 64-bit offset.</summary>
    Size,

    /// <summary>l1_table_offset not cluster aligned, zero with entries, or the table end overflows.</summary>
    L1TableOffset,

    /// <summary>l1_size above QEMU's 32 MiB L1 limit.</summary>
    L1SizeLimit,

    /// <summary>l1_size too small to map the virtual size.</summary>
    L1SizeTooSmall,

    /// <summary>refcount_table_offset not cluster aligned, zero, or the table end overflows.</summary>
    RefcountTableOffset,

    /// <summary>refcount_table_clusters zero, or above QEMU's 8 MiB refcount table limit.</summary>
    RefcountTableClusters,

    /// <summary>snapshots_offset not cluster aligned (with snapshots), or the table end overflows.</summary>
    SnapshotsOffset,

    /// <summary>nb_snapshots above QEMU's 65536.</summary>
    SnapshotCount,

    /// <summary>A table (L1, refcount, snapshots) or the header itself lies beyond the end of the file.</summary>
    BeyondEndOfFile,

    /// <summary>The backing file name overlaps the header or lies outside the first cluster.</summary>
    BackingFileOffset,

    /// <summary>backing_file_size above 1023 bytes.</summary>
    BackingFileSize,

    /// <summary>An incompatible feature bit this toolkit does not know (unsupported).</summary>
    UnknownIncompatibleFeature,

    /// <summary>compression_type inconsistent with its incompatible bit, or unknown (unsupported).</summary>
    CompressionType,

    /// <summary>Extended L2 entries with cluster_bits below 14.</summary>
    ExtendedL2ClusterBits,

    /// <summary>Autoclear data-file-raw without the external data file bit.</summary>
    DataFileRawWithoutDataFile,

    /// <summary>A backing file together with a raw external data file.</summary>
    DataFileRawWithBackingFile,

    /// <summary>Internal snapshots in an image with an external data file.</summary>
    SnapshotsWithDataFile,

    /// <summary>The header padding after compression_type is not zero.</summary>
    HeaderPadding,

    /// <summary>The header extension area is truncated, overlong, or repeats an extension.</summary>
    ExtensionArea,

    /// <summary>The bitmaps extension is malformed, or the bitmaps autoclear bit is set without it.</summary>
    BitmapsExtension,

    /// <summary>The full disk encryption pointer is malformed, missing with LUKS, or present without it.</summary>
    EncryptionExtension,

    /// <summary>The backing format name extension is longer than QEMU accepts (unsupported).</summary>
    StringExtension,
}

/// <summary>One broken rule: which, the header field (spec name), its raw value and what is wrong.</summary>
public readonly struct HeaderViolation
{
    /// <summary>Creates a violation.</summary>
    public HeaderViolation(HeaderRule rule, string field, int fieldOffset, ulong rawValue, bool isUnsupported, string message)
    {
        Rule = rule;
        Field = field;
        FieldOffset = fieldOffset;
        RawValue = rawValue;
        IsUnsupported = isUnsupported;
        Message = message;
    }

    /// <summary>The rule broken.</summary>
    public HeaderRule Rule { get; }

    /// <summary>The field, by its spec name (e.g. "cluster_bits", "incompatible_features").</summary>
    public string Field { get; }

    /// <summary>Byte offset of the field in the image file (the header or the extension).</summary>
    public int FieldOffset { get; }

    /// <summary>The raw value found.</summary>
    public ulong RawValue { get; }

    /// <summary>True when the image is valid but uses something unsupported (else it is corrupt).</summary>
    public bool IsUnsupported { get; }

    /// <summary>What is wrong, in words.</summary>
    public string Message { get; }

    /// <summary>The exception this violation stands for.</summary>
    public Exception ToException() => IsUnsupported
        ? new Qcow2UnsupportedImageException(Field, Message)
        : new Qcow2CorruptImageException("header." + Field, FieldOffset, RawValue, Message);

    /// <inheritdoc/>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Rule}: {Field} = 0x{RawValue:x}: {Message}");
}

/// <summary>
/// Checks a parsed header against every rule of the spec and QEMU's limits, reporting each
/// broken rule with its field and raw value. Nothing is allocated for a valid header.
/// </summary>
public static class HeaderValidator
{
    /// <summary>A destination of this many entries always holds every violation.</summary>
    public const int MaxViolations = 128;

    /// <summary>
    /// Checks <paramref name="header"/>; writes the violations into <paramref name="destination"/>
    /// (up to its length) and returns how many were written. Pass <paramref name="fileLength"/>
    /// -1 to skip the end-of-file checks.
    /// </summary>
    /// <exception cref="ArgumentNullException">header is null.</exception>
    public static int Validate(Qcow2Header header, long fileLength, Span<HeaderViolation> destination) =>
        Validate(header, fileLength, destination, default);

    /// <summary>
    /// Like <see cref="Validate(Qcow2Header, long, Span{HeaderViolation})"/>, and when
    /// <paramref name="headerCluster"/> (the image's first cluster) is given, also walks the
    /// header extensions: checks their rules and names unknown incompatible bits from the
    /// image's own feature name table.
    /// </summary>
    /// <exception cref="ArgumentNullException">header is null.</exception>
    public static int Validate(Qcow2Header header, long fileLength, Span<HeaderViolation> destination, ReadOnlySpan<byte> headerCluster)
    {
        ArgumentNullException.ThrowIfNull(header);
        var sink = new Sink(destination);
        Check(header, fileLength, ref sink, headerCluster);
        return sink.Count;
    }

    /// <summary>Throws for the first violation, if any.</summary>
    /// <exception cref="Qcow2CorruptImageException">The header breaks a rule of the format.</exception>
    /// <exception cref="Qcow2UnsupportedImageException">The header uses something unsupported.</exception>
    /// <exception cref="ArgumentNullException">header is null.</exception>
    public static void ThrowIfInvalid(Qcow2Header header, long fileLength, ReadOnlySpan<byte> headerCluster = default)
    {
        ArgumentNullException.ThrowIfNull(header);
        var buffer = new OneViolation();
        int n = Validate(header, fileLength, buffer, headerCluster);
        if (n > 0) throw buffer[0].ToException();
    }

    [InlineArray(1)]
    private struct OneViolation
    {
        private HeaderViolation _element;
    }

    private ref struct Sink
    {
        private readonly Span<HeaderViolation> _dest;
        public int Count;

        public Sink(Span<HeaderViolation> dest)
        {
            _dest = dest;
            Count = 0;
        }

        public readonly bool Full => Count >= _dest.Length;

        public void Add(HeaderRule rule, string field, int offset, ulong raw, bool unsupported, string message)
        {
            if (Count < _dest.Length) _dest[Count++] = new HeaderViolation(rule, field, offset, raw, unsupported, message);
        }
    }

    private static string Msg(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private static void Check(Qcow2Header h, long fileLength, ref Sink s, ReadOnlySpan<byte> headerCluster)
    {
        if (h.Magic != Qcow2Constants.Magic)
            s.Add(HeaderRule.Magic, "magic", HeaderView.MagicOffset, h.Magic, false, "Not a qcow2 image (bad magic).");

        bool v3 = h.Version >= 3;
        if (h.Version is not (2 or 3))
            s.Add(HeaderRule.Version, "version", HeaderView.VersionOffset, h.Version, true, Msg($"Unsupported qcow2 version {h.Version}."));

        bool clusterOk = h.ClusterBits is >= Qcow2Limits.MinClusterBits and <= Qcow2Limits.MaxClusterBits;
        if (h.ClusterBits < Qcow2Limits.MinClusterBits)
            s.Add(HeaderRule.ClusterBits, "cluster_bits", HeaderView.ClusterBitsOffset, h.ClusterBits, false,
                Msg($"cluster_bits {h.ClusterBits} is below the minimum of 9."));
        else if (h.ClusterBits > Qcow2Limits.MaxClusterBits)
            s.Add(HeaderRule.ClusterBits, "cluster_bits", HeaderView.ClusterBitsOffset, h.ClusterBits, true,
                Msg($"cluster_bits {h.ClusterBits} is above QEMU's limit of 21 (2 MiB clusters)."));
        long clusterSize = clusterOk ? 1L << (int)h.ClusterBits : 0;

        if (v3)
        {
            if (h.HeaderLength < Qcow2Constants.HeaderLengthV3Min)
                s.Add(HeaderRule.HeaderLength, "header_length", HeaderView.HeaderLengthOffset, h.HeaderLength, false,
                    Msg($"header_length {h.HeaderLength} is below 104."));
            else if (h.HeaderLength % 8 != 0)
                s.Add(HeaderRule.HeaderLength, "header_length", HeaderView.HeaderLengthOffset, h.HeaderLength, false,
                    Msg($"header_length {h.HeaderLength} is not a multiple of 8."));
            else if (clusterOk && h.HeaderLength > clusterSize)
                s.Add(HeaderRule.HeaderLength, "header_length", HeaderView.HeaderLengthOffset, h.HeaderLength, false,
                    Msg($"header_length {h.HeaderLength} runs past the first cluster ({clusterSize} bytes)."));

            if (h.RefcountOrder > Qcow2Limits.MaxRefcountOrder)
                s.Add(HeaderRule.RefcountOrder, "refcount_order", HeaderView.RefcountOrderOffset, h.RefcountOrder, false,
                    Msg($"refcount_order {h.RefcountOrder} is above 6."));
        }

        if (v3 && h.PaddingRaw != 0)
            s.Add(HeaderRule.HeaderPadding, "padding", Qcow2Constants.CompressionTypeOffset + 1, h.PaddingRaw, false,
                "The header padding after compression_type is not zero.");

        if (h.CryptMethod > Qcow2Constants.CryptLuks)
            s.Add(HeaderRule.CryptMethod, "crypt_method", HeaderView.CryptMethodOffset, h.CryptMethod, true,
                Msg($"Unknown encryption method {h.CryptMethod}."));

        if (h.Size > long.MaxValue)
            s.Add(HeaderRule.Size, "size", HeaderView.SizeOffset, h.Size, false, "The virtual size does not fit a signed 64-bit offset.");

        // Incompatible features.
        ulong unknown = FeatureBits.UnknownIncompatible((ulong)h.IncompatibleFeatures);
        if (unknown != 0)
        {
            var names = FindFeatureNameTable(h, headerCluster);
            while (unknown != 0)
            {
                int bit = System.Numerics.BitOperations.TrailingZeroCount(unknown);
                unknown &= unknown - 1;
                string name = names.TryGetName(FeatureType.Incompatible, bit, out var raw) && !raw.IsEmpty
                    ? Encoding.UTF8.GetString(raw)
                    : "unknown feature";
                s.Add(HeaderRule.UnknownIncompatibleFeature, "incompatible_features", HeaderView.IncompatibleFeaturesOffset,
                    (ulong)h.IncompatibleFeatures, true, Msg($"Unsupported incompatible feature bit {bit}: {name}."));
            }
        }

        // Compression type.
        bool ctBit = (h.IncompatibleFeatures & IncompatibleFeatures.CompressionType) != 0;
        if (ctBit && !h.HasCompressionTypeField)
            s.Add(HeaderRule.CompressionType, "compression_type", Qcow2Constants.CompressionTypeOffset, h.HeaderLength, false,
                "The compression type bit is set but header_length does not include the compression_type field.");
        else if (ctBit && h.CompressionType == CompressionType.Zlib)
            s.Add(HeaderRule.CompressionType, "compression_type", Qcow2Constants.CompressionTypeOffset, (byte)h.CompressionType, false,
                "The compression type bit is set but compression_type is zlib (0).");
        else if (!ctBit && h.CompressionType != CompressionType.Zlib)
            s.Add(HeaderRule.CompressionType, "compression_type", Qcow2Constants.CompressionTypeOffset, (byte)h.CompressionType, false,
                "compression_type is not zlib but the compression type bit is clear.");
        else if ((byte)h.CompressionType > (byte)CompressionType.Zstd)
            s.Add(HeaderRule.CompressionType, "compression_type", Qcow2Constants.CompressionTypeOffset, (byte)h.CompressionType, true,
                Msg($"Unknown compression type {(byte)h.CompressionType}."));

        if (h.HasExtendedL2 && h.ClusterBits < Qcow2Limits.MinExtendedL2ClusterBits)
            s.Add(HeaderRule.ExtendedL2ClusterBits, "cluster_bits", HeaderView.ClusterBitsOffset, h.ClusterBits, false,
                Msg($"Extended L2 entries need cluster_bits of at least 14; found {h.ClusterBits}."));

        bool dataFile = h.HasExternalDataFile;
        if ((h.AutoclearFeatures & AutoclearFeatures.DataFileRaw) != 0)
        {
            if (!dataFile)
                s.Add(HeaderRule.DataFileRawWithoutDataFile, "autoclear_features", HeaderView.AutoclearFeaturesOffset,
                    (ulong)h.AutoclearFeatures, false, "data-file-raw is set without the external data file bit.");
            else if (h.HasBackingFile)
                s.Add(HeaderRule.DataFileRawWithBackingFile, "backing_file_offset", HeaderView.BackingFileOffsetOffset,
                    h.BackingFileOffset, false, "A raw external data file cannot have a backing file.");
        }
        if (dataFile && h.SnapshotCount != 0)
            s.Add(HeaderRule.SnapshotsWithDataFile, "nb_snapshots", HeaderView.NbSnapshotsOffset, h.SnapshotCount, false,
                "Internal snapshots are not allowed with an external data file.");

        // Backing file name.
        if (h.BackingFileOffset != 0)
        {
            int headerEnd = h.ExtensionsStart;
            if (h.BackingFileOffset < (ulong)headerEnd)
                s.Add(HeaderRule.BackingFileOffset, "backing_file_offset", HeaderView.BackingFileOffsetOffset, h.BackingFileOffset, false,
                    "The backing file name overlaps the header.");
            else if (clusterOk && (h.BackingFileOffset > (ulong)clusterSize || h.BackingFileSize > (ulong)clusterSize - h.BackingFileOffset))
                s.Add(HeaderRule.BackingFileOffset, "backing_file_offset", HeaderView.BackingFileOffsetOffset, h.BackingFileOffset, false,
                    "The backing file name lies outside the first cluster.");
            if (h.BackingFileSize > Qcow2Limits.MaxBackingFileNameLength)
                s.Add(HeaderRule.BackingFileSize, "backing_file_size", HeaderView.BackingFileSizeOffset, h.BackingFileSize, false,
                    Msg($"The backing file name is {h.BackingFileSize} bytes; at most 1023 are allowed."));
        }

        // Tables.
        if (clusterOk)
        {
            // L1 table.
            if (h.L1Size > Qcow2Limits.MaxL1Entries)
                s.Add(HeaderRule.L1SizeLimit, "l1_size", HeaderView.L1SizeOffset, h.L1Size, true,
                    Msg($"The L1 table has {h.L1Size} entries; QEMU's limit is {Qcow2Limits.MaxL1Entries} (32 MiB)."));
            if (h.Size <= long.MaxValue && (!h.HasExtendedL2 || h.ClusterBits >= Qcow2Limits.MinExtendedL2ClusterBits))
            {
                var g = ClusterGeometry.Create((int)h.ClusterBits, h.HasExtendedL2);
                long needed = g.L1EntriesFor((long)h.Size);
                if (h.L1Size < needed)
                    s.Add(HeaderRule.L1SizeTooSmall, "l1_size", HeaderView.L1SizeOffset, h.L1Size, false,
                        Msg($"The L1 table has {h.L1Size} entries but the virtual size {h.Size} needs {needed}."));
            }
            CheckTable(ref s, HeaderRule.L1TableOffset, "l1_table_offset", HeaderView.L1TableOffsetOffset, h.L1TableOffset,
                (ulong)h.L1Size * 8, clusterSize, fileLength, mustBeNonZero: h.L1Size != 0, "L1 table");

            // Refcount table.
            if (h.RefcountTableClusters == 0)
                s.Add(HeaderRule.RefcountTableClusters, "refcount_table_clusters", HeaderView.RefcountTableClustersOffset, 0, false,
                    "The image has no refcount table.");
            else if ((ulong)h.RefcountTableClusters * (ulong)clusterSize > Qcow2Limits.MaxRefcountTableSize)
                s.Add(HeaderRule.RefcountTableClusters, "refcount_table_clusters", HeaderView.RefcountTableClustersOffset,
                    h.RefcountTableClusters, true, "The refcount table is larger than QEMU's 8 MiB limit.");
            CheckTable(ref s, HeaderRule.RefcountTableOffset, "refcount_table_offset", HeaderView.RefcountTableOffsetOffset,
                h.RefcountTableOffset, (ulong)h.RefcountTableClusters * (ulong)clusterSize, clusterSize, fileLength,
                mustBeNonZero: true, "refcount table");

            // Snapshot table: its byte length is unknown here; at least one fixed entry per snapshot.
            if (h.SnapshotCount != 0)
                CheckTable(ref s, HeaderRule.SnapshotsOffset, "snapshots_offset", HeaderView.SnapshotsOffsetOffset, h.SnapshotsOffset,
                    (ulong)h.SnapshotCount * SnapshotTableEntryView.SizeInBytes, clusterSize, fileLength, mustBeNonZero: true, "snapshot table");
        }
        if (h.SnapshotCount > Qcow2Limits.MaxSnapshots)
            s.Add(HeaderRule.SnapshotCount, "nb_snapshots", HeaderView.NbSnapshotsOffset, h.SnapshotCount, true,
                Msg($"{h.SnapshotCount} snapshots; QEMU's limit is 65536."));

        if (fileLength >= 0 && (ulong)fileLength < (ulong)h.ExtensionsStart)
            s.Add(HeaderRule.BeyondEndOfFile, "header_length", HeaderView.HeaderLengthOffset, (ulong)h.ExtensionsStart, false,
                Msg($"The file ({fileLength} bytes) is shorter than the header."));

        if (!headerCluster.IsEmpty) CheckExtensions(h, ref s, headerCluster, clusterSize);
    }

    private static void CheckTable(ref Sink s, HeaderRule rule, string field, int fieldOffset, ulong offset, ulong byteLength,
        long clusterSize, long fileLength, bool mustBeNonZero, string what)
    {
        if ((offset & (ulong)(clusterSize - 1)) != 0)
        {
            s.Add(rule, field, fieldOffset, offset, false, Msg($"The {what} offset is not aligned to a cluster."));
            return;
        }
        if (mustBeNonZero && offset == 0)
        {
            s.Add(rule, field, fieldOffset, offset, false, Msg($"The {what} would overlap the header (offset 0)."));
            return;
        }
        if (offset > long.MaxValue || byteLength > (ulong)long.MaxValue - offset)
        {
            s.Add(rule, field, fieldOffset, offset, false, Msg($"The end of the {what} does not fit a 64-bit offset."));
            return;
        }
        if (fileLength >= 0 && byteLength != 0 && offset + byteLength > (ulong)fileLength)
            s.Add(HeaderRule.BeyondEndOfFile, field, fieldOffset, offset, false,
                Msg($"The {what} (0x{offset:x}, {byteLength} bytes) runs past the end of the file ({fileLength} bytes)."));
    }

    private static FeatureNameTable FindFeatureNameTable(Qcow2Header h, ReadOnlySpan<byte> headerCluster)
    {
        if (headerCluster.IsEmpty) return default;
        var area = ExtensionArea(h, headerCluster);
        HeaderExtensionEnumerator.TryFind(area, 0, Qcow2Constants.ExtensionFeatureNameTable, out var data, out _);
        return new FeatureNameTable(data);
    }

    // The extension area re-based at 0 so that the walker's start is 0 (header_length may be odd).
    private static ReadOnlySpan<byte> ExtensionArea(Qcow2Header h, ReadOnlySpan<byte> headerCluster)
    {
        // The area ends with the first cluster even when the caller passes more.
        int limit = h.ClusterBits is >= Qcow2Limits.MinClusterBits and <= Qcow2Limits.MaxClusterBits
            ? Math.Min(headerCluster.Length, h.ClusterSize)
            : headerCluster.Length;
        int start = h.ExtensionsStart;
        int end = h.ExtensionsEnd(limit);
        if (start < 0 || start > end || end > limit) return default;
        return headerCluster[start..end];
    }

    private static void CheckExtensions(Qcow2Header h, ref Sink s, ReadOnlySpan<byte> headerCluster, long clusterSize)
    {
        int areaStart = h.ExtensionsStart;
        var area = ExtensionArea(h, headerCluster);
        bool bitmaps = false, fde = false;
        var e = new HeaderExtensionEnumerator(area, 0);
        while (e.MoveNext())
        {
            var ext = e.Current;
            int at = areaStart + ext.Offset;
            switch (ext.Type)
            {
                case Qcow2Constants.ExtensionBitmaps:
                    bitmaps = true;
                    CheckBitmapsExtension(ref s, ext.Data, at, clusterSize);
                    break;
                case Qcow2Constants.ExtensionFullDiskEncryption:
                    fde = true;
                    if (ext.Data.Length != Qcow2Constants.FullDiskEncryptionExtensionSize)
                        s.Add(HeaderRule.EncryptionExtension, "crypto_header", at, (ulong)ext.Data.Length, false,
                            "The full disk encryption header pointer is not 16 bytes.");
                    else
                    {
                        var p = EncryptionHeaderPointerReadOnlyView.Create(ext.Data);
                        if (clusterSize != 0 && (p.Offset & (ulong)(clusterSize - 1)) != 0)
                            s.Add(HeaderRule.EncryptionExtension, "crypto_header.offset", at + 8, p.Offset, false,
                                "The encryption header offset is not aligned to a cluster.");
                    }
                    if (h.CryptMethod != Qcow2Constants.CryptLuks)
                        s.Add(HeaderRule.EncryptionExtension, "crypt_method", HeaderView.CryptMethodOffset, h.CryptMethod, false,
                            "A full disk encryption header pointer is present but crypt_method is not LUKS.");
                    break;
                case Qcow2Constants.ExtensionBackingFormat:
                    if (ext.Data.Length > Qcow2Limits.MaxBackingFormatLength)
                        s.Add(HeaderRule.StringExtension, "backing_format", at, (ulong)ext.Data.Length, true,
                            Msg($"A {ext.Data.Length}-byte backing format name is longer than QEMU's 15 bytes."));
                    break;
            }
        }
        var error = e.Error;
        if (error != HeaderExtensionError.None)
            s.Add(HeaderRule.ExtensionArea, "header_extension", areaStart + Math.Max(0, e.ErrorOffset), (ulong)error, false,
                error switch
                {
                    HeaderExtensionError.Truncated => "The header extension area ends in the middle of an extension header.",
                    HeaderExtensionError.TooLong => "A header extension runs past the end of the extension area.",
                    HeaderExtensionError.Duplicate => "A header extension appears more than once.",
                    _ => "The header extension area does not start at a multiple of 8.",
                });
        if (!bitmaps && (h.AutoclearFeatures & AutoclearFeatures.Bitmaps) != 0 && error == HeaderExtensionError.None)
            s.Add(HeaderRule.BitmapsExtension, "autoclear_features", HeaderView.AutoclearFeaturesOffset, (ulong)h.AutoclearFeatures, false,
                "The bitmaps autoclear bit is set without a bitmaps extension.");
        if (!fde && h.CryptMethod == Qcow2Constants.CryptLuks && error == HeaderExtensionError.None)
            s.Add(HeaderRule.EncryptionExtension, "crypt_method", HeaderView.CryptMethodOffset, h.CryptMethod, false,
                "LUKS encryption without a full disk encryption header pointer.");
    }

    private static void CheckBitmapsExtension(ref Sink s, ReadOnlySpan<byte> data, int at, long clusterSize)
    {
        if (data.Length != Qcow2Constants.BitmapsExtensionSize)
        {
            s.Add(HeaderRule.BitmapsExtension, "bitmaps", at, (ulong)data.Length, false, "The bitmaps extension is not 24 bytes.");
            return;
        }
        var b = BitmapsExtensionReadOnlyView.Create(data);
        int dataAt = at + Qcow2Constants.HeaderExtensionHeaderSize;
        if (b.NbBitmaps == 0)
            s.Add(HeaderRule.BitmapsExtension, "bitmaps.nb_bitmaps", dataAt, 0, false, "The bitmaps extension lists no bitmaps.");
        else if (b.NbBitmaps > Qcow2Limits.MaxBitmaps)
            s.Add(HeaderRule.BitmapsExtension, "bitmaps.nb_bitmaps", dataAt, b.NbBitmaps, true,
                Msg($"{b.NbBitmaps} bitmaps; QEMU's limit is 65535."));
        if (b.Reserved != 0)
            s.Add(HeaderRule.BitmapsExtension, "bitmaps.reserved", dataAt + 4, b.Reserved, false, "Reserved bitmaps extension field is not zero.");
        if (b.BitmapDirectorySize > Qcow2Limits.MaxBitmapDirectorySize)
            s.Add(HeaderRule.BitmapsExtension, "bitmaps.bitmap_directory_size", dataAt + 8, b.BitmapDirectorySize, true,
                "The bitmap directory is larger than QEMU's limit.");
        if (clusterSize != 0 && (b.BitmapDirectoryOffset & (ulong)(clusterSize - 1)) != 0)
            s.Add(HeaderRule.BitmapsExtension, "bitmaps.bitmap_directory_offset", dataAt + 16, b.BitmapDirectoryOffset, false,
                "The bitmap directory offset is not aligned to a cluster.");
    }
}
