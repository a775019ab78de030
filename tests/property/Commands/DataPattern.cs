namespace Qcow2.Property.Tests.Commands;

/// <summary>
/// The bytes a write puts down. <c>-P 0x5a</c> fills every byte with 0x5a (as qemu-io does);
/// <c>-R 0x5a</c> gives pseudo-random bytes keyed by 0x5a and the guest offset of each byte, so that
/// data landing at the wrong place inside one write (off by a byte, a sector, a cluster) is caught.
/// </summary>
internal readonly record struct DataPattern(byte Seed, bool Ramp)
{
    public static DataPattern Fill(byte seed) => new(seed, false);

    public static DataPattern Random(byte seed) => new(seed, true);

    /// <summary>The byte this pattern puts at guest offset <paramref name="guestOffset"/>.</summary>
    public byte ByteAt(long guestOffset)
    {
        if (!Ramp) return Seed;
        // A multiplicative hash of the offset: neighbours, sectors and clusters all differ.
        var h = (ulong)guestOffset * 0x9E3779B97F4A7C15UL;
        h ^= h >> 29;
        return (byte)((h >> 32) ^ Seed);
    }

    /// <summary>Fills <paramref name="destination"/> with the bytes for guest offsets starting at <paramref name="guestOffset"/>.</summary>
    public void Fill(long guestOffset, Span<byte> destination)
    {
        if (!Ramp)
        {
            destination.Fill(Seed);
            return;
        }
        for (var i = 0; i < destination.Length; i++) destination[i] = ByteAt(guestOffset + i);
    }

    public byte[] Create(long guestOffset, int length)
    {
        var data = new byte[length];
        Fill(guestOffset, data);
        return data;
    }

    public override string ToString() => (Ramp ? "-R " : "-P ") + Hex.Byte(Seed);
}

internal static class Hex
{
    public static string Of(long value) => "0x" + value.ToString("x", System.Globalization.CultureInfo.InvariantCulture);

    public static string Byte(byte value) => "0x" + value.ToString("x2", System.Globalization.CultureInfo.InvariantCulture);
}
