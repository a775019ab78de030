using System.Buffers.Binary;
using Qcow2.Layout;
using Qcow2.Spans;
using Qcow2.Spans.Layout;

namespace Qcow2.Fuzz;

/// <summary>
/// Structure-aware mutations of a qcow2 image. Header fields are chosen by name from the
/// generated field table; table entries (L1, L2, refcount table and blocks, snapshot table) are
/// located through the header, so most mutations land in metadata the reader must validate.
/// Every mutation is described in words, so a finding says what was changed.
/// </summary>
public sealed class Mutator
{
    private readonly Random _random;

    /// <summary>Creates a mutator drawing from <paramref name="random"/>.</summary>
    public Mutator(Random random) => _random = random;

    /// <summary>Applies one to four mutations to a copy of <paramref name="seed"/>.</summary>
    public byte[] Mutate(byte[] seed, List<string> log)
    {
        var image = (byte[])seed.Clone();
        int count = 1 + _random.Next(4);
        for (int i = 0; i < count; i++)
        {
            image = _random.Next(100) switch
            {
                < 30 => MutateHeaderField(image, log),
                < 60 => MutateTableEntry(image, log),
                < 72 => MutateExtensionArea(image, log),
                < 92 => FlipBits(image, log),
                _ => Resize(image, log),
            };
        }

        return image;
    }

    private byte[] MutateHeaderField(byte[] image, List<string> log)
    {
        ReadOnlySpan<OnDiskFieldInfo> fields = HeaderView.Fields;
        var field = fields[_random.Next(fields.Length)];
        if (field.Offset + field.Width > image.Length) return image;
        var span = image.AsSpan(field.Offset, field.Width);
        if (field.Kind == OnDiskFieldKind.Bytes)
        {
            _random.NextBytes(span);
            log.Add($"header.{field.Name}: random bytes");
            return image;
        }

        ulong current = ReadBigEndian(span);
        ulong value = InterestingValue(current, field.Width * 8, image.Length);
        WriteBigEndian(span, value);
        log.Add($"header.{field.Name}: 0x{current:x} -> 0x{value:x}");
        return image;
    }

    private byte[] MutateTableEntry(byte[] image, List<string> log)
    {
        if (!Qcow2Header.TryParse(image, out var header) || header is null || header.ClusterSize == 0)
            return FlipBits(image, log);

        var tables = new List<(string Name, long Offset, long Count)>();
        AddTable(tables, "L1", (long)header.L1TableOffset, header.L1Size, image.Length);
        AddTable(tables, "refcount table", (long)header.RefcountTableOffset, (long)header.RefcountTableClusters * header.ClusterSize / 8, image.Length);
        AddTable(tables, "snapshot table", (long)header.SnapshotsOffset, header.ClusterSize / 8, image.Length);

        // L2 tables and refcount blocks found through the first-level tables.
        foreach (var (name, offset, count) in tables.ToArray())
        {
            if (name == "snapshot table") continue;
            for (long i = 0; i < Math.Min(count, 64); i++)
            {
                long child = (long)(BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan((int)(offset + i * 8))) & 0x00ff_ffff_ffff_fe00UL);
                if (child != 0)
                    AddTable(tables, name == "L1" ? "L2" : "refcount block", child, header.ClusterSize / 8, image.Length);
            }
        }

        if (tables.Count == 0) return FlipBits(image, log);
        var (tableName, tableOffset, entries) = tables[_random.Next(tables.Count)];
        long index = _random.NextInt64(Math.Max(1, entries));
        int at = (int)(tableOffset + index * 8);
        var span = image.AsSpan(at, 8);
        ulong old = BinaryPrimitives.ReadUInt64BigEndian(span);
        ulong value = _random.Next(4) switch
        {
            0 => (ulong)tables[_random.Next(tables.Count)].Offset | (old & 0x8000_0000_0000_0000UL), // point at other metadata
            1 => old ^ (1UL << _random.Next(64)),
            2 => old | 0x4000_0000_0000_0000UL,                                                      // "compressed"
            _ => InterestingValue(old, 64, image.Length),
        };
        WriteBigEndian(span, value);
        log.Add($"{tableName}[{index}] at 0x{at:x}: 0x{old:x} -> 0x{value:x}");
        return image;
    }

    private static void AddTable(List<(string, long, long)> tables, string name, long offset, long count, long fileLength)
    {
        if (offset <= 0 || (offset & 7) != 0 || offset >= fileLength || count <= 0) return;
        long fit = (fileLength - offset) / 8;
        if (fit <= 0) return; // not even one whole entry inside the file
        tables.Add((name, offset, Math.Min(count, fit)));
    }

    private byte[] MutateExtensionArea(byte[] image, List<string> log)
    {
        int start = image.Length > 104 ? 104 : 72;
        int end = Math.Min(image.Length, 4096);
        if (end - start < 8) return FlipBits(image, log);
        int at = start + (_random.Next(end - start) & ~3);
        if (at + 4 > image.Length) return image;
        uint old = BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(at));
        uint value = (uint)InterestingValue(old, 32, image.Length);
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(at), value);
        log.Add($"extension area u32 at 0x{at:x}: 0x{old:x} -> 0x{value:x}");
        return image;
    }

    private byte[] FlipBits(byte[] image, List<string> log)
    {
        if (image.Length == 0) return image;
        int flips = 1 + _random.Next(8);
        for (int i = 0; i < flips; i++)
        {
            int at = _random.Next(image.Length);
            int bit = _random.Next(8);
            image[at] ^= (byte)(1 << bit);
            log.Add($"flip bit {bit} of byte 0x{at:x}");
        }

        return image;
    }

    private byte[] Resize(byte[] image, List<string> log)
    {
        int newLength = _random.Next(3) switch
        {
            0 => _random.Next(Math.Max(1, image.Length)),                // truncate anywhere
            1 => image.Length - _random.Next(1, Math.Max(2, image.Length / 4)),
            _ => image.Length + _random.Next(1, 70000),
        };
        newLength = Math.Max(0, newLength);
        log.Add($"resize file 0x{image.Length:x} -> 0x{newLength:x}");
        Array.Resize(ref image, newLength);
        return image;
    }

    private ulong InterestingValue(ulong current, int bits, long fileLength)
    {
        ulong mask = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
        ulong v = _random.Next(14) switch
        {
            0 => 0,
            1 => 1,
            2 => mask,
            3 => mask >> 1,
            4 => (mask >> 1) + 1,
            5 => current + 1,
            6 => current - 1,
            7 => current << 1,
            8 => current >> 1,
            9 => (ulong)fileLength,
            10 => (ulong)fileLength + 512,
            11 => 1UL << _random.Next(bits),
            12 => current ^ (1UL << _random.Next(bits)),
            _ => (ulong)_random.NextInt64() ,
        };
        return v & mask;
    }

    private static ulong ReadBigEndian(ReadOnlySpan<byte> span) => span.Length switch
    {
        1 => span[0],
        2 => BinaryPrimitives.ReadUInt16BigEndian(span),
        4 => BinaryPrimitives.ReadUInt32BigEndian(span),
        _ => BinaryPrimitives.ReadUInt64BigEndian(span),
    };

    private static void WriteBigEndian(Span<byte> span, ulong value)
    {
        switch (span.Length)
        {
            case 1: span[0] = (byte)value; break;
            case 2: BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)value); break;
            case 4: BinaryPrimitives.WriteUInt32BigEndian(span, (uint)value); break;
            default: BinaryPrimitives.WriteUInt64BigEndian(span, value); break;
        }
    }
}
