using BenchmarkDotNet.Attributes;
using Qcow2.Spans;

namespace Qcow2.Benchmarks.Spans;

/// <summary>Parsing and validating a qemu-img-like header cluster, and walking its extensions.</summary>
[MemoryDiagnoser]
public class HeaderBenchmarks
{
    private readonly byte[] _cluster = new byte[65536];
    private readonly Qcow2Header _header = new();
    private readonly HeaderViolation[] _violations = new HeaderViolation[HeaderValidator.MaxViolations];

    [GlobalSetup]
    public void Setup()
    {
        var h = new Qcow2Header
        {
            Version = 3, ClusterBits = 16, Size = 1UL << 34, L1Size = 32, L1TableOffset = 0x30000,
            RefcountTableOffset = 0x10000, RefcountTableClusters = 1, RefcountOrder = 4, HeaderLength = 112,
            CompatibleFeatures = CompatibleFeatures.LazyRefcounts, AutoclearFeatures = AutoclearFeatures.Bitmaps,
            BackingFileOffset = 0x400, BackingFileSize = 10,
        };
        h.WriteTo(_cluster);
        var c = _cluster.AsSpan();
        int pos = h.ExtensionsStart;
        pos += HeaderExtensionEnumerator.WriteExtension(c[pos..], Qcow2Constants.ExtensionBackingFormat, "qcow2"u8);
        var names = new byte[8 * 48];
        int i = 0;
        foreach (var (type, bit) in new[] { (FeatureType.Incompatible, 0), (FeatureType.Incompatible, 1), (FeatureType.Incompatible, 2),
                     (FeatureType.Incompatible, 3), (FeatureType.Incompatible, 4), (FeatureType.Compatible, 0),
                     (FeatureType.Autoclear, 0), (FeatureType.Autoclear, 1) })
            FeatureNameTable.WriteEntry(names.AsSpan(48 * i++), type, bit, System.Text.Encoding.ASCII.GetBytes(FeatureBits.GetKnownName(type, bit)!));
        pos += HeaderExtensionEnumerator.WriteExtension(c[pos..], Qcow2Constants.ExtensionFeatureNameTable, names);
        var bitmaps = new byte[24];
        bitmaps[3] = 1;
        bitmaps[15] = 64;
        bitmaps[21] = 5; // directory at 0x50000
        pos += HeaderExtensionEnumerator.WriteExtension(c[pos..], Qcow2Constants.ExtensionBitmaps, bitmaps);
        HeaderExtensionEnumerator.WriteEnd(c[pos..]);
        "base.qcow2"u8.CopyTo(c[0x400..]);
        Qcow2Header.Parse(_cluster, _header);
        if (HeaderValidator.Validate(_header, 1 << 20, _violations, _cluster) != 0)
            throw new InvalidOperationException(_violations[0].ToString());
    }

    [Benchmark]
    public uint Parse()
    {
        Qcow2Header.Parse(_cluster, _header);
        return _header.ClusterBits;
    }

    [Benchmark]
    public int Validate() => HeaderValidator.Validate(_header, 1 << 20, _violations);

    [Benchmark]
    public int ParseAndValidateWithExtensions()
    {
        Qcow2Header.Parse(_cluster, _header);
        return HeaderValidator.Validate(_header, 1 << 20, _violations, _cluster);
    }

    [Benchmark]
    public int WalkExtensions()
    {
        int n = 0;
        var e = new HeaderExtensionEnumerator(_cluster.AsSpan(0, 0x400), 112);
        foreach (var ext in e) n += ext.Data.Length;
        return e.Error == HeaderExtensionError.None ? n : -1;
    }
}
