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
            image = MutateAny(image, log);
        }

        return image;
    }

    /// <summary>
    /// Applies one to three mutations to a copy of an encrypted <paramref name="seed"/>, more than half
    /// of them aimed at the encryption metadata: the LUKS1 header and key slots (fields chosen from
    /// their generated field tables), the key material, and the full disk encryption header extension.
    /// </summary>
    public byte[] MutateEncrypted(byte[] seed, List<string> log)
    {
        var image = (byte[])seed.Clone();
        int count = 1 + _random.Next(3);
        for (int i = 0; i < count; i++)
        {
            image = _random.Next(100) switch
            {
                < 20 => MutateLuksHeaderField(image, log),
                < 42 => MutateLuksKeySlot(image, log),
                < 54 => MutateCryptoExtension(image, log),
                < 60 => MutateKeyMaterial(image, log),
                _ => MutateAny(image, log),
            };
        }

        return image;
    }

    private byte[] MutateAny(byte[] image, List<string> log) => _random.Next(100) switch
    {
        < 30 => MutateHeaderField(image, log),
        < 60 => MutateTableEntry(image, log),
        < 72 => MutateExtensionArea(image, log),
        < 92 => FlipBits(image, log),
        _ => Resize(image, log),
    };

    // LUKS strings a header may name: supported ones, unsupported ones, and malformed ones.
    private static readonly string[] CipherNames = ["aes", "twofish", "serpent", "AES", "", "aes-xts"];
    private static readonly string[] CipherModes =
    [
        "xts-plain64", "xts-plain", "cbc-plain64", "cbc-plain", "cbc-essiv:sha256", "cbc-essiv:sha1", "cbc-essiv:sha512",
        "cbc-essiv:sha384", "xts-essiv:sha256", "cbc-essiv", "cbc-essiv:", "cbc-plain64:sha256", "ecb", "xts", "cbc-", "-", "",
        "cbc-essiv:md5", "ctr-plain64", "xts-benbi",
    ];
    private static readonly string[] HashSpecs = ["sha1", "sha256", "sha384", "sha512", "md5", "ripemd160", "", "SHA256"];

    /// <summary>Where the full disk encryption extension's 16 data bytes are in the header cluster, or -1.</summary>
    public static int FindCryptoExtension(ReadOnlySpan<byte> image)
    {
        if (image.Length < 72) return -1;
        uint version = image.Length >= 8 ? BinaryPrimitives.ReadUInt32BigEndian(image[4..]) : 0;
        int at = version >= 3 && image.Length >= 104 ? (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(image[100..]), 65536u) : 72;
        int end = Math.Min(image.Length, 65536);
        while (at >= 0 && at + 8 <= end)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(image[at..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(image[(at + 4)..]);
            if (type == 0) return -1;
            if (type == Qcow2Constants.ExtensionFullDiskEncryption)
                return length >= 16 && at + 8 + 16 <= end ? at + 8 : -1;
            long next = at + 8 + (((long)length + 7) & ~7L);
            if (next > end) return -1;
            at = (int)next;
        }

        return -1;
    }

    /// <summary>The LUKS region's offset and length as the extension names them, when the 592-byte header lies inside the file.</summary>
    private static bool TryFindLuks(byte[] image, out int offset, out long length)
    {
        offset = 0;
        length = 0;
        int ext = FindCryptoExtension(image);
        if (ext < 0) return false;
        ulong o = BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(ext));
        length = (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(ext + 8)), long.MaxValue);
        if (o == 0 || o > (ulong)(image.Length - LuksPartitionHeaderView.SizeInBytes) || image.Length < LuksPartitionHeaderView.SizeInBytes) return false;
        offset = (int)o;
        return true;
    }

    private byte[] MutateCryptoExtension(byte[] image, List<string> log)
    {
        int ext = FindCryptoExtension(image);
        if (ext < 0) return MutateHeaderField(image, log);
        switch (_random.Next(5))
        {
            case 0:
            {
                // The extension's own length word (QEMU requires exactly 16).
                var span = image.AsSpan(ext - 4, 4);
                uint old = BinaryPrimitives.ReadUInt32BigEndian(span);
                uint value = _random.Next(2) == 0 ? (uint)_random.Next(0, 40) : (uint)InterestingValue(old, 32, image.Length);
                BinaryPrimitives.WriteUInt32BigEndian(span, value);
                log.Add($"crypto extension length word: 0x{old:x} -> 0x{value:x}");
                return image;
            }
            case 1:
            case 2:
            {
                var span = image.AsSpan(ext, 8);
                ulong old = BinaryPrimitives.ReadUInt64BigEndian(span);
                int cluster = Math.Max(512, ClusterSizeOf(image));
                ulong value = _random.Next(4) switch
                {
                    0 => old + (ulong)cluster,
                    1 => old - (ulong)cluster,
                    2 => (ulong)(_random.NextInt64(Math.Max(1, image.Length / cluster + 2)) * cluster), // another cluster, maybe metadata, maybe past the end
                    _ => InterestingValue(old, 64, image.Length),
                };
                BinaryPrimitives.WriteUInt64BigEndian(span, value);
                log.Add($"crypto extension offset: 0x{old:x} -> 0x{value:x}");
                return image;
            }
            default:
            {
                var span = image.AsSpan(ext + 8, 8);
                ulong old = BinaryPrimitives.ReadUInt64BigEndian(span);
                ulong value = _random.Next(4) switch
                {
                    0 => (ulong)LuksPartitionHeaderView.SizeInBytes - (ulong)_random.Next(2),
                    1 => old - (ulong)_random.Next(1, 300000),
                    2 => old + (ulong)_random.Next(1, 1 << 20),
                    _ => InterestingValue(old, 64, image.Length),
                };
                BinaryPrimitives.WriteUInt64BigEndian(span, value);
                log.Add($"crypto extension length: 0x{old:x} -> 0x{value:x}");
                return image;
            }
        }
    }

    private byte[] MutateLuksHeaderField(byte[] image, List<string> log)
    {
        if (!TryFindLuks(image, out int luks, out _)) return MutateCryptoExtension(image, log);
        ReadOnlySpan<OnDiskFieldInfo> fields = LuksPartitionHeaderView.Fields;
        var field = fields[_random.Next(fields.Length)];
        if (field.Name == nameof(LuksPartitionHeaderView.KeySlots)) return MutateLuksKeySlot(image, log);
        var span = image.AsSpan(luks + field.Offset, field.Width);
        string[]? dictionary = field.Name switch
        {
            nameof(LuksPartitionHeaderView.CipherName) => CipherNames,
            nameof(LuksPartitionHeaderView.CipherMode) => CipherModes,
            nameof(LuksPartitionHeaderView.HashSpec) => HashSpecs,
            _ => null,
        };
        if (dictionary is not null && _random.Next(4) != 0)
        {
            string text = dictionary[_random.Next(dictionary.Length)];
            span.Clear();
            System.Text.Encoding.ASCII.GetBytes(text, span);
            log.Add($"LUKS header.{field.Name}: \"{text}\"");
            return image;
        }

        if (field.Kind == OnDiskFieldKind.Bytes)
        {
            if (_random.Next(2) == 0)
            {
                _random.NextBytes(span);
                log.Add($"LUKS header.{field.Name}: random bytes");
            }
            else
            {
                int bit = _random.Next(span.Length * 8);
                span[bit / 8] ^= (byte)(1 << (bit % 8));
                log.Add($"LUKS header.{field.Name}: flip bit {bit}");
            }

            return image;
        }

        ulong current = ReadBigEndian(span);
        ulong value = field.Name switch
        {
            nameof(LuksPartitionHeaderView.KeyBytes) when _random.Next(2) == 0 => (ulong)(8 * _random.Next(0, 10)),
            nameof(LuksPartitionHeaderView.MasterKeyDigestIterations) when _random.Next(2) == 0 => IterationValue(),
            _ => InterestingValue(current, field.Width * 8, image.Length),
        };
        WriteBigEndian(span, value);
        log.Add($"LUKS header.{field.Name}: 0x{current:x} -> 0x{value:x}");
        return image;
    }

    private byte[] MutateLuksKeySlot(byte[] image, List<string> log)
    {
        if (!TryFindLuks(image, out int luks, out _)) return MutateCryptoExtension(image, log);
        int slot = _random.Next(8);
        int slotAt = luks + LuksPartitionHeaderView.KeySlotsOffset + slot * LuksKeySlotView.SizeInBytes;
        if (_random.Next(6) == 0)
        {
            // Another active slot: a copy of slot 0 (same salt, iterations and material) or of its numbers only.
            int from = luks + LuksPartitionHeaderView.KeySlotsOffset;
            image.AsSpan(from, LuksKeySlotView.SizeInBytes).CopyTo(image.AsSpan(slotAt));
            log.Add($"LUKS key slot {slot}: copy of slot 0");
            return image;
        }

        ReadOnlySpan<OnDiskFieldInfo> fields = LuksKeySlotView.Fields;
        var field = fields[_random.Next(fields.Length)];
        var span = image.AsSpan(slotAt + field.Offset, field.Width);
        if (field.Kind == OnDiskFieldKind.Bytes)
        {
            int bit = _random.Next(span.Length * 8);
            span[bit / 8] ^= (byte)(1 << (bit % 8));
            log.Add($"LUKS key slot {slot}.{field.Name}: flip bit {bit}");
            return image;
        }

        ulong current = ReadBigEndian(span);
        var other = LuksKeySlotView.Create(image.AsSpan(luks + LuksPartitionHeaderView.KeySlotsOffset + _random.Next(8) * LuksKeySlotView.SizeInBytes, LuksKeySlotView.SizeInBytes));
        ulong value = (field.Name, _random.Next(3)) switch
        {
            (nameof(LuksKeySlotView.Active), 0) => 0x00AC71F3,   // enabled
            (nameof(LuksKeySlotView.Active), 1) => 0x0000DEAD,   // disabled
            (nameof(LuksKeySlotView.Iterations), < 2) => IterationValue(),
            (nameof(LuksKeySlotView.Stripes), 0) => (ulong)_random.Next(0, 4002),
            (nameof(LuksKeySlotView.KeyMaterialOffset), 0) => other.KeyMaterialOffset + (ulong)_random.Next(-8, 9), // near or on another slot's material
            (nameof(LuksKeySlotView.KeyMaterialOffset), 1) => (ulong)_random.Next(0, 5000),
            _ => InterestingValue(current, field.Width * 8, image.Length),
        };
        WriteBigEndian(span, value);
        log.Add($"LUKS key slot {slot}.{field.Name}: 0x{current:x} -> 0x{value:x}");
        return image;
    }

    /// <summary>An iteration count: mostly cheap ones, some at and past the library's work limit.</summary>
    private ulong IterationValue() => _random.Next(8) switch
    {
        0 => 0,
        1 => 1,
        2 => uint.MaxValue,
        3 => (1UL << 24) + (ulong)_random.Next(-2, 3),
        4 => (1UL << 26) + (ulong)_random.Next(-2, 3),
        5 => (1UL << 23) / (ulong)_random.Next(1, 9),
        _ => (ulong)_random.Next(1, 5000),
    };

    private byte[] MutateKeyMaterial(byte[] image, List<string> log)
    {
        if (!TryFindLuks(image, out int luks, out _)) return FlipBits(image, log);
        int slot = _random.Next(8);
        var view = LuksKeySlotView.Create(image.AsSpan(luks + LuksPartitionHeaderView.KeySlotsOffset + slot * LuksKeySlotView.SizeInBytes, LuksKeySlotView.SizeInBytes));
        long material = luks + (long)view.KeyMaterialOffset * 512;
        if (material >= image.Length) return FlipBits(image, log);
        long span = Math.Min(image.Length - material, 64L * 4000);
        int flips = 1 + _random.Next(4);
        for (int i = 0; i < flips; i++)
        {
            long at = material + _random.NextInt64(span);
            int bit = _random.Next(8);
            image[at] ^= (byte)(1 << bit);
            log.Add($"key material of slot {slot}: flip bit {bit} of byte 0x{at:x}");
        }

        return image;
    }

    private static int ClusterSizeOf(byte[] image)
    {
        if (image.Length < 24) return 65536;
        uint bits = BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(20));
        return bits is >= 9 and <= 21 ? 1 << (int)bits : 65536;
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
