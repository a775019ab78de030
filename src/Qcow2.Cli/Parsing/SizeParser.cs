using System.Globalization;

namespace Qcow2.Cli.Parsing;

/// <summary>Why a size or number did not parse.</summary>
internal enum SizeParseError
{
    None,
    /// <summary>Not a number, or an unknown or trailing suffix.</summary>
    Invalid,
    /// <summary>Larger than the largest signed 64-bit value.</summary>
    TooLarge,
}

/// <summary>
/// The number syntax qemu-img and qemu-io share: a decimal number (leading zeros are not octal),
/// optionally with a fraction, or a hexadecimal number with <c>0x</c>; then optionally one
/// suffix <c>b/B</c> (bytes), <c>k/K</c>, <c>m/M</c>, <c>g/G</c>, <c>t/T</c>, <c>p/P</c>,
/// <c>e/E</c> (powers of 1024). A fraction needs a multiplying suffix unless it is zero
/// (<c>1.5k</c> and <c>1.0</c> parse, <c>1.5</c> does not); the product is truncated to whole
/// bytes. Negative numbers, hexadecimal fractions and values past 2^63-1 are rejected.
/// </summary>
internal static class SizeParser
{
    /// <summary>Parses <paramref name="text"/>; returns the error kind (None on success).</summary>
    /// <param name="text">The text to parse.</param>
    /// <param name="value">The number of bytes, 0 on failure.</param>
    /// <param name="defaultUnit">Multiplier when no suffix is given (1 for bytes).</param>
    public static SizeParseError TryParse(string text, out long value, long defaultUnit = 1)
    {
        value = 0;
        ReadOnlySpan<char> s = text.AsSpan().TrimStart();
        if (s.IsEmpty) return SizeParseError.Invalid;

        bool hex = s.Length > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
        int pos = hex ? 2 : 0;
        int intStart = pos;
        while (pos < s.Length && (hex ? char.IsAsciiHexDigit(s[pos]) : char.IsAsciiDigit(s[pos]))) pos++;
        ReadOnlySpan<char> intPart = s[intStart..pos];
        if (intPart.IsEmpty) return SizeParseError.Invalid;

        ReadOnlySpan<char> fracPart = default;
        if (pos < s.Length && s[pos] == '.')
        {
            if (hex) return SizeParseError.Invalid;
            int fracStart = ++pos;
            while (pos < s.Length && char.IsAsciiDigit(s[pos])) pos++;
            fracPart = s[fracStart..pos];
        }

        long unit = defaultUnit;
        if (pos < s.Length)
        {
            int shift = char.ToLowerInvariant(s[pos]) switch
            {
                'b' => 0,
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                'p' => 50,
                'e' => 60,
                _ => -1,
            };
            if (shift < 0 || pos + 1 != s.Length) return SizeParseError.Invalid;
            unit = 1L << shift;
        }

        // The integer part, with overflow detection.
        ulong whole;
        if (hex)
        {
            if (intPart.Length > 16) return SizeParseError.TooLarge;
            whole = ulong.Parse(intPart, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        }
        else
        {
            whole = 0;
            foreach (char c in intPart)
            {
                if (whole > (ulong.MaxValue - 9) / 10) return SizeParseError.TooLarge;
                whole = whole * 10 + (ulong)(c - '0');
            }
        }

        bool fractionNonZero = false;
        foreach (char c in fracPart) if (c != '0') { fractionNonZero = true; break; }
        if (fractionNonZero && unit == 1)
            return SizeParseError.Invalid;

        // whole * unit, checked.
        UInt128 total = (UInt128)whole * (ulong)unit;
        if (fractionNonZero)
        {
            // unit * 0.fraction, truncated: computed exactly with at most 19 fraction digits.
            var digits = fracPart.Length > 19 ? fracPart[..19] : fracPart;
            UInt128 num = 0, den = 1;
            foreach (char c in digits) { num = num * 10 + (uint)(c - '0'); den *= 10; }
            total += num * (ulong)unit / den;
        }
        if (total > long.MaxValue) return SizeParseError.TooLarge;
        value = (long)total;
        return SizeParseError.None;
    }

    /// <summary>Parses a size for qemu-img style options; throws a usage error naming <paramref name="what"/>.</summary>
    public static long ParseSize(string text, string what)
    {
        switch (TryParse(text, out long value))
        {
            case SizeParseError.None: return value;
            case SizeParseError.TooLarge:
                throw new Framework.UsageException($"{char.ToUpperInvariant(what[0])}{what[1..]} must be less than 8 EiB!");
            default:
                throw new Framework.UsageException(
                    $"Invalid {what} specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        }
    }

    /// <summary>Parses a number the way qemu-io's commands do; the message is qemu-io's.</summary>
    public static bool TryParseIoNumber(string text, out long value, out string? error)
    {
        switch (TryParse(text, out value))
        {
            case SizeParseError.None:
                error = null;
                return true;
            case SizeParseError.TooLarge:
                error = "Parsing error: argument too large -- " + text;
                return false;
            default:
                error = "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- " + text;
                return false;
        }
    }
}

/// <summary>qemu-io's pattern byte: a C integer (decimal, 0x hex or 0 octal) from 0 to 255.</summary>
internal static class PatternParser
{
    public static bool TryParse(string text, out byte pattern)
    {
        pattern = 0;
        ReadOnlySpan<char> s = text.AsSpan();
        if (s.IsEmpty) return false;
        int radix = 10;
        if (s.Length > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) { radix = 16; s = s[2..]; }
        else if (s.Length > 1 && s[0] == '0') { radix = 8; s = s[1..]; }
        if (s.IsEmpty) return false;
        int value = 0;
        foreach (char c in s)
        {
            int d = char.IsAsciiDigit(c) ? c - '0' : char.IsAsciiHexDigit(c) ? (char.ToLowerInvariant(c) - 'a' + 10) : 99;
            if (d >= radix) return false;
            value = value * radix + d;
            if (value > 255) return false;
        }
        pattern = (byte)value;
        return true;
    }
}
