using System.Globalization;

namespace Qcow2.Spans;

/// <summary>
/// The image is malformed: a structure breaks a rule of the qcow2 specification, or is
/// inconsistent with another. Every bad-image error of the toolkit is this type (or derives
/// from it), so callers can catch them all at once. (It derives from <see cref="Exception"/>:
/// <see cref="InvalidDataException"/> is sealed, and deriving from <see cref="IOException"/> would
/// mix bad images up with storage failures, which pass through as IOException.)
/// </summary>
public class Qcow2CorruptImageException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="structure">The structure at fault, e.g. "header.cluster_bits" or "L2 entry".</param>
    /// <param name="offset">Its byte offset in the image file, or -1 when it has none.</param>
    /// <param name="rawValue">The raw value found there.</param>
    /// <param name="message">What is wrong, in words.</param>
    public Qcow2CorruptImageException(string structure, long offset, ulong rawValue, string message)
        : base(Format(structure, offset, rawValue, message))
    {
        Structure = structure;
        Offset = offset;
        RawValue = rawValue;
        Reason = message;
    }

    /// <summary>The structure at fault.</summary>
    public string Structure { get; }

    /// <summary>Byte offset of the structure in the image file, or -1.</summary>
    public long Offset { get; }

    /// <summary>The raw value found.</summary>
    public ulong RawValue { get; }

    /// <summary>The reason without the location prefix.</summary>
    public string Reason { get; }

    private static string Format(string structure, long offset, ulong rawValue, string message) =>
        offset >= 0
            ? string.Create(CultureInfo.InvariantCulture, $"{structure} at offset 0x{offset:x} (value 0x{rawValue:x}): {message}")
            : string.Create(CultureInfo.InvariantCulture, $"{structure} (value 0x{rawValue:x}): {message}");
}

/// <summary>
/// The image is well formed but uses something this toolkit does not support (an unknown
/// incompatible feature, a compression or encryption method, a cluster size beyond the limits).
/// </summary>
public class Qcow2UnsupportedImageException : NotSupportedException
{
    /// <summary>Creates the exception.</summary>
    public Qcow2UnsupportedImageException(string feature, string message)
        : base(message)
    {
        Feature = feature;
    }

    /// <summary>The feature or field that is not supported.</summary>
    public string Feature { get; }
}
