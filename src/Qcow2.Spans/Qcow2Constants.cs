namespace Qcow2.Spans;

/// <summary>Fixed values of the qcow2 format (spec "Header" and "Header extensions").</summary>
public static class Qcow2Constants
{
    /// <summary>The magic "QFI\xfb" as a big-endian 32-bit value.</summary>
    public const uint Magic = 0x514649fb;

    /// <summary>Version 2 (compat 0.10).</summary>
    public const int Version2 = 2;

    /// <summary>Version 3 (compat 1.1).</summary>
    public const int Version3 = 3;

    /// <summary>Length of the version 2 header (fixed).</summary>
    public const int HeaderLengthV2 = 72;

    /// <summary>Minimum header_length of a version 3 header (fields through header_length).</summary>
    public const int HeaderLengthV3Min = 104;

    /// <summary>The version 3 header with the compression_type field, padded to a multiple of 8.</summary>
    public const int HeaderLengthV3WithCompressionType = 112;

    /// <summary>Offset of the compression_type field.</summary>
    public const int CompressionTypeOffset = 104;

    /// <summary>The refcount_order assumed for version 2 images (16-bit refcounts).</summary>
    public const int DefaultRefcountOrder = 4;

    /// <summary>Sector size used by compressed cluster descriptors.</summary>
    public const int SectorSize = 512;

    /// <summary>log2 of <see cref="SectorSize"/>.</summary>
    public const int SectorBits = 9;

    /// <summary>Size of an L1 entry, a refcount table entry and a standard L2 entry.</summary>
    public const int TableEntrySize = 8;

    /// <summary>Size of an extended L2 entry (entry plus subcluster bitmap).</summary>
    public const int ExtendedL2EntrySize = 16;

    /// <summary>Subclusters per cluster with extended L2 entries.</summary>
    public const int SubclustersPerExtendedCluster = 32;

    /// <summary>Size of the header that precedes each header extension (type, length).</summary>
    public const int HeaderExtensionHeaderSize = 8;

    /// <summary>Size of one feature name table entry.</summary>
    public const int FeatureNameEntrySize = 48;

    /// <summary>Length of the name field of a feature name table entry.</summary>
    public const int FeatureNameLength = 46;

    /// <summary>Header extension type: end of the extension area.</summary>
    public const uint ExtensionEnd = 0x00000000;

    /// <summary>Header extension type: backing file format name.</summary>
    public const uint ExtensionBackingFormat = 0xe2792aca;

    /// <summary>Header extension type: feature name table.</summary>
    public const uint ExtensionFeatureNameTable = 0x6803f857;

    /// <summary>Header extension type: bitmaps.</summary>
    public const uint ExtensionBitmaps = 0x23852875;

    /// <summary>Header extension type: full disk encryption header pointer.</summary>
    public const uint ExtensionFullDiskEncryption = 0x0537be77;

    /// <summary>Header extension type: external data file name.</summary>
    public const uint ExtensionExternalDataFile = 0x44415441;

    /// <summary>crypt_method: no encryption.</summary>
    public const uint CryptNone = 0;

    /// <summary>crypt_method: legacy AES-CBC.</summary>
    public const uint CryptAes = 1;

    /// <summary>crypt_method: LUKS.</summary>
    public const uint CryptLuks = 2;

    /// <summary>Size of the bitmaps extension data.</summary>
    public const int BitmapsExtensionSize = 24;

    /// <summary>Size of the full disk encryption header pointer extension data.</summary>
    public const int FullDiskEncryptionExtensionSize = 16;

    /// <summary>Bitmap directory entry flag: in_use.</summary>
    public const uint BitmapFlagInUse = 1u << 0;

    /// <summary>Bitmap directory entry flag: auto.</summary>
    public const uint BitmapFlagAuto = 1u << 1;

    /// <summary>Bitmap directory entry flag: extra_data_compatible.</summary>
    public const uint BitmapFlagExtraDataCompatible = 1u << 2;

    /// <summary>All known bitmap directory entry flags.</summary>
    public const uint BitmapFlagsKnown = BitmapFlagInUse | BitmapFlagAuto | BitmapFlagExtraDataCompatible;

    /// <summary>Bitmap type: dirty tracking bitmap (the only one defined).</summary>
    public const byte BitmapTypeDirtyTracking = 1;
}

/// <summary>The compression method of compressed clusters (header field compression_type).</summary>
public enum CompressionType : byte
{
    /// <summary>zlib (raw deflate); the default, and the only one without the incompatible bit.</summary>
    Zlib = 0,

    /// <summary>zstd.</summary>
    Zstd = 1,
}

/// <summary>Encryption methods of header field crypt_method.</summary>
public enum CryptMethod : uint
{
    /// <summary>No encryption.</summary>
    None = 0,

    /// <summary>Legacy AES-CBC.</summary>
    Aes = 1,

    /// <summary>LUKS.</summary>
    Luks = 2,
}
