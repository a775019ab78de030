using System.Globalization;
using System.Numerics;

namespace Qcow2.Cli.Output;

/// <summary>
/// Number formatting as C's printf does it (exact binary value, ties to even), which .NET's
/// own formatting does not always match, plus the size strings qemu-img and qemu-io print.
/// </summary>
internal static class NumberFormat
{
    /// <summary>printf("%.{decimals}f", value) for finite non-negative or negative doubles.</summary>
    public static string Fixed(double value, int decimals)
    {
        if (double.IsNaN(value) || double.IsInfinity(value)) return value.ToString(CultureInfo.InvariantCulture);
        bool negative = value < 0 || (value == 0 && double.IsNegative(value));
        BigInteger q = RoundScaled(Math.Abs(value), decimals);
        string digits = q.ToString(CultureInfo.InvariantCulture);
        if (decimals > 0)
        {
            if (digits.Length <= decimals) digits = new string('0', decimals - digits.Length + 1) + digits;
            digits = digits[..^decimals] + "." + digits[^decimals..];
        }
        return (negative && q != 0 ? "-" : negative ? "-" : "") + digits;
    }

    /// <summary>round-half-even(|value| * 10^decimals) computed exactly.</summary>
    private static BigInteger RoundScaled(double value, int decimals)
    {
        long bits = BitConverter.DoubleToInt64Bits(value);
        int exp = (int)((bits >> 52) & 0x7FF);
        long mant = bits & 0xFFFFFFFFFFFFFL;
        if (exp == 0) exp = 1; else mant |= 1L << 52;
        exp -= 1075;
        BigInteger num = new BigInteger(mant) * BigInteger.Pow(10, decimals);
        if (exp >= 0) return num << exp;
        BigInteger den = BigInteger.One << -exp;
        BigInteger q = BigInteger.DivRem(num, den, out BigInteger r);
        int cmp = (r * 2).CompareTo(den);
        if (cmp > 0 || (cmp == 0 && !q.IsEven)) q += 1;
        return q;
    }

    /// <summary>printf("%.{precision}g", value) for non-negative finite values.</summary>
    public static string General(double value, int precision)
    {
        if (value == 0) return "0";
        int x = (int)Math.Floor(Math.Log10(value));
        // Correct the estimate, then account for rounding up to the next power of ten.
        string fixedDigits = RoundScaled(value, precision - 1 - x).ToString(CultureInfo.InvariantCulture);
        if (fixedDigits.Length > precision) x++;
        else if (fixedDigits.Length < precision) x--;
        if (x < -4 || x >= precision)
        {
            double mant = value / Math.Pow(10, x);
            string m = StripZeros(Fixed(mant, precision - 1));
            if (m == "10")
            {
                m = "1";
                x++;
            }
            return m + "e" + (x < 0 ? "-" : "+") + Math.Abs(x).ToString("00", CultureInfo.InvariantCulture);
        }
        return StripZeros(Fixed(value, Math.Max(0, precision - 1 - x)));
    }

    private static string StripZeros(string s)
    {
        if (!s.Contains('.')) return s;
        s = s.TrimEnd('0');
        return s.EndsWith('.') ? s[..^1] : s;
    }

    private static readonly string[] BinarySuffixes = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };

    /// <summary>
    /// qemu-img's human size ("1.26 MiB", "196 KiB", "0 B"): three significant digits, and the
    /// next unit from 1000 of the current one on.
    /// </summary>
    public static string HumanSize(long bytes)
    {
        ulong v = (ulong)bytes;
        int unit = 0;
        while (unit < 6 && v >= 1000UL << (10 * unit)) unit++;
        double scaled = (double)v / (1UL << (10 * unit));
        return General(scaled, 3) + " " + BinarySuffixes[unit] + "B";
    }

    /// <summary>
    /// qemu-io's size text ("4 KiB", "1.938 MiB", "40 bytes"): three decimals, dropped when they
    /// are ".000".
    /// </summary>
    public static string IoSize(double value)
    {
        string suffix;
        if (value >= 1L << 60) { suffix = " EiB"; value /= 1L << 60; }
        else if (value >= 1L << 50) { suffix = " PiB"; value /= 1L << 50; }
        else if (value >= 1L << 40) { suffix = " TiB"; value /= 1L << 40; }
        else if (value >= 1L << 30) { suffix = " GiB"; value /= 1L << 30; }
        else if (value >= 1L << 20) { suffix = " MiB"; value /= 1L << 20; }
        else if (value >= 1L << 10) { suffix = " KiB"; value /= 1L << 10; }
        else suffix = " bytes";
        string s = Fixed(value, 3);
        int dot = s.IndexOf(".000", StringComparison.Ordinal);
        return (dot >= 0 ? s[..dot] : s) + suffix;
    }

    /// <summary>printf("%#x") for non-negative values: "0" for zero, else "0x..." lower-case.</summary>
    public static string AltHex(long value) =>
        value == 0 ? "0" : "0x" + value.ToString("x", CultureInfo.InvariantCulture);
}
