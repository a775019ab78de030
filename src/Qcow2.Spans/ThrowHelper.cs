using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Qcow2.Spans;

/// <summary>
/// The single place that throws for this layer, so that hot paths stay small and inlinable and
/// the exception type always says who is at fault (bad image, unsupported image, caller).
/// </summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowCorrupt(string structure, long offset, ulong rawValue, string message) =>
        throw new Qcow2CorruptImageException(structure, offset, rawValue, message);

    [DoesNotReturn]
    public static T ThrowCorrupt<T>(string structure, long offset, ulong rawValue, string message) =>
        throw new Qcow2CorruptImageException(structure, offset, rawValue, message);

    [DoesNotReturn]
    public static void ThrowUnsupported(string feature, string message) =>
        throw new Qcow2UnsupportedImageException(feature, message);

    [DoesNotReturn]
    public static void ThrowArgument(string paramName, string message) =>
        throw new ArgumentException(message, paramName);

    [DoesNotReturn]
    public static void ThrowArgumentOutOfRange(string paramName, long value, string message) =>
        throw new ArgumentOutOfRangeException(paramName, value, message);

    [DoesNotReturn]
    public static T ThrowArgumentOutOfRange<T>(string paramName, long value, string message) =>
        throw new ArgumentOutOfRangeException(paramName, value, message);

    [DoesNotReturn]
    public static void ThrowIndexArgument(string paramName, int index, int count) =>
        throw new ArgumentOutOfRangeException(paramName, index,
            string.Create(CultureInfo.InvariantCulture, $"Index must be in [0, {count})."));

    [DoesNotReturn]
    public static void ThrowBufferTooSmall(string paramName, int needed, int actual) =>
        throw new ArgumentException(
            string.Create(CultureInfo.InvariantCulture, $"The buffer holds {actual} bytes; {needed} are needed."), paramName);
}
