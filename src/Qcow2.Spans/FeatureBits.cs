
namespace Qcow2.Spans;

/// <summary>Incompatible feature bits (header bytes 72–79): an unknown bit forbids opening.</summary>
[Flags]
public enum IncompatibleFeatures : ulong
{
    /// <summary>No bits.</summary>
    None = 0,

    /// <summary>Bit 0: refcounts may be inconsistent (lazy refcounts in use or a crash).</summary>
    Dirty = 1UL << 0,

    /// <summary>Bit 1: a structure may be corrupt; writing is forbidden.</summary>
    Corrupt = 1UL << 1,

    /// <summary>Bit 2: guest data lives in an external data file.</summary>
    ExternalDataFile = 1UL << 2,

    /// <summary>Bit 3: the compression_type field is present and not zlib.</summary>
    CompressionType = 1UL << 3,

    /// <summary>Bit 4: L2 entries are 128-bit with subcluster bitmaps.</summary>
    ExtendedL2 = 1UL << 4,
}

/// <summary>Compatible feature bits (header bytes 80–87): unknown bits can be ignored.</summary>
[Flags]
public enum CompatibleFeatures : ulong
{
    /// <summary>No bits.</summary>
    None = 0,

    /// <summary>Bit 0: lazy refcount updates may be used.</summary>
    LazyRefcounts = 1UL << 0,
}

/// <summary>Autoclear feature bits (header bytes 88–95): a writer must clear unknown bits first.</summary>
[Flags]
public enum AutoclearFeatures : ulong
{
    /// <summary>No bits.</summary>
    None = 0,

    /// <summary>Bit 0: the bitmaps extension is consistent.</summary>
    Bitmaps = 1UL << 0,

    /// <summary>Bit 1: the external data file is a consistent raw image.</summary>
    DataFileRaw = 1UL << 1,
}

/// <summary>Which of the three feature bitmaps a feature bit belongs to (feature name table type byte).</summary>
public enum FeatureType : byte
{
    /// <summary>incompatible_features.</summary>
    Incompatible = 0,

    /// <summary>compatible_features.</summary>
    Compatible = 1,

    /// <summary>autoclear_features.</summary>
    Autoclear = 2,
}

/// <summary>The feature bits this toolkit knows, and their names (as QEMU writes them in its feature name table).</summary>
public static class FeatureBits
{
    /// <summary>Every incompatible bit we understand.</summary>
    public const IncompatibleFeatures KnownIncompatible =
        IncompatibleFeatures.Dirty | IncompatibleFeatures.Corrupt | IncompatibleFeatures.ExternalDataFile
        | IncompatibleFeatures.CompressionType | IncompatibleFeatures.ExtendedL2;

    /// <summary>Every compatible bit we understand.</summary>
    public const CompatibleFeatures KnownCompatible = CompatibleFeatures.LazyRefcounts;

    /// <summary>Every autoclear bit we understand.</summary>
    public const AutoclearFeatures KnownAutoclear = AutoclearFeatures.Bitmaps | AutoclearFeatures.DataFileRaw;

    /// <summary>The incompatible bits set in <paramref name="features"/> that we do not understand.</summary>
    public static ulong UnknownIncompatible(ulong features) => features & ~(ulong)KnownIncompatible;

    /// <summary>The compatible bits set in <paramref name="features"/> that we do not understand.</summary>
    public static ulong UnknownCompatible(ulong features) => features & ~(ulong)KnownCompatible;

    /// <summary>The autoclear bits set in <paramref name="features"/> that we do not understand.</summary>
    public static ulong UnknownAutoclear(ulong features) => features & ~(ulong)KnownAutoclear;

    /// <summary>The mask of known bits for a feature type.</summary>
    public static ulong KnownMask(FeatureType type) => type switch
    {
        FeatureType.Incompatible => (ulong)KnownIncompatible,
        FeatureType.Compatible => (ulong)KnownCompatible,
        FeatureType.Autoclear => (ulong)KnownAutoclear,
        _ => 0,
    };

    /// <summary>
    /// The name of a known feature bit ("dirty bit", "lazy refcounts", ...), as QEMU names it in
    /// its feature name table, or null for a bit we do not know.
    /// </summary>
    public static string? GetKnownName(FeatureType type, int bit) => (type, bit) switch
    {
        (FeatureType.Incompatible, 0) => "dirty bit",
        (FeatureType.Incompatible, 1) => "corrupt bit",
        (FeatureType.Incompatible, 2) => "external data file",
        (FeatureType.Incompatible, 3) => "compression type",
        (FeatureType.Incompatible, 4) => "extended L2 entries",
        (FeatureType.Compatible, 0) => "lazy refcounts",
        (FeatureType.Autoclear, 0) => "bitmaps",
        (FeatureType.Autoclear, 1) => "raw external data",
        _ => null,
    };
}

/// <summary>One entry of the feature name table.</summary>
public readonly ref struct FeatureNameEntry
{
    internal FeatureNameEntry(byte type, byte bit, ReadOnlySpan<byte> name)
    {
        RawType = type;
        Bit = bit;
        Name = name;
    }

    /// <summary>The raw type byte (0 incompatible, 1 compatible, 2 autoclear; others are unknown).</summary>
    public byte RawType { get; }

    /// <summary>The type as an enum (may hold an undefined value when <see cref="RawType"/> is above 2).</summary>
    public FeatureType Type => (FeatureType)RawType;

    /// <summary>The bit number (0–63 when valid).</summary>
    public byte Bit { get; }

    /// <summary>The name bytes without the trailing zero padding.</summary>
    public ReadOnlySpan<byte> Name { get; }
}

/// <summary>
/// The feature name table header extension (spec "Feature name table"): 48-byte entries of
/// <c>0 type  1 bit  2..47 name</c>. Wraps the extension data; allocates nothing.
/// </summary>
public readonly ref struct FeatureNameTable
{
    private readonly ReadOnlySpan<byte> _data;

    /// <summary>Wraps the data of a feature name table extension. A trailing partial entry is ignored.</summary>
    public FeatureNameTable(ReadOnlySpan<byte> extensionData) => _data = extensionData;

    /// <summary>Number of whole entries.</summary>
    public int Count => _data.Length / Qcow2Constants.FeatureNameEntrySize;

    /// <summary>True when the data length is not a multiple of the entry size.</summary>
    public bool HasTrailingBytes => _data.Length % Qcow2Constants.FeatureNameEntrySize != 0;

    /// <summary>The entry at <paramref name="index"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">index is not in [0, Count).</exception>
    public FeatureNameEntry this[int index]
    {
        get
        {
            if ((uint)index >= (uint)Count) ThrowHelper.ThrowIndexArgument(nameof(index), index, Count);
            var e = _data.Slice(index * Qcow2Constants.FeatureNameEntrySize, Qcow2Constants.FeatureNameEntrySize);
            var name = e.Slice(2, Qcow2Constants.FeatureNameLength);
            int end = name.IndexOf((byte)0);
            return new FeatureNameEntry(e[0], e[1], end < 0 ? name : name[..end]);
        }
    }

    /// <summary>Finds the name of (type, bit); false when the table does not name it.</summary>
    public bool TryGetName(FeatureType type, int bit, out ReadOnlySpan<byte> name)
    {
        int n = Count;
        for (int i = 0; i < n; i++)
        {
            var e = this[i];
            if (e.RawType == (byte)type && e.Bit == bit)
            {
                name = e.Name;
                return true;
            }
        }
        name = default;
        return false;
    }

    /// <summary>Enumerates the entries.</summary>
    public Enumerator GetEnumerator() => new(this);

    /// <summary>Writes one entry into <paramref name="destination"/> (48 bytes).</summary>
    /// <exception cref="ArgumentException">destination is shorter than 48 bytes or the name is longer than 46 bytes.</exception>
    public static void WriteEntry(Span<byte> destination, FeatureType type, int bit, ReadOnlySpan<byte> name)
    {
        if (destination.Length < Qcow2Constants.FeatureNameEntrySize)
            ThrowHelper.ThrowBufferTooSmall(nameof(destination), Qcow2Constants.FeatureNameEntrySize, destination.Length);
        if (name.Length > Qcow2Constants.FeatureNameLength)
            ThrowHelper.ThrowArgument(nameof(name), "A feature name holds at most 46 bytes.");
        if ((uint)bit > 63) ThrowHelper.ThrowArgumentOutOfRange(nameof(bit), bit, "A feature bit is 0..63.");
        var e = destination[..Qcow2Constants.FeatureNameEntrySize];
        e.Clear();
        e[0] = (byte)type;
        e[1] = (byte)bit;
        name.CopyTo(e[2..]);
    }

    /// <summary>Enumerator over the entries.</summary>
    public ref struct Enumerator
    {
        private readonly FeatureNameTable _table;
        private int _index;

        internal Enumerator(FeatureNameTable table)
        {
            _table = table;
            _index = -1;
        }

        /// <summary>Advances.</summary>
        public bool MoveNext() => ++_index < _table.Count;

        /// <summary>The current entry.</summary>
        public readonly FeatureNameEntry Current => _table[_index];
    }
}
