using BenchmarkDotNet.Attributes;
using Qcow2.Spans;

namespace Qcow2.Benchmarks.Spans;

/// <summary>Decoding and validating every entry of a full 64 KiB L2 table (8192 standard or 4096 extended entries).</summary>
[MemoryDiagnoser]
public class L2TableBenchmarks
{
    private readonly byte[] _standard = new byte[65536];
    private readonly byte[] _extended = new byte[65536];
    private readonly ClusterGeometry _g = ClusterGeometry.Create(16);
    private readonly ClusterGeometry _gx = ClusterGeometry.Create(16, true);

    [GlobalSetup]
    public void Setup()
    {
        var rnd = new Random(42);
        for (int i = 0; i < _g.L2Entries; i++)
        {
            var e = rnd.Next(4) switch
            {
                0 => L2Entry.Unallocated,
                1 => L2Entry.Zero(),
                2 => L2Entry.Compressed(CompressedDescriptor.Encode(0x100000 + i * 1000L, 700, 16)),
                _ => L2Entry.Normal(0x100000L + ((long)i << 16), true),
            };
            L2Entry.Write(_standard, i, false, e);
        }
        for (int i = 0; i < _gx.L2Entries; i++)
        {
            uint alloc = (uint)rnd.Next();
            var e = rnd.Next(3) switch
            {
                0 => L2Entry.UnallocatedExtended.WithBitmap((ulong)~alloc << 32),
                1 => L2Entry.Compressed(CompressedDescriptor.Encode(0x100000 + i * 1000L, 700, 16), true),
                _ => L2Entry.NormalExtended(0x100000L + ((long)i << 16), true, alloc | ((ulong)(~alloc & 0xff) << 32)),
            };
            L2Entry.Write(_extended, i, true, e);
        }
    }

    [Benchmark]
    public long DecodeStandardTable()
    {
        long sum = 0;
        int n = _g.L2Entries;
        for (int i = 0; i < n; i++)
        {
            var e = L2Entry.Read(_standard, i, false);
            if (e.Validate(_g) != L2EntryStatus.Valid) return -1;
            sum += e.Kind switch
            {
                ClusterKind.Normal => e.HostOffset,
                ClusterKind.Compressed => e.GetCompressedDescriptor(16).HostLength,
                _ => 1,
            };
        }
        return sum;
    }

    [Benchmark]
    public long DecodeExtendedTable()
    {
        long sum = 0;
        int n = _gx.L2Entries;
        for (int i = 0; i < n; i++)
        {
            var e = L2Entry.Read(_extended, i, true);
            if (e.Validate(_gx) != L2EntryStatus.Valid) return -1;
            if (e.Kind == ClusterKind.Compressed)
            {
                sum += e.GetCompressedDescriptor(16).HostLength;
                continue;
            }
            // Walk the subclusters run by run, as a reader mapping a whole cluster does.
            for (int sc = 0; sc < 32;)
            {
                int run = e.SubclusterRunLength(sc);
                sum += (int)e.GetSubcluster(sc) * run;
                sc += run;
            }
        }
        return sum;
    }
}
