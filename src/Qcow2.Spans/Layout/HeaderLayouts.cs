using Qcow2.Layout;

namespace Qcow2.Spans.Layout;

// Declarations of the on-disk structures of qcow2 (shared/reference/qcow2-spec.txt).
// Each declaration is read by the Qcow2.Generators source generator, which implements the
// partial properties as big-endian reads and writes, and adds the read-only twin
// (<Name>ReadOnlyView), the layout constants and the field table.

/// <summary>
/// The qcow2 image header, version 3 with the compression_type field (spec "Header").
/// <code>
///   0 magic  4 version  8 backing_file_offset  16 backing_file_size  20 cluster_bits
///  24 size  32 crypt_method  36 l1_size  40 l1_table_offset  48 refcount_table_offset
///  56 refcount_table_clusters  60 nb_snapshots  64 snapshots_offset            (v2 ends at 72)
///  72 incompatible_features  80 compatible_features  88 autoclear_features
///  96 refcount_order  100 header_length                                        (v3 minimum: 104)
/// 104 compression_type  105..111 padding to a multiple of 8
/// </code>
/// A real header may be shorter (header_length); parse it through <c>Qcow2Header</c>, which
/// treats absent fields as zero.
/// </summary>
[OnDiskStruct(112, NaturalAlignment = true)]
public readonly ref partial struct HeaderView
{
    [OnDiskField(0)] public partial uint Magic { get; set; }
    [OnDiskField(4)] public partial uint Version { get; set; }
    [OnDiskField(8)] public partial ulong BackingFileOffset { get; set; }
    [OnDiskField(16)] public partial uint BackingFileSize { get; set; }
    [OnDiskField(20)] public partial uint ClusterBits { get; set; }
    [OnDiskField(24)] public partial ulong Size { get; set; }
    [OnDiskField(32)] public partial uint CryptMethod { get; set; }
    [OnDiskField(36)] public partial uint L1Size { get; set; }
    [OnDiskField(40)] public partial ulong L1TableOffset { get; set; }
    [OnDiskField(48)] public partial ulong RefcountTableOffset { get; set; }
    [OnDiskField(56)] public partial uint RefcountTableClusters { get; set; }
    [OnDiskField(60)] public partial uint NbSnapshots { get; set; }
    [OnDiskField(64)] public partial ulong SnapshotsOffset { get; set; }
    [OnDiskField(72)] public partial ulong IncompatibleFeatures { get; set; }
    [OnDiskField(80)] public partial ulong CompatibleFeatures { get; set; }
    [OnDiskField(88)] public partial ulong AutoclearFeatures { get; set; }
    [OnDiskField(96)] public partial uint RefcountOrder { get; set; }
    [OnDiskField(100)] public partial uint HeaderLength { get; set; }
    [OnDiskField(104)] public partial byte CompressionType { get; set; }
    [OnDiskField(105, Length = 7)] public partial Span<byte> Padding { get; }
}

/// <summary>The version 2 header: the first 72 bytes of <see cref="HeaderView"/>.</summary>
[OnDiskStruct(72, NaturalAlignment = true)]
public readonly ref partial struct HeaderV2View
{
    [OnDiskField(0)] public partial uint Magic { get; set; }
    [OnDiskField(4)] public partial uint Version { get; set; }
    [OnDiskField(8)] public partial ulong BackingFileOffset { get; set; }
    [OnDiskField(16)] public partial uint BackingFileSize { get; set; }
    [OnDiskField(20)] public partial uint ClusterBits { get; set; }
    [OnDiskField(24)] public partial ulong Size { get; set; }
    [OnDiskField(32)] public partial uint CryptMethod { get; set; }
    [OnDiskField(36)] public partial uint L1Size { get; set; }
    [OnDiskField(40)] public partial ulong L1TableOffset { get; set; }
    [OnDiskField(48)] public partial ulong RefcountTableOffset { get; set; }
    [OnDiskField(56)] public partial uint RefcountTableClusters { get; set; }
    [OnDiskField(60)] public partial uint NbSnapshots { get; set; }
    [OnDiskField(64)] public partial ulong SnapshotsOffset { get; set; }
}

/// <summary>
/// The 8-byte header that precedes each header extension (spec "Header extensions"):
/// <c>0 type  4 length</c>, followed by the data and padding to a multiple of 8.
/// </summary>
[OnDiskStruct(8, NaturalAlignment = true)]
public readonly ref partial struct HeaderExtensionHeaderView
{
    [OnDiskField(0)] public partial uint Type { get; set; }
    [OnDiskField(4)] public partial uint Length { get; set; }
}

/// <summary>
/// One entry of the feature name table extension (spec "Feature name table"):
/// <c>0 type (0 incompatible, 1 compatible, 2 autoclear)  1 bit number  2..47 name</c>.
/// </summary>
[OnDiskStruct(48, NaturalAlignment = true)]
public readonly ref partial struct FeatureNameEntryView
{
    [OnDiskField(0)] public partial byte Type { get; set; }
    [OnDiskField(1)] public partial byte Bit { get; set; }
    [OnDiskField(2, Length = 46)] public partial Span<byte> Name { get; }
}

/// <summary>
/// The bitmaps extension data (spec "Bitmaps extension"):
/// <c>0 nb_bitmaps  4 reserved  8 bitmap_directory_size  16 bitmap_directory_offset</c>.
/// </summary>
[OnDiskStruct(24, NaturalAlignment = true)]
public readonly ref partial struct BitmapsExtensionView
{
    [OnDiskField(0)] public partial uint NbBitmaps { get; set; }
    [OnDiskField(4)] public partial uint Reserved { get; set; }
    [OnDiskField(8)] public partial ulong BitmapDirectorySize { get; set; }
    [OnDiskField(16)] public partial ulong BitmapDirectoryOffset { get; set; }
}

/// <summary>
/// The full disk encryption header pointer extension (spec "Full disk encryption header
/// pointer"): <c>0 offset  8 length</c>.
/// </summary>
[OnDiskStruct(16, NaturalAlignment = true)]
public readonly ref partial struct EncryptionHeaderPointerView
{
    [OnDiskField(0)] public partial ulong Offset { get; set; }
    [OnDiskField(8)] public partial ulong Length { get; set; }
}
