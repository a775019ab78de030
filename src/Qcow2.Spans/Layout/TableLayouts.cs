using Qcow2.Layout;

namespace Qcow2.Spans.Layout;

/// <summary>
/// The fixed part of a snapshot table entry (spec "Snapshots"):
/// <code>
///  0 l1_table_offset  8 l1_size  12 id_str_size  14 name_size  16 date_sec  20 date_nsec
/// 24 vm_clock_nsec  32 vm_state_size  36 extra_data_size
/// </code>
/// followed by extra_data_size bytes of extra data (<see cref="SnapshotExtraDataView"/>),
/// the id string, the name, and padding to a multiple of 8.
/// </summary>
[OnDiskStruct(40, NaturalAlignment = true)]
public readonly ref partial struct SnapshotTableEntryView
{
    [OnDiskField(0)] public partial ulong L1TableOffset { get; set; }
    [OnDiskField(8)] public partial uint L1Size { get; set; }
    [OnDiskField(12)] public partial ushort IdStringSize { get; set; }
    [OnDiskField(14)] public partial ushort NameSize { get; set; }
    [OnDiskField(16)] public partial uint DateSeconds { get; set; }
    [OnDiskField(20)] public partial uint DateNanoseconds { get; set; }
    [OnDiskField(24)] public partial ulong VmClockNanoseconds { get; set; }
    [OnDiskField(32)] public partial uint VmStateSize { get; set; }
    [OnDiskField(36)] public partial uint ExtraDataSize { get; set; }
}

/// <summary>
/// The known snapshot extra data, relative to its start (entry byte 40):
/// <c>0 vm_state_size_large  8 disk_size  16 icount</c>. Each field is present only when
/// extra_data_size covers it; version 3 images carry at least the first two.
/// </summary>
[OnDiskStruct(24, NaturalAlignment = true)]
public readonly ref partial struct SnapshotExtraDataView
{
    [OnDiskField(0)] public partial ulong VmStateSizeLarge { get; set; }
    [OnDiskField(8)] public partial ulong DiskSize { get; set; }
    [OnDiskField(16)] public partial ulong Icount { get; set; }
}

/// <summary>
/// The fixed part of a bitmap directory entry (spec "Bitmap directory"):
/// <code>
///  0 bitmap_table_offset  8 bitmap_table_size  12 flags  16 type  17 granularity_bits
/// 18 name_size  20 extra_data_size
/// </code>
/// followed by the extra data, the name, and zero padding to a multiple of 8.
/// </summary>
[OnDiskStruct(24, NaturalAlignment = true)]
public readonly ref partial struct BitmapDirectoryEntryView
{
    [OnDiskField(0)] public partial ulong BitmapTableOffset { get; set; }
    [OnDiskField(8)] public partial uint BitmapTableSize { get; set; }
    [OnDiskField(12)] public partial uint Flags { get; set; }
    [OnDiskField(16)] public partial byte Type { get; set; }
    [OnDiskField(17)] public partial byte GranularityBits { get; set; }
    [OnDiskField(18)] public partial ushort NameSize { get; set; }
    [OnDiskField(20)] public partial uint ExtraDataSize { get; set; }
}

/// <summary>
/// The LUKS1 partition header (shared/reference/luks1-notes.md, section 1), 592 bytes:
/// <code>
///   0 magic[6]  6 version  8 cipher_name[32]  40 cipher_mode[32]  72 hash_spec[32]
/// 104 payload_offset  108 key_bytes  112 mk_digest[20]  132 mk_digest_salt[32]
/// 164 mk_digest_iterations  168 uuid[40]  208 key slots (8 x 48, <see cref="LuksKeySlotView"/>)
/// </code>
/// </summary>
[OnDiskStruct(592)]
public readonly ref partial struct LuksPartitionHeaderView
{
    [OnDiskField(0, Length = 6)] public partial Span<byte> Magic { get; }
    [OnDiskField(6)] public partial ushort Version { get; set; }
    [OnDiskField(8, Length = 32)] public partial Span<byte> CipherName { get; }
    [OnDiskField(40, Length = 32)] public partial Span<byte> CipherMode { get; }
    [OnDiskField(72, Length = 32)] public partial Span<byte> HashSpec { get; }
    [OnDiskField(104)] public partial uint PayloadOffset { get; set; }
    [OnDiskField(108)] public partial uint KeyBytes { get; set; }
    [OnDiskField(112, Length = 20)] public partial Span<byte> MasterKeyDigest { get; }
    [OnDiskField(132, Length = 32)] public partial Span<byte> MasterKeyDigestSalt { get; }
    [OnDiskField(164)] public partial uint MasterKeyDigestIterations { get; set; }
    [OnDiskField(168, Length = 40)] public partial Span<byte> Uuid { get; }
    [OnDiskField(208, Length = 384)] public partial Span<byte> KeySlots { get; }
}

/// <summary>
/// One LUKS1 key slot (luks1-notes.md, section 2), 48 bytes:
/// <c>0 active  4 iterations  8 salt[32]  40 key_material_offset  44 stripes</c>.
/// </summary>
[OnDiskStruct(48, NaturalAlignment = true)]
public readonly ref partial struct LuksKeySlotView
{
    [OnDiskField(0)] public partial uint Active { get; set; }
    [OnDiskField(4)] public partial uint Iterations { get; set; }
    [OnDiskField(8, Length = 32)] public partial Span<byte> Salt { get; }
    [OnDiskField(40)] public partial uint KeyMaterialOffset { get; set; }
    [OnDiskField(44)] public partial uint Stripes { get; set; }
}
