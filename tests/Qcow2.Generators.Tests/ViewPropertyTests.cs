using FsCheck;
using FsCheck.Fluent;
using Microsoft.FSharp.Core;
using Qcow2.Layout;
using Qcow2.Spans.Layout;

namespace Qcow2.Generators.Tests;

/// <summary>
/// The views as Qcow2.Spans compiled them, checked against the specification: every getter equals
/// a hand-written big-endian read at the offset the spec gives, and every setter changes exactly
/// its own bytes. The offsets below are copied by hand from shared/reference/qcow2-spec.txt and
/// luks1-notes.md, as the spec writes them ("Byte 8 - 15"), not from the declarations.
/// </summary>
public class ViewPropertyTests
{
    /// <summary>Fixed so that a failure replays; change it only to explore.</summary>
    private const ulong Seed = 0x5EED_0C0F_2B16_0001;
    private const int MaxTest = 150;

    /// <summary>Bytes before the view in the buffer, so that views at an offset are exercised too.</summary>
    private const int Slack = 13;

    internal delegate ulong IntRead(Span<byte> data);
    internal delegate void IntWrite(Span<byte> data, ulong value);
    internal delegate Span<byte> BytesRead(Span<byte> data);
    internal delegate ReadOnlySpan<byte> BytesReadOnly(Span<byte> data);
    internal delegate bool SpanTest(Span<byte> data);
    internal delegate int SpanMeasure(Span<byte> data);

    /// <summary>One field as the spec places it: bytes First to Last inclusive.</summary>
    internal sealed record SpecField(string Name, int First, int Last, bool IsBytes,
        IntRead? Get, IntRead? GetReadOnly, IntWrite? Set, BytesRead? GetBytes, BytesReadOnly? GetBytesReadOnly)
    {
        public int Width => Last - First + 1;

        public OnDiskFieldKind Kind => IsBytes ? OnDiskFieldKind.Bytes : Width switch
        {
            1 => OnDiskFieldKind.UInt8,
            2 => OnDiskFieldKind.UInt16,
            4 => OnDiskFieldKind.UInt32,
            8 => OnDiskFieldKind.UInt64,
            _ => throw new InvalidOperationException($"spec table: {Name} has width {Width}"),
        };

        public override string ToString() => $"{Name} (bytes {First}-{Last})";
    }

    internal sealed record SpecStruct(string Name, int Size,
        SpanTest TryCreate, SpanTest TryCreateReadOnly,
        Func<OnDiskFieldInfo[]> Fields, Func<OnDiskFieldInfo[]> FieldsReadOnly, int SizeConstant, int SizeConstantReadOnly,
        SpanMeasure DataLength, SpanMeasure DataLengthReadOnly, SpanMeasure DataLengthAsReadOnly,
        SpecField[] Spec)
    {
        public override string ToString() => Name;
    }

    private static SpecField Int(string name, int first, int last, IntRead get, IntRead getReadOnly, IntWrite set)
        => new(name, first, last, false, get, getReadOnly, set, null, null);

    private static SpecField Bytes(string name, int first, int last, BytesRead get, BytesReadOnly getReadOnly)
        => new(name, first, last, true, null, null, null, get, getReadOnly);

    internal static readonly SpecStruct[] Structs =
    {
        // qcow2-spec.txt "Header": v3 fields to byte 104, padded to a multiple of 8 (header_length).
        new SpecStruct("Header", 112,
            d => HeaderView.TryCreate(d, out _), d => HeaderReadOnlyView.TryCreate(d, out _),
            () => HeaderView.Fields.ToArray(), () => HeaderReadOnlyView.Fields.ToArray(), HeaderView.SizeInBytes, HeaderReadOnlyView.SizeInBytes,
            d => HeaderView.Create(d).Data.Length, d => HeaderReadOnlyView.Create(d).Data.Length, d => HeaderView.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Int("Magic", 0, 3, d => HeaderView.Create(d).Magic, d => HeaderReadOnlyView.Create(d).Magic, (d, x) => { HeaderView view = HeaderView.Create(d); view.Magic = (uint)x; }),
                Int("Version", 4, 7, d => HeaderView.Create(d).Version, d => HeaderReadOnlyView.Create(d).Version, (d, x) => { HeaderView view = HeaderView.Create(d); view.Version = (uint)x; }),
                Int("BackingFileOffset", 8, 15, d => HeaderView.Create(d).BackingFileOffset, d => HeaderReadOnlyView.Create(d).BackingFileOffset, (d, x) => { HeaderView view = HeaderView.Create(d); view.BackingFileOffset = (ulong)x; }),
                Int("BackingFileSize", 16, 19, d => HeaderView.Create(d).BackingFileSize, d => HeaderReadOnlyView.Create(d).BackingFileSize, (d, x) => { HeaderView view = HeaderView.Create(d); view.BackingFileSize = (uint)x; }),
                Int("ClusterBits", 20, 23, d => HeaderView.Create(d).ClusterBits, d => HeaderReadOnlyView.Create(d).ClusterBits, (d, x) => { HeaderView view = HeaderView.Create(d); view.ClusterBits = (uint)x; }),
                Int("Size", 24, 31, d => HeaderView.Create(d).Size, d => HeaderReadOnlyView.Create(d).Size, (d, x) => { HeaderView view = HeaderView.Create(d); view.Size = (ulong)x; }),
                Int("CryptMethod", 32, 35, d => HeaderView.Create(d).CryptMethod, d => HeaderReadOnlyView.Create(d).CryptMethod, (d, x) => { HeaderView view = HeaderView.Create(d); view.CryptMethod = (uint)x; }),
                Int("L1Size", 36, 39, d => HeaderView.Create(d).L1Size, d => HeaderReadOnlyView.Create(d).L1Size, (d, x) => { HeaderView view = HeaderView.Create(d); view.L1Size = (uint)x; }),
                Int("L1TableOffset", 40, 47, d => HeaderView.Create(d).L1TableOffset, d => HeaderReadOnlyView.Create(d).L1TableOffset, (d, x) => { HeaderView view = HeaderView.Create(d); view.L1TableOffset = (ulong)x; }),
                Int("RefcountTableOffset", 48, 55, d => HeaderView.Create(d).RefcountTableOffset, d => HeaderReadOnlyView.Create(d).RefcountTableOffset, (d, x) => { HeaderView view = HeaderView.Create(d); view.RefcountTableOffset = (ulong)x; }),
                Int("RefcountTableClusters", 56, 59, d => HeaderView.Create(d).RefcountTableClusters, d => HeaderReadOnlyView.Create(d).RefcountTableClusters, (d, x) => { HeaderView view = HeaderView.Create(d); view.RefcountTableClusters = (uint)x; }),
                Int("NbSnapshots", 60, 63, d => HeaderView.Create(d).NbSnapshots, d => HeaderReadOnlyView.Create(d).NbSnapshots, (d, x) => { HeaderView view = HeaderView.Create(d); view.NbSnapshots = (uint)x; }),
                Int("SnapshotsOffset", 64, 71, d => HeaderView.Create(d).SnapshotsOffset, d => HeaderReadOnlyView.Create(d).SnapshotsOffset, (d, x) => { HeaderView view = HeaderView.Create(d); view.SnapshotsOffset = (ulong)x; }),
                Int("IncompatibleFeatures", 72, 79, d => HeaderView.Create(d).IncompatibleFeatures, d => HeaderReadOnlyView.Create(d).IncompatibleFeatures, (d, x) => { HeaderView view = HeaderView.Create(d); view.IncompatibleFeatures = (ulong)x; }),
                Int("CompatibleFeatures", 80, 87, d => HeaderView.Create(d).CompatibleFeatures, d => HeaderReadOnlyView.Create(d).CompatibleFeatures, (d, x) => { HeaderView view = HeaderView.Create(d); view.CompatibleFeatures = (ulong)x; }),
                Int("AutoclearFeatures", 88, 95, d => HeaderView.Create(d).AutoclearFeatures, d => HeaderReadOnlyView.Create(d).AutoclearFeatures, (d, x) => { HeaderView view = HeaderView.Create(d); view.AutoclearFeatures = (ulong)x; }),
                Int("RefcountOrder", 96, 99, d => HeaderView.Create(d).RefcountOrder, d => HeaderReadOnlyView.Create(d).RefcountOrder, (d, x) => { HeaderView view = HeaderView.Create(d); view.RefcountOrder = (uint)x; }),
                Int("HeaderLength", 100, 103, d => HeaderView.Create(d).HeaderLength, d => HeaderReadOnlyView.Create(d).HeaderLength, (d, x) => { HeaderView view = HeaderView.Create(d); view.HeaderLength = (uint)x; }),
                Int("CompressionType", 104, 104, d => HeaderView.Create(d).CompressionType, d => HeaderReadOnlyView.Create(d).CompressionType, (d, x) => { HeaderView view = HeaderView.Create(d); view.CompressionType = (byte)x; }),
                Bytes("Padding", 105, 111, d => HeaderView.Create(d).Padding, d => HeaderReadOnlyView.Create(d).Padding),
            }),

        // qcow2-spec.txt "Header": "For version 2, the header is exactly 72 bytes".
        new SpecStruct("HeaderV2", 72,
            d => HeaderV2View.TryCreate(d, out _), d => HeaderV2ReadOnlyView.TryCreate(d, out _),
            () => HeaderV2View.Fields.ToArray(), () => HeaderV2ReadOnlyView.Fields.ToArray(), HeaderV2View.SizeInBytes, HeaderV2ReadOnlyView.SizeInBytes,
            d => HeaderV2View.Create(d).Data.Length, d => HeaderV2ReadOnlyView.Create(d).Data.Length, d => HeaderV2View.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Int("Magic", 0, 3, d => HeaderV2View.Create(d).Magic, d => HeaderV2ReadOnlyView.Create(d).Magic, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.Magic = (uint)x; }),
                Int("Version", 4, 7, d => HeaderV2View.Create(d).Version, d => HeaderV2ReadOnlyView.Create(d).Version, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.Version = (uint)x; }),
                Int("BackingFileOffset", 8, 15, d => HeaderV2View.Create(d).BackingFileOffset, d => HeaderV2ReadOnlyView.Create(d).BackingFileOffset, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.BackingFileOffset = (ulong)x; }),
                Int("BackingFileSize", 16, 19, d => HeaderV2View.Create(d).BackingFileSize, d => HeaderV2ReadOnlyView.Create(d).BackingFileSize, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.BackingFileSize = (uint)x; }),
                Int("ClusterBits", 20, 23, d => HeaderV2View.Create(d).ClusterBits, d => HeaderV2ReadOnlyView.Create(d).ClusterBits, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.ClusterBits = (uint)x; }),
                Int("Size", 24, 31, d => HeaderV2View.Create(d).Size, d => HeaderV2ReadOnlyView.Create(d).Size, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.Size = (ulong)x; }),
                Int("CryptMethod", 32, 35, d => HeaderV2View.Create(d).CryptMethod, d => HeaderV2ReadOnlyView.Create(d).CryptMethod, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.CryptMethod = (uint)x; }),
                Int("L1Size", 36, 39, d => HeaderV2View.Create(d).L1Size, d => HeaderV2ReadOnlyView.Create(d).L1Size, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.L1Size = (uint)x; }),
                Int("L1TableOffset", 40, 47, d => HeaderV2View.Create(d).L1TableOffset, d => HeaderV2ReadOnlyView.Create(d).L1TableOffset, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.L1TableOffset = (ulong)x; }),
                Int("RefcountTableOffset", 48, 55, d => HeaderV2View.Create(d).RefcountTableOffset, d => HeaderV2ReadOnlyView.Create(d).RefcountTableOffset, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.RefcountTableOffset = (ulong)x; }),
                Int("RefcountTableClusters", 56, 59, d => HeaderV2View.Create(d).RefcountTableClusters, d => HeaderV2ReadOnlyView.Create(d).RefcountTableClusters, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.RefcountTableClusters = (uint)x; }),
                Int("NbSnapshots", 60, 63, d => HeaderV2View.Create(d).NbSnapshots, d => HeaderV2ReadOnlyView.Create(d).NbSnapshots, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.NbSnapshots = (uint)x; }),
                Int("SnapshotsOffset", 64, 71, d => HeaderV2View.Create(d).SnapshotsOffset, d => HeaderV2ReadOnlyView.Create(d).SnapshotsOffset, (d, x) => { HeaderV2View view = HeaderV2View.Create(d); view.SnapshotsOffset = (ulong)x; }),
            }),

        // qcow2-spec.txt "Header extensions".
        new SpecStruct("HeaderExtensionHeader", 8,
            d => HeaderExtensionHeaderView.TryCreate(d, out _), d => HeaderExtensionHeaderReadOnlyView.TryCreate(d, out _),
            () => HeaderExtensionHeaderView.Fields.ToArray(), () => HeaderExtensionHeaderReadOnlyView.Fields.ToArray(), HeaderExtensionHeaderView.SizeInBytes, HeaderExtensionHeaderReadOnlyView.SizeInBytes,
            d => HeaderExtensionHeaderView.Create(d).Data.Length, d => HeaderExtensionHeaderReadOnlyView.Create(d).Data.Length, d => HeaderExtensionHeaderView.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Int("Type", 0, 3, d => HeaderExtensionHeaderView.Create(d).Type, d => HeaderExtensionHeaderReadOnlyView.Create(d).Type, (d, x) => { HeaderExtensionHeaderView view = HeaderExtensionHeaderView.Create(d); view.Type = (uint)x; }),
                Int("Length", 4, 7, d => HeaderExtensionHeaderView.Create(d).Length, d => HeaderExtensionHeaderReadOnlyView.Create(d).Length, (d, x) => { HeaderExtensionHeaderView view = HeaderExtensionHeaderView.Create(d); view.Length = (uint)x; }),
            }),

        // qcow2-spec.txt "Feature name table".
        new SpecStruct("FeatureNameEntry", 48,
            d => FeatureNameEntryView.TryCreate(d, out _), d => FeatureNameEntryReadOnlyView.TryCreate(d, out _),
            () => FeatureNameEntryView.Fields.ToArray(), () => FeatureNameEntryReadOnlyView.Fields.ToArray(), FeatureNameEntryView.SizeInBytes, FeatureNameEntryReadOnlyView.SizeInBytes,
            d => FeatureNameEntryView.Create(d).Data.Length, d => FeatureNameEntryReadOnlyView.Create(d).Data.Length, d => FeatureNameEntryView.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Int("Type", 0, 0, d => FeatureNameEntryView.Create(d).Type, d => FeatureNameEntryReadOnlyView.Create(d).Type, (d, x) => { FeatureNameEntryView view = FeatureNameEntryView.Create(d); view.Type = (byte)x; }),
                Int("Bit", 1, 1, d => FeatureNameEntryView.Create(d).Bit, d => FeatureNameEntryReadOnlyView.Create(d).Bit, (d, x) => { FeatureNameEntryView view = FeatureNameEntryView.Create(d); view.Bit = (byte)x; }),
                Bytes("Name", 2, 47, d => FeatureNameEntryView.Create(d).Name, d => FeatureNameEntryReadOnlyView.Create(d).Name),
            }),

        // qcow2-spec.txt "Bitmaps extension".
        new SpecStruct("BitmapsExtension", 24,
            d => BitmapsExtensionView.TryCreate(d, out _), d => BitmapsExtensionReadOnlyView.TryCreate(d, out _),
            () => BitmapsExtensionView.Fields.ToArray(), () => BitmapsExtensionReadOnlyView.Fields.ToArray(), BitmapsExtensionView.SizeInBytes, BitmapsExtensionReadOnlyView.SizeInBytes,
            d => BitmapsExtensionView.Create(d).Data.Length, d => BitmapsExtensionReadOnlyView.Create(d).Data.Length, d => BitmapsExtensionView.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Int("NbBitmaps", 0, 3, d => BitmapsExtensionView.Create(d).NbBitmaps, d => BitmapsExtensionReadOnlyView.Create(d).NbBitmaps, (d, x) => { BitmapsExtensionView view = BitmapsExtensionView.Create(d); view.NbBitmaps = (uint)x; }),
                Int("Reserved", 4, 7, d => BitmapsExtensionView.Create(d).Reserved, d => BitmapsExtensionReadOnlyView.Create(d).Reserved, (d, x) => { BitmapsExtensionView view = BitmapsExtensionView.Create(d); view.Reserved = (uint)x; }),
                Int("BitmapDirectorySize", 8, 15, d => BitmapsExtensionView.Create(d).BitmapDirectorySize, d => BitmapsExtensionReadOnlyView.Create(d).BitmapDirectorySize, (d, x) => { BitmapsExtensionView view = BitmapsExtensionView.Create(d); view.BitmapDirectorySize = (ulong)x; }),
                Int("BitmapDirectoryOffset", 16, 23, d => BitmapsExtensionView.Create(d).BitmapDirectoryOffset, d => BitmapsExtensionReadOnlyView.Create(d).BitmapDirectoryOffset, (d, x) => { BitmapsExtensionView view = BitmapsExtensionView.Create(d); view.BitmapDirectoryOffset = (ulong)x; }),
            }),

        // qcow2-spec.txt "Full disk encryption header pointer".
        new SpecStruct("EncryptionHeaderPointer", 16,
            d => EncryptionHeaderPointerView.TryCreate(d, out _), d => EncryptionHeaderPointerReadOnlyView.TryCreate(d, out _),
            () => EncryptionHeaderPointerView.Fields.ToArray(), () => EncryptionHeaderPointerReadOnlyView.Fields.ToArray(), EncryptionHeaderPointerView.SizeInBytes, EncryptionHeaderPointerReadOnlyView.SizeInBytes,
            d => EncryptionHeaderPointerView.Create(d).Data.Length, d => EncryptionHeaderPointerReadOnlyView.Create(d).Data.Length, d => EncryptionHeaderPointerView.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Int("Offset", 0, 7, d => EncryptionHeaderPointerView.Create(d).Offset, d => EncryptionHeaderPointerReadOnlyView.Create(d).Offset, (d, x) => { EncryptionHeaderPointerView view = EncryptionHeaderPointerView.Create(d); view.Offset = (ulong)x; }),
                Int("Length", 8, 15, d => EncryptionHeaderPointerView.Create(d).Length, d => EncryptionHeaderPointerReadOnlyView.Create(d).Length, (d, x) => { EncryptionHeaderPointerView view = EncryptionHeaderPointerView.Create(d); view.Length = (ulong)x; }),
            }),

        // qcow2-spec.txt "Snapshot table", fixed part.
        new SpecStruct("SnapshotTableEntry", 40,
            d => SnapshotTableEntryView.TryCreate(d, out _), d => SnapshotTableEntryReadOnlyView.TryCreate(d, out _),
            () => SnapshotTableEntryView.Fields.ToArray(), () => SnapshotTableEntryReadOnlyView.Fields.ToArray(), SnapshotTableEntryView.SizeInBytes, SnapshotTableEntryReadOnlyView.SizeInBytes,
            d => SnapshotTableEntryView.Create(d).Data.Length, d => SnapshotTableEntryReadOnlyView.Create(d).Data.Length, d => SnapshotTableEntryView.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Int("L1TableOffset", 0, 7, d => SnapshotTableEntryView.Create(d).L1TableOffset, d => SnapshotTableEntryReadOnlyView.Create(d).L1TableOffset, (d, x) => { SnapshotTableEntryView view = SnapshotTableEntryView.Create(d); view.L1TableOffset = (ulong)x; }),
                Int("L1Size", 8, 11, d => SnapshotTableEntryView.Create(d).L1Size, d => SnapshotTableEntryReadOnlyView.Create(d).L1Size, (d, x) => { SnapshotTableEntryView view = SnapshotTableEntryView.Create(d); view.L1Size = (uint)x; }),
                Int("IdStringSize", 12, 13, d => SnapshotTableEntryView.Create(d).IdStringSize, d => SnapshotTableEntryReadOnlyView.Create(d).IdStringSize, (d, x) => { SnapshotTableEntryView view = SnapshotTableEntryView.Create(d); view.IdStringSize = (ushort)x; }),
                Int("NameSize", 14, 15, d => SnapshotTableEntryView.Create(d).NameSize, d => SnapshotTableEntryReadOnlyView.Create(d).NameSize, (d, x) => { SnapshotTableEntryView view = SnapshotTableEntryView.Create(d); view.NameSize = (ushort)x; }),
                Int("DateSeconds", 16, 19, d => SnapshotTableEntryView.Create(d).DateSeconds, d => SnapshotTableEntryReadOnlyView.Create(d).DateSeconds, (d, x) => { SnapshotTableEntryView view = SnapshotTableEntryView.Create(d); view.DateSeconds = (uint)x; }),
                Int("DateNanoseconds", 20, 23, d => SnapshotTableEntryView.Create(d).DateNanoseconds, d => SnapshotTableEntryReadOnlyView.Create(d).DateNanoseconds, (d, x) => { SnapshotTableEntryView view = SnapshotTableEntryView.Create(d); view.DateNanoseconds = (uint)x; }),
                Int("VmClockNanoseconds", 24, 31, d => SnapshotTableEntryView.Create(d).VmClockNanoseconds, d => SnapshotTableEntryReadOnlyView.Create(d).VmClockNanoseconds, (d, x) => { SnapshotTableEntryView view = SnapshotTableEntryView.Create(d); view.VmClockNanoseconds = (ulong)x; }),
                Int("VmStateSize", 32, 35, d => SnapshotTableEntryView.Create(d).VmStateSize, d => SnapshotTableEntryReadOnlyView.Create(d).VmStateSize, (d, x) => { SnapshotTableEntryView view = SnapshotTableEntryView.Create(d); view.VmStateSize = (uint)x; }),
                Int("ExtraDataSize", 36, 39, d => SnapshotTableEntryView.Create(d).ExtraDataSize, d => SnapshotTableEntryReadOnlyView.Create(d).ExtraDataSize, (d, x) => { SnapshotTableEntryView view = SnapshotTableEntryView.Create(d); view.ExtraDataSize = (uint)x; }),
            }),

        // qcow2-spec.txt "Snapshot table" extra data, entry bytes 40-47 and 48-55 less 40; icount (entry bytes 56-63) is in QEMU's current spec, not in the reference copy.
        new SpecStruct("SnapshotExtraData", 24,
            d => SnapshotExtraDataView.TryCreate(d, out _), d => SnapshotExtraDataReadOnlyView.TryCreate(d, out _),
            () => SnapshotExtraDataView.Fields.ToArray(), () => SnapshotExtraDataReadOnlyView.Fields.ToArray(), SnapshotExtraDataView.SizeInBytes, SnapshotExtraDataReadOnlyView.SizeInBytes,
            d => SnapshotExtraDataView.Create(d).Data.Length, d => SnapshotExtraDataReadOnlyView.Create(d).Data.Length, d => SnapshotExtraDataView.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Int("VmStateSizeLarge", 0, 7, d => SnapshotExtraDataView.Create(d).VmStateSizeLarge, d => SnapshotExtraDataReadOnlyView.Create(d).VmStateSizeLarge, (d, x) => { SnapshotExtraDataView view = SnapshotExtraDataView.Create(d); view.VmStateSizeLarge = (ulong)x; }),
                Int("DiskSize", 8, 15, d => SnapshotExtraDataView.Create(d).DiskSize, d => SnapshotExtraDataReadOnlyView.Create(d).DiskSize, (d, x) => { SnapshotExtraDataView view = SnapshotExtraDataView.Create(d); view.DiskSize = (ulong)x; }),
                Int("Icount", 16, 23, d => SnapshotExtraDataView.Create(d).Icount, d => SnapshotExtraDataReadOnlyView.Create(d).Icount, (d, x) => { SnapshotExtraDataView view = SnapshotExtraDataView.Create(d); view.Icount = (ulong)x; }),
            }),

        // qcow2-spec.txt "Bitmap directory", fixed part.
        new SpecStruct("BitmapDirectoryEntry", 24,
            d => BitmapDirectoryEntryView.TryCreate(d, out _), d => BitmapDirectoryEntryReadOnlyView.TryCreate(d, out _),
            () => BitmapDirectoryEntryView.Fields.ToArray(), () => BitmapDirectoryEntryReadOnlyView.Fields.ToArray(), BitmapDirectoryEntryView.SizeInBytes, BitmapDirectoryEntryReadOnlyView.SizeInBytes,
            d => BitmapDirectoryEntryView.Create(d).Data.Length, d => BitmapDirectoryEntryReadOnlyView.Create(d).Data.Length, d => BitmapDirectoryEntryView.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Int("BitmapTableOffset", 0, 7, d => BitmapDirectoryEntryView.Create(d).BitmapTableOffset, d => BitmapDirectoryEntryReadOnlyView.Create(d).BitmapTableOffset, (d, x) => { BitmapDirectoryEntryView view = BitmapDirectoryEntryView.Create(d); view.BitmapTableOffset = (ulong)x; }),
                Int("BitmapTableSize", 8, 11, d => BitmapDirectoryEntryView.Create(d).BitmapTableSize, d => BitmapDirectoryEntryReadOnlyView.Create(d).BitmapTableSize, (d, x) => { BitmapDirectoryEntryView view = BitmapDirectoryEntryView.Create(d); view.BitmapTableSize = (uint)x; }),
                Int("Flags", 12, 15, d => BitmapDirectoryEntryView.Create(d).Flags, d => BitmapDirectoryEntryReadOnlyView.Create(d).Flags, (d, x) => { BitmapDirectoryEntryView view = BitmapDirectoryEntryView.Create(d); view.Flags = (uint)x; }),
                Int("Type", 16, 16, d => BitmapDirectoryEntryView.Create(d).Type, d => BitmapDirectoryEntryReadOnlyView.Create(d).Type, (d, x) => { BitmapDirectoryEntryView view = BitmapDirectoryEntryView.Create(d); view.Type = (byte)x; }),
                Int("GranularityBits", 17, 17, d => BitmapDirectoryEntryView.Create(d).GranularityBits, d => BitmapDirectoryEntryReadOnlyView.Create(d).GranularityBits, (d, x) => { BitmapDirectoryEntryView view = BitmapDirectoryEntryView.Create(d); view.GranularityBits = (byte)x; }),
                Int("NameSize", 18, 19, d => BitmapDirectoryEntryView.Create(d).NameSize, d => BitmapDirectoryEntryReadOnlyView.Create(d).NameSize, (d, x) => { BitmapDirectoryEntryView view = BitmapDirectoryEntryView.Create(d); view.NameSize = (ushort)x; }),
                Int("ExtraDataSize", 20, 23, d => BitmapDirectoryEntryView.Create(d).ExtraDataSize, d => BitmapDirectoryEntryReadOnlyView.Create(d).ExtraDataSize, (d, x) => { BitmapDirectoryEntryView view = BitmapDirectoryEntryView.Create(d); view.ExtraDataSize = (uint)x; }),
            }),

        // luks1-notes.md section 1.
        new SpecStruct("LuksPartitionHeader", 592,
            d => LuksPartitionHeaderView.TryCreate(d, out _), d => LuksPartitionHeaderReadOnlyView.TryCreate(d, out _),
            () => LuksPartitionHeaderView.Fields.ToArray(), () => LuksPartitionHeaderReadOnlyView.Fields.ToArray(), LuksPartitionHeaderView.SizeInBytes, LuksPartitionHeaderReadOnlyView.SizeInBytes,
            d => LuksPartitionHeaderView.Create(d).Data.Length, d => LuksPartitionHeaderReadOnlyView.Create(d).Data.Length, d => LuksPartitionHeaderView.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Bytes("Magic", 0, 5, d => LuksPartitionHeaderView.Create(d).Magic, d => LuksPartitionHeaderReadOnlyView.Create(d).Magic),
                Int("Version", 6, 7, d => LuksPartitionHeaderView.Create(d).Version, d => LuksPartitionHeaderReadOnlyView.Create(d).Version, (d, x) => { LuksPartitionHeaderView view = LuksPartitionHeaderView.Create(d); view.Version = (ushort)x; }),
                Bytes("CipherName", 8, 39, d => LuksPartitionHeaderView.Create(d).CipherName, d => LuksPartitionHeaderReadOnlyView.Create(d).CipherName),
                Bytes("CipherMode", 40, 71, d => LuksPartitionHeaderView.Create(d).CipherMode, d => LuksPartitionHeaderReadOnlyView.Create(d).CipherMode),
                Bytes("HashSpec", 72, 103, d => LuksPartitionHeaderView.Create(d).HashSpec, d => LuksPartitionHeaderReadOnlyView.Create(d).HashSpec),
                Int("PayloadOffset", 104, 107, d => LuksPartitionHeaderView.Create(d).PayloadOffset, d => LuksPartitionHeaderReadOnlyView.Create(d).PayloadOffset, (d, x) => { LuksPartitionHeaderView view = LuksPartitionHeaderView.Create(d); view.PayloadOffset = (uint)x; }),
                Int("KeyBytes", 108, 111, d => LuksPartitionHeaderView.Create(d).KeyBytes, d => LuksPartitionHeaderReadOnlyView.Create(d).KeyBytes, (d, x) => { LuksPartitionHeaderView view = LuksPartitionHeaderView.Create(d); view.KeyBytes = (uint)x; }),
                Bytes("MasterKeyDigest", 112, 131, d => LuksPartitionHeaderView.Create(d).MasterKeyDigest, d => LuksPartitionHeaderReadOnlyView.Create(d).MasterKeyDigest),
                Bytes("MasterKeyDigestSalt", 132, 163, d => LuksPartitionHeaderView.Create(d).MasterKeyDigestSalt, d => LuksPartitionHeaderReadOnlyView.Create(d).MasterKeyDigestSalt),
                Int("MasterKeyDigestIterations", 164, 167, d => LuksPartitionHeaderView.Create(d).MasterKeyDigestIterations, d => LuksPartitionHeaderReadOnlyView.Create(d).MasterKeyDigestIterations, (d, x) => { LuksPartitionHeaderView view = LuksPartitionHeaderView.Create(d); view.MasterKeyDigestIterations = (uint)x; }),
                Bytes("Uuid", 168, 207, d => LuksPartitionHeaderView.Create(d).Uuid, d => LuksPartitionHeaderReadOnlyView.Create(d).Uuid),
                Bytes("KeySlots", 208, 591, d => LuksPartitionHeaderView.Create(d).KeySlots, d => LuksPartitionHeaderReadOnlyView.Create(d).KeySlots),
            }),

        // luks1-notes.md section 2.
        new SpecStruct("LuksKeySlot", 48,
            d => LuksKeySlotView.TryCreate(d, out _), d => LuksKeySlotReadOnlyView.TryCreate(d, out _),
            () => LuksKeySlotView.Fields.ToArray(), () => LuksKeySlotReadOnlyView.Fields.ToArray(), LuksKeySlotView.SizeInBytes, LuksKeySlotReadOnlyView.SizeInBytes,
            d => LuksKeySlotView.Create(d).Data.Length, d => LuksKeySlotReadOnlyView.Create(d).Data.Length, d => LuksKeySlotView.Create(d).AsReadOnly().Data.Length,
            new[]
            {
                Int("Active", 0, 3, d => LuksKeySlotView.Create(d).Active, d => LuksKeySlotReadOnlyView.Create(d).Active, (d, x) => { LuksKeySlotView view = LuksKeySlotView.Create(d); view.Active = (uint)x; }),
                Int("Iterations", 4, 7, d => LuksKeySlotView.Create(d).Iterations, d => LuksKeySlotReadOnlyView.Create(d).Iterations, (d, x) => { LuksKeySlotView view = LuksKeySlotView.Create(d); view.Iterations = (uint)x; }),
                Bytes("Salt", 8, 39, d => LuksKeySlotView.Create(d).Salt, d => LuksKeySlotReadOnlyView.Create(d).Salt),
                Int("KeyMaterialOffset", 40, 43, d => LuksKeySlotView.Create(d).KeyMaterialOffset, d => LuksKeySlotReadOnlyView.Create(d).KeyMaterialOffset, (d, x) => { LuksKeySlotView view = LuksKeySlotView.Create(d); view.KeyMaterialOffset = (uint)x; }),
                Int("Stripes", 44, 47, d => LuksKeySlotView.Create(d).Stripes, d => LuksKeySlotReadOnlyView.Create(d).Stripes, (d, x) => { LuksKeySlotView view = LuksKeySlotView.Create(d); view.Stripes = (uint)x; }),
            }),

    };

    public static TheoryData<string> StructNames()
    {
        var data = new TheoryData<string>();
        foreach (SpecStruct s in Structs)
        {
            data.Add(s.Name);
        }

        return data;
    }

    private static SpecStruct Find(string name) => Structs.Single(s => s.Name == name);

    /// <summary>The reference reader: most significant byte first, one byte at a time.</summary>
    private static ulong ReadBigEndian(byte[] buffer, int offset, int width)
    {
        ulong value = 0;
        for (int i = 0; i < width; i++)
        {
            value = (value << 8) | buffer[offset + i];
        }

        return value;
    }

    public sealed record ViewCase(int Start, byte[] Buffer, byte[] Donor)
    {
        public override string ToString()
            => $"view at {Start} of [{Convert.ToHexString(Buffer)}], new values from [{Convert.ToHexString(Donor)}]";
    }

    private static Arbitrary<ViewCase> Cases(int size)
    {
        Gen<byte> anyByte = Gen.Choose(0, 255).Select(i => (byte)i);
        Gen<ViewCase> cases =
            from start in Gen.Choose(0, Slack)
            from buffer in Gen.ArrayOf(anyByte, size + Slack)
            from donor in Gen.ArrayOf(anyByte, size)
            select new ViewCase(start, buffer, donor);
        return cases.ToArbitrary();
    }

    private static Config Replayable => Config.QuickThrowOnFailure
        .WithMaxTest(MaxTest)
        .WithReplay(FSharpOption<Replay>.Some(new Replay(new Rnd(Seed), FSharpOption<int>.None)));

    [Theory]
    [MemberData(nameof(StructNames))]
    public void Getters_RandomBuffers_EqualBigEndianReadAtSpecOffset(string name)
    {
        SpecStruct spec = Find(name);
        Prop.ForAll(Cases(spec.Size), (ViewCase c) =>
        {
            Span<byte> view = c.Buffer.AsSpan(c.Start);
            foreach (SpecField field in spec.Spec)
            {
                int at = c.Start + field.First;
                if (field.IsBytes)
                {
                    byte[] expected = c.Buffer.AsSpan(at, field.Width).ToArray();
                    Assert.Equal(expected, field.GetBytes!(view).ToArray());
                    Assert.Equal(expected, field.GetBytesReadOnly!(view).ToArray());
                }
                else
                {
                    ulong expected = ReadBigEndian(c.Buffer, at, field.Width);
                    Assert.True(expected == field.Get!(view), $"{spec.Name}.{field}: view read 0x{field.Get(view):X}, spec read 0x{expected:X}");
                    Assert.True(expected == field.GetReadOnly!(view), $"{spec.Name}.{field}: read-only view read 0x{field.GetReadOnly(view):X}, spec read 0x{expected:X}");
                }
            }
        }).Check(Replayable);
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void Setters_RandomValues_ChangeOnlyTheirOwnBytes(string name)
    {
        SpecStruct spec = Find(name);
        Prop.ForAll(Cases(spec.Size), (ViewCase c) =>
        {
            // 0xFF first (a writer that leaves or clears neighbouring bits shows), then the random buffer.
            byte[] ones = Enumerable.Repeat((byte)0xFF, c.Buffer.Length).ToArray();
            foreach (byte[] background in new[] { ones, c.Buffer })
            {
                foreach (SpecField field in spec.Spec)
                {
                    byte[] target = (byte[])background.Clone();
                    int at = c.Start + field.First;
                    if (field.IsBytes)
                    {
                        // Fixed arrays are written through the span the getter returns.
                        c.Donor.AsSpan(field.First, field.Width).CopyTo(field.GetBytes!(target.AsSpan(c.Start)));
                        Assert.Equal(c.Donor.AsSpan(field.First, field.Width).ToArray(), target.AsSpan(at, field.Width).ToArray());
                    }
                    else
                    {
                        ulong value = ReadBigEndian(c.Donor, field.First, field.Width);
                        field.Set!(target.AsSpan(c.Start), value);
                        ulong written = ReadBigEndian(target, at, field.Width);
                        Assert.True(value == written, $"{spec.Name}.{field}: set 0x{value:X}, spec read 0x{written:X}");
                    }

                    for (int i = 0; i < target.Length; i++)
                    {
                        if (i < at || i >= at + field.Width)
                        {
                            Assert.True(background[i] == target[i],
                                $"{spec.Name}.{field}: writing it changed byte {i - c.Start} of the struct (0x{background[i]:X2} -> 0x{target[i]:X2})");
                        }
                    }
                }
            }
        }).Check(Replayable);
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void Fields_EachView_ListsEverySpecFieldWithOffsetWidthAndKind(string name)
    {
        SpecStruct spec = Find(name);
        OnDiskFieldInfo[] expected = spec.Spec.Select(f => new OnDiskFieldInfo(f.Name, f.First, f.Width, f.Kind)).ToArray();

        Assert.Equal(expected, spec.Fields());
        Assert.Equal(expected, spec.FieldsReadOnly());
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void SizeInBytes_EachView_EqualsSpecSize(string name)
    {
        SpecStruct spec = Find(name);

        Assert.Equal(spec.Size, spec.SizeConstant);
        Assert.Equal(spec.Size, spec.SizeConstantReadOnly);
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void TryCreate_BufferShorterThanSize_ReturnsFalse(string name)
    {
        SpecStruct spec = Find(name);
        foreach (int length in new[] { 0, 1, spec.Size / 2, spec.Size - 1 })
        {
            byte[] buffer = new byte[length];
            Assert.False(spec.TryCreate(buffer), $"{name}View accepted {length} bytes");
            Assert.False(spec.TryCreateReadOnly(buffer), $"{name}ReadOnlyView accepted {length} bytes");
        }
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void TryCreate_BufferOfSizeOrLonger_ReturnsTrue(string name)
    {
        SpecStruct spec = Find(name);
        foreach (int length in new[] { spec.Size, spec.Size + 1, spec.Size * 3 })
        {
            Assert.True(spec.TryCreate(new byte[length]));
            Assert.True(spec.TryCreateReadOnly(new byte[length]));
        }
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void Create_BufferShorterThanSize_ThrowsArgumentException(string name)
    {
        SpecStruct spec = Find(name);

        // Exactly ArgumentException: not the ArgumentOutOfRangeException a bare Slice would throw.
        ArgumentException error = Assert.Throws<ArgumentException>(() => spec.DataLength(new byte[spec.Size - 1]));
        Assert.Equal("data", error.ParamName);
        Assert.Throws<ArgumentException>(() => spec.DataLengthReadOnly(new byte[spec.Size - 1]));
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void Data_LongerBuffer_CoversExactlyTheStruct(string name)
    {
        SpecStruct spec = Find(name);
        byte[] buffer = new byte[spec.Size + 7];

        Assert.Equal(spec.Size, spec.DataLength(buffer));
        Assert.Equal(spec.Size, spec.DataLengthReadOnly(buffer));
        Assert.Equal(spec.Size, spec.DataLengthAsReadOnly(buffer));
    }

    [Fact]
    public void GeneratedLayouts_All_ListsEveryViewWithItsFields()
    {
        OnDiskStructInfo[] all = GeneratedLayouts.All.ToArray();

        Assert.Equal(Structs.Select(s => s.Name).OrderBy(n => n, StringComparer.Ordinal), all.Select(s => s.Name).OrderBy(n => n, StringComparer.Ordinal));
        foreach (OnDiskStructInfo info in all)
        {
            SpecStruct spec = Find(info.Name);
            Assert.Equal(spec.Size, info.Size);
            Assert.Equal(spec.Spec.Select(f => new OnDiskFieldInfo(f.Name, f.First, f.Width, f.Kind)), info.Fields.ToArray());
        }
    }

    [Fact]
    public void GeneratedLayouts_FindAndTryGetField_LookUpByName()
    {
        OnDiskStructInfo? header = GeneratedLayouts.Find("Header");

        Assert.NotNull(header);
        Assert.Equal(112, header!.Size);
        Assert.True(header.TryGetField("L1TableOffset", out OnDiskFieldInfo field));
        Assert.Equal(new OnDiskFieldInfo("L1TableOffset", 40, 8, OnDiskFieldKind.UInt64), field);
        Assert.False(header.TryGetField("l1_table_offset", out _));
        Assert.Null(GeneratedLayouts.Find("HeaderView"));
    }

    [Fact]
    public void Views_ReadWriteCreate_AllocateNothing()
    {
        byte[] buffer = new byte[LuksPartitionHeaderView.SizeInBytes + HeaderView.SizeInBytes];
        ulong sink = Exercise(buffer); // the first run pays for JIT and static tables

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            sink += Exercise(buffer);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"the views allocated {allocated} bytes (sink {sink})");
    }

    private static ulong Exercise(byte[] buffer)
    {
        HeaderView header = HeaderView.Create(buffer);
        header.L1TableOffset = header.Size + 1;
        header.CompressionType = 1;
        header.Padding[3] = 7;
        HeaderReadOnlyView twin = header.AsReadOnly();
        ulong sum = twin.L1TableOffset + twin.CompressionType + twin.Padding[3] + (ulong)HeaderView.Fields.Length;
        if (LuksPartitionHeaderView.TryCreate(buffer.AsSpan(HeaderView.SizeInBytes), out LuksPartitionHeaderView luks))
        {
            luks.Version = 1;
            sum += (ulong)luks.Version + luks.KeySlots[383] + (ulong)GeneratedLayouts.All.Length;
        }

        return sum + (ulong)(LuksKeySlotReadOnlyView.TryCreate(buffer, out LuksKeySlotReadOnlyView slot) ? slot.Stripes : 0);
    }

    [Fact]
    public void AsReadOnly_DefaultView_ReturnsEmptyTwinWithoutThrowing()
    {
        HeaderView empty = default;

        Assert.Equal(0, empty.AsReadOnly().Data.Length);
    }

    [Fact]
    public void SpecTable_Fields_AreInsideTheirStructAndDoNotOverlap()
    {
        // The test's own data: a slip in the hand-written table must not pass silently.
        foreach (SpecStruct spec in Structs)
        {
            int next = 0;
            foreach (SpecField field in spec.Spec.OrderBy(f => f.First))
            {
                Assert.True(field.First >= next, $"{spec.Name}.{field} overlaps the field before it");
                Assert.True(field.Last < spec.Size, $"{spec.Name}.{field} ends past {spec.Size}");
                _ = field.Kind;
                next = field.Last + 1;
            }
        }
    }
}
