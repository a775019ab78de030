using BenchmarkDotNet.Attributes;
using Qcow2.Spans;

namespace Qcow2.Benchmarks.Spans;

/// <summary>Refcount block operations over a 64 KiB block, for every refcount width.</summary>
[MemoryDiagnoser]
public class RefcountBenchmarks
{
    private readonly byte[] _block = new byte[65536];
    private readonly byte[] _used = new byte[65536];

    /// <summary>refcount_order: widths 1, 2, 4, 8, 16, 32, 64 bits.</summary>
    [Params(0, 1, 2, 3, 4, 5, 6)]
    public int Order { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        // _used: every entry 1 except a 64-entry free run in the last sixteenth (the scan's worst realistic case).
        var b = new RefcountBlock(_used, Order);
        int count = b.Count;
        for (int i = 0; i < count; i++) b.TrySet(i, 1);
        int start = count - count / 16;
        for (int i = start; i < start + 64 && i < count; i++) b.TrySet(i, 0);
    }

    [Benchmark]
    public ulong GetAll()
    {
        var b = new ReadOnlyRefcountBlock(_used, Order);
        ulong sum = 0;
        int n = b.Count;
        for (int i = 0; i < n; i++) sum += b.Get(i);
        return sum;
    }

    [Benchmark]
    public int SetAll()
    {
        var b = new RefcountBlock(_block, Order);
        int ok = 0;
        int n = b.Count;
        ulong max = b.MaxValue;
        for (int i = 0; i < n; i++)
            if (b.TrySet(i, (ulong)i & max)) ok++;
        return ok;
    }

    [Benchmark]
    public int IncrementDecrementAll()
    {
        var b = new RefcountBlock(_used, Order);
        int n = b.Count, ok = 0;
        for (int i = 0; i < n; i++)
        {
            if (b.TryIncrement(i, out _) == RefcountUpdateStatus.Ok) ok++;
            if (b.TryDecrement(i, out _) == RefcountUpdateStatus.Ok) ok++;
        }
        return ok;
    }

    [Benchmark]
    public int FindFreeRun64()
    {
        var b = new ReadOnlyRefcountBlock(_used, Order);
        return b.FindFreeRun(0, 64, out int start) ? start : -1;
    }
}
