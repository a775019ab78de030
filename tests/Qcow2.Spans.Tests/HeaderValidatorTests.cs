using System.Text;
using FsCheck.Fluent;
using Qcow2.Spans.Layout;

namespace Qcow2.Spans.Tests;

public class HeaderValidatorTests
{
    private static HeaderViolation[] Run(Qcow2Header h, long fileLength = HeaderTests.ValidFileLength, byte[]? cluster = null)
    {
        var dest = new HeaderViolation[HeaderValidator.MaxViolations];
        int n = HeaderValidator.Validate(h, fileLength, dest, cluster);
        return dest[..n];
    }

    [Fact]
    public void Validate_ValidHeader_NoViolations()
    {
        Assert.Empty(Run(HeaderTests.Valid()));
        HeaderValidator.ThrowIfInvalid(HeaderTests.Valid(), HeaderTests.ValidFileLength);
    }

    public static TheoryData<string, HeaderRule, bool, string, ulong> SingleRuleCases() => new()
    {
        { "magic", HeaderRule.Magic, false, "magic", 0x514649fa },
        { "version4", HeaderRule.Version, true, "version", 4 },
        { "version1", HeaderRule.Version, true, "version", 1 },
        { "clusterbits8", HeaderRule.ClusterBits, false, "cluster_bits", 8 },
        { "clusterbits22", HeaderRule.ClusterBits, true, "cluster_bits", 22 },
        { "hl100", HeaderRule.HeaderLength, false, "header_length", 100 },
        { "hl108", HeaderRule.HeaderLength, false, "header_length", 108 },
        { "hlbig", HeaderRule.HeaderLength, false, "header_length", 65544 },
        { "order7", HeaderRule.RefcountOrder, false, "refcount_order", 7 },
        { "crypt3", HeaderRule.CryptMethod, true, "crypt_method", 3 },
        { "sizehuge", HeaderRule.Size, false, "size", 1UL << 63 },
        { "l1misaligned", HeaderRule.L1TableOffset, false, "l1_table_offset", 0x30200 },
        { "l1zero", HeaderRule.L1TableOffset, false, "l1_table_offset", 0 },
        { "l1limit", HeaderRule.L1SizeLimit, true, "l1_size", 4 * 1024 * 1024 + 1 },
        { "l1small", HeaderRule.L1SizeTooSmall, false, "l1_size", 1 },
        { "l1beyond", HeaderRule.BeyondEndOfFile, false, "l1_table_offset", 0x40000 },
        { "rtmisaligned", HeaderRule.RefcountTableOffset, false, "refcount_table_offset", 0x10008 },
        { "rtzero", HeaderRule.RefcountTableOffset, false, "refcount_table_offset", 0 },
        { "rtoverflow", HeaderRule.RefcountTableOffset, false, "refcount_table_offset", 0x7fff_ffff_ffff_0000 },
        { "rtclusters0", HeaderRule.RefcountTableClusters, false, "refcount_table_clusters", 0 },
        { "rtclustersbig", HeaderRule.RefcountTableClusters, true, "refcount_table_clusters", 129 },
        { "snapmisaligned", HeaderRule.SnapshotsOffset, false, "snapshots_offset", 0x20100 },
        { "snapcount", HeaderRule.SnapshotCount, true, "nb_snapshots", 65537 },
        { "backingoverlap", HeaderRule.BackingFileOffset, false, "backing_file_offset", 64 },
        { "backingoutside", HeaderRule.BackingFileOffset, false, "backing_file_offset", 65530 },
        { "backinglong", HeaderRule.BackingFileSize, false, "backing_file_size", 1024 },
        { "unknownincompat", HeaderRule.UnknownIncompatibleFeature, true, "incompatible_features", 1UL << 40 },
        { "ctbitzlib", HeaderRule.CompressionType, false, "compression_type", 0 },
        { "ctnobit", HeaderRule.CompressionType, false, "compression_type", 1 },
        { "ctunknown", HeaderRule.CompressionType, true, "compression_type", 2 },
        { "ctnofield", HeaderRule.CompressionType, false, "compression_type", 104 },
        { "extl2small", HeaderRule.ExtendedL2ClusterBits, false, "cluster_bits", 13 },
        { "rawnodata", HeaderRule.DataFileRawWithoutDataFile, false, "autoclear_features", 2 },
        { "rawbacking", HeaderRule.DataFileRawWithBackingFile, false, "backing_file_offset", 0x200 },
        { "snapdatafile", HeaderRule.SnapshotsWithDataFile, false, "nb_snapshots", 1 },
        { "padding", HeaderRule.HeaderPadding, false, "padding", 0x0100 },
        { "filetiny", HeaderRule.BeyondEndOfFile, false, "header_length", 112 },
    };

    private static void Patch(string name, Qcow2Header h, ref long fileLength)
    {
        switch (name)
        {
            case "magic": h.Magic = 0x514649fa; break;
            case "version4": h.Version = 4; break;
            case "version1": h.Version = 1; break;
            case "clusterbits8": h.ClusterBits = 8; h.L1Size = 1 << 20; h.L1TableOffset = 0x30000; break;
            case "clusterbits22": h.ClusterBits = 22; break;
            case "hl100": h.HeaderLength = 100; break;
            case "hl108": h.HeaderLength = 108; break;
            case "hlbig": h.HeaderLength = 65544; break;
            case "order7": h.RefcountOrder = 7; break;
            case "crypt3": h.CryptMethod = 3; break;
            case "sizehuge": h.Size = 1UL << 63; break;
            case "l1misaligned": h.L1TableOffset = 0x30200; break;
            case "l1zero": h.L1TableOffset = 0; break;
            case "l1limit": h.L1Size = 4 * 1024 * 1024 + 1; fileLength = -1; break;
            case "l1small": h.L1Size = 1; break;
            case "l1beyond": h.L1TableOffset = 0x40000; break;
            case "rtmisaligned": h.RefcountTableOffset = 0x10008; break;
            case "rtzero": h.RefcountTableOffset = 0; break;
            case "rtoverflow": h.RefcountTableOffset = 0x7fff_ffff_ffff_0000; break;
            case "rtclusters0": h.RefcountTableClusters = 0; break;
            case "rtclustersbig": h.RefcountTableClusters = 129; fileLength = -1; break;
            case "snapmisaligned": h.SnapshotCount = 1; h.SnapshotsOffset = 0x20100; break;
            case "snapcount": h.SnapshotCount = 65537; h.SnapshotsOffset = 0x20000; fileLength = -1; break;
            case "backingoverlap": h.BackingFileOffset = 64; h.BackingFileSize = 4; break;
            case "backingoutside": h.BackingFileOffset = 65530; h.BackingFileSize = 10; break;
            case "backinglong": h.BackingFileOffset = 0x200; h.BackingFileSize = 1024; break;
            case "unknownincompat": h.IncompatibleFeatures = (IncompatibleFeatures)(1UL << 40); break;
            case "ctbitzlib": h.IncompatibleFeatures = IncompatibleFeatures.CompressionType; break;
            case "ctnobit": h.CompressionType = CompressionType.Zstd; break;
            case "ctunknown": h.IncompatibleFeatures = IncompatibleFeatures.CompressionType; h.CompressionType = (CompressionType)2; break;
            case "ctnofield": h.HeaderLength = 104; h.IncompatibleFeatures = IncompatibleFeatures.CompressionType; break;
            case "extl2small": h.ClusterBits = 13; h.L1Size = 64; h.IncompatibleFeatures = IncompatibleFeatures.ExtendedL2; h.L1TableOffset = 0x30000; break;
            case "rawnodata": h.AutoclearFeatures = AutoclearFeatures.DataFileRaw; break;
            case "rawbacking": h.IncompatibleFeatures = IncompatibleFeatures.ExternalDataFile; h.AutoclearFeatures = AutoclearFeatures.DataFileRaw; h.BackingFileOffset = 0x200; h.BackingFileSize = 4; break;
            case "snapdatafile": h.IncompatibleFeatures = IncompatibleFeatures.ExternalDataFile; h.SnapshotCount = 1; h.SnapshotsOffset = 0x20000; break;
            case "padding": h.PaddingRaw = 0x0100; break;
            case "filetiny": fileLength = 100; h.L1Size = 0; h.Size = 0; h.RefcountTableClusters = 1; h.RefcountTableOffset = 0x10000; fileLength = 100; break;
            default: throw new InvalidOperationException(name);
        }
    }

    [Theory]
    [MemberData(nameof(SingleRuleCases))]
    public void Validate_OneFieldPatched_ReportsExactlyThatViolation(string patch, HeaderRule rule, bool unsupported, string field, ulong raw)
    {
        var h = HeaderTests.Valid();
        long fileLength = HeaderTests.ValidFileLength;
        Patch(patch, h, ref fileLength);
        var v = Run(h, fileLength);
        if (patch == "filetiny")
        {
            // A 100-byte file also cannot hold the refcount table.
            Assert.Contains(v, x => x.Rule == rule && x.Field == field && x.RawValue == raw);
            return;
        }
        var only = Assert.Single(v);
        Assert.Equal(rule, only.Rule);
        Assert.Equal(unsupported, only.IsUnsupported);
        Assert.Equal(field, only.Field);
        Assert.Equal(raw, only.RawValue);
        Assert.False(string.IsNullOrWhiteSpace(only.Message));
        var ex = Record.Exception(() => HeaderValidator.ThrowIfInvalid(h, fileLength));
        Assert.IsType(unsupported ? typeof(Qcow2UnsupportedImageException) : typeof(Qcow2CorruptImageException), ex);
    }

    [Fact]
    public void Validate_UnknownIncompatibleBits_NamedFromTheImageFeatureTable()
    {
        var h = HeaderTests.Valid();
        h.IncompatibleFeatures = (IncompatibleFeatures)((1UL << 7) | (1UL << 9) | 1);
        var cluster = new byte[65536];
        h.WriteTo(cluster);
        var table = new byte[96];
        FeatureNameTable.WriteEntry(table, FeatureType.Incompatible, 7, "fancy feature"u8);
        FeatureNameTable.WriteEntry(table.AsSpan(48), FeatureType.Compatible, 9, "not this one"u8);
        int pos = 112 + HeaderExtensionEnumerator.WriteExtension(cluster.AsSpan(112), Qcow2Constants.ExtensionFeatureNameTable, table);
        HeaderExtensionEnumerator.WriteEnd(cluster.AsSpan(pos));
        var v = Run(h, HeaderTests.ValidFileLength, cluster);
        Assert.Equal(2, v.Length);
        Assert.All(v, x => Assert.Equal(HeaderRule.UnknownIncompatibleFeature, x.Rule));
        Assert.Contains("bit 7: fancy feature", v[0].Message);
        Assert.Contains("bit 9: unknown feature", v[1].Message);
        var ex = Assert.Throws<Qcow2UnsupportedImageException>(() => HeaderValidator.ThrowIfInvalid(h, HeaderTests.ValidFileLength, cluster));
        Assert.Contains("fancy feature", ex.Message);
    }

    [Fact]
    public void Validate_ExtensionRules_EachReported()
    {
        HeaderViolation[] With(Action<Qcow2Header> patch, params (uint, byte[])[] exts)
        {
            var h = HeaderTests.Valid();
            patch(h);
            var cluster = new byte[65536];
            h.WriteTo(cluster);
            int pos = 112;
            foreach (var (t, d) in exts) pos += HeaderExtensionEnumerator.WriteExtension(cluster.AsSpan(pos), t, d);
            return Run(h, HeaderTests.ValidFileLength, cluster);
        }
        byte[] Bitmaps(uint nb, uint reserved, ulong size, ulong offset)
        {
            var d = new byte[24];
            var v = BitmapsExtensionView.Create(d);
            v.NbBitmaps = nb; v.Reserved = reserved; v.BitmapDirectorySize = size; v.BitmapDirectoryOffset = offset;
            return d;
        }
        Assert.Empty(With(h => h.AutoclearFeatures = AutoclearFeatures.Bitmaps, (Qcow2Constants.ExtensionBitmaps, Bitmaps(1, 0, 64, 0x50000))));
        Assert.Equal(HeaderRule.BitmapsExtension, Assert.Single(With(h => h.AutoclearFeatures = AutoclearFeatures.Bitmaps)).Rule);
        Assert.Equal("bitmaps.nb_bitmaps", Assert.Single(With(_ => { }, (Qcow2Constants.ExtensionBitmaps, Bitmaps(0, 0, 64, 0x50000)))).Field);
        Assert.Equal("bitmaps.reserved", Assert.Single(With(_ => { }, (Qcow2Constants.ExtensionBitmaps, Bitmaps(1, 5, 64, 0x50000)))).Field);
        Assert.Equal("bitmaps.bitmap_directory_offset", Assert.Single(With(_ => { }, (Qcow2Constants.ExtensionBitmaps, Bitmaps(1, 0, 64, 0x50008)))).Field);
        Assert.Equal("bitmaps", Assert.Single(With(_ => { }, (Qcow2Constants.ExtensionBitmaps, new byte[16]))).Field);
        Assert.Equal(HeaderRule.EncryptionExtension, Assert.Single(With(h => h.CryptMethod = 2)).Rule);
        Assert.Equal(HeaderRule.EncryptionExtension, Assert.Single(With(_ => { }, (Qcow2Constants.ExtensionFullDiskEncryption, new byte[16]))).Rule);
        Assert.Empty(With(h => h.CryptMethod = 2, (Qcow2Constants.ExtensionFullDiskEncryption, new byte[16])));
        var longFormat = Assert.Single(With(_ => { }, (Qcow2Constants.ExtensionBackingFormat, new byte[16])));
        Assert.Equal(HeaderRule.StringExtension, longFormat.Rule);
        Assert.True(longFormat.IsUnsupported);
        Assert.Empty(With(_ => { }, (Qcow2Constants.ExtensionBackingFormat, new byte[15])));
        var dup = Assert.Single(With(_ => { }, (Qcow2Constants.ExtensionBackingFormat, "raw"u8.ToArray()), (Qcow2Constants.ExtensionBackingFormat, "raw"u8.ToArray())));
        Assert.Equal(HeaderRule.ExtensionArea, dup.Rule);
        Assert.Equal((ulong)HeaderExtensionError.Duplicate, dup.RawValue);
        Assert.Equal(112 + 16, dup.FieldOffset);
    }

    [Fact]
    public void Validate_SmallDestination_WritesOnlyWhatFits()
    {
        var h = HeaderTests.Valid();
        h.Magic = 0;
        h.Version = 9;
        h.CryptMethod = 7;
        Assert.Equal(3, Run(h).Length);
        var one = new HeaderViolation[1];
        Assert.Equal(1, HeaderValidator.Validate(h, -1, one));
        Assert.Equal(HeaderRule.Magic, one[0].Rule);
    }

    [Fact]
    public void ParseValidateWalk_RandomBytes_ThrowOnlyTypedExceptions()
    {
        // Random header clusters, half of them a valid header with random bytes patched in.
        var valid = new byte[4096];
        var vh = HeaderTests.Valid();
        vh.ClusterBits = 12;
        vh.L1Size = 512;
        vh.BackingFileOffset = 3000;
        vh.BackingFileSize = 8;
        vh.AutoclearFeatures = AutoclearFeatures.Bitmaps;
        vh.WriteTo(valid);
        // Extensions as qemu-img writes them, so that mutations hit their headers and data too.
        int pos = 112;
        pos += HeaderExtensionEnumerator.WriteExtension(valid.AsSpan(pos), Qcow2Constants.ExtensionBackingFormat, "qcow2"u8);
        var names = new byte[3 * 48];
        FeatureNameTable.WriteEntry(names, FeatureType.Incompatible, 0, "dirty bit"u8);
        FeatureNameTable.WriteEntry(names.AsSpan(48), FeatureType.Incompatible, 9, "future"u8);
        FeatureNameTable.WriteEntry(names.AsSpan(96), FeatureType.Autoclear, 0, "bitmaps"u8);
        pos += HeaderExtensionEnumerator.WriteExtension(valid.AsSpan(pos), Qcow2Constants.ExtensionFeatureNameTable, names);
        var bitmaps = new byte[24];
        var bv = BitmapsExtensionView.Create(bitmaps);
        bv.NbBitmaps = 1;
        bv.BitmapDirectorySize = 40;
        bv.BitmapDirectoryOffset = 0x3000;
        pos += HeaderExtensionEnumerator.WriteExtension(valid.AsSpan(pos), Qcow2Constants.ExtensionBitmaps, bitmaps);
        HeaderExtensionEnumerator.WriteEnd(valid.AsSpan(pos));
        "base.img"u8.CopyTo(valid.AsSpan(3000));
        Assert.Empty(Run(Qcow2Header.Parse(valid), 1 << 20, valid));
        var gen = from noise in Props.Bytes(0, 4096)
                  from mutate in Gen.Elements(true, false)
                  from count in Gen.Choose(1, 12)
                  select (noise, mutate, count);
        var dest = new HeaderViolation[HeaderValidator.MaxViolations];
        int reachedValid = 0, rejected = 0;
        Props.Check(gen, t =>
        {
            byte[] data;
            if (t.mutate)
            {
                data = (byte[])valid.Clone();
                var rnd = new Random(t.noise.Length * 31 + t.count);
                for (int i = 0; i < t.count; i++) data[rnd.Next(t.count > 6 ? 120 : 400)] = (byte)rnd.Next(256);
                if (t.noise.Length > 3000) t.noise.AsSpan(0, 64).CopyTo(data.AsSpan(t.noise[0] * 2));
            }
            else data = t.noise;
            try
            {
                var h = Qcow2Header.Parse(data);
                // The mutated header describes a 1 MiB file (its tables lie past the 4 KiB buffer).
                long fileLength = t.mutate ? 1 << 20 : data.Length;
                int n = HeaderValidator.Validate(h, fileLength, dest, data);
                Assert.InRange(n, 0, dest.Length);
                foreach (var v in dest.AsSpan(0, n)) Assert.NotNull(v.Message);
                HeaderValidator.ThrowIfInvalid(h, fileLength, data);
                reachedValid++;
                // A valid header: every extension walk and table read stays in bounds.
                var e = new HeaderExtensionEnumerator(data.AsSpan(0, h.ExtensionsEnd(data.Length)), h.ExtensionsStart);
                foreach (var ext in e)
                    if (ext.Type == Qcow2Constants.ExtensionFeatureNameTable)
                        foreach (var f in new FeatureNameTable(ext.Data)) Assert.True(f.Name.Length <= 46);
                h.GetBackingFileName(data);
                for (int off = 0, i = 0; i < 4 && SnapshotEntryReader.Read(data, off, out _, out int len) == SnapshotEntryStatus.Ok; i++) off += len;
                for (int off = 0, i = 0; i < 4 && BitmapDirectoryReader.Read(data, off, out _, out int len) != BitmapEntryStatus.Truncated && len > 0; i++) off += len;
            }
            catch (Qcow2CorruptImageException) { rejected++; }
            catch (Qcow2UnsupportedImageException) { rejected++; }
        }, cases: 1000);
        // Both paths are exercised: mutated headers that still validate, and rejected ones.
        Assert.True(reachedValid > 50, $"only {reachedValid} cases reached the valid path");
        Assert.True(rejected > 50, $"only {rejected} cases were rejected");
    }
}
