using BenchmarkDotNet.Attributes;
using Qcow2.Volume;
using Qcow2.Volume.Storage;

namespace Qcow2.Benchmarks.Volume;

/// <summary>
/// The read hot path on a fully allocated image: random 4 KiB reads, sequential 64 KiB and 1 MiB
/// reads (adjacent clusters coalesced into one positional read), async reads, compressed reads.
/// MemoryDiagnoser must show 0 B allocated per operation after warm-up.
/// </summary>
[MemoryDiagnoser]
public class ReadBenchmarks
{
    private IStorage _storage = null!;
    private string? _path;
    private Qcow2Image _image = null!;
    private byte[] _buffer = null!;
    private long[] _offsets = null!;
    private int _next;

    [Params(false, true)]
    public bool InMemory { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        (_storage, _path) = ImageFixture.CreateAllocated(InMemory);
        _image = Qcow2Image.Open(_storage, new Qcow2OpenOptions { ReadOnly = true });
        _buffer = new byte[1 << 20];
        _offsets = ImageFixture.RandomOffsets(4096, 4096, ImageFixture.DiskSize - 4096);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _image.Dispose();
        _storage.Dispose();
        if (_path is not null) File.Delete(_path);
    }

    [Benchmark]
    public void RandomRead4K()
    {
        _image.Read(_offsets[_next++ & 4095], _buffer.AsSpan(0, 4096));
    }

    [Benchmark]
    public void SequentialRead64K()
    {
        long offset = (_next++ & 1023) * 65536L;
        _image.Read(offset, _buffer.AsSpan(0, 65536));
    }

    [Benchmark]
    public void SequentialRead1M()
    {
        long offset = (_next++ & 63) * (1L << 20);
        _image.Read(offset, _buffer);
    }

    [Benchmark]
    public ValueTask RandomRead4KAsync()
    {
        return _image.ReadAsync(_offsets[_next++ & 4095], _buffer.AsMemory(0, 4096));
    }
}

/// <summary>Reads of compressed clusters (zlib): decompression into pooled buffers.</summary>
[MemoryDiagnoser]
public class CompressedReadBenchmarks
{
    private IStorage _storage = null!;
    private Qcow2Image _image = null!;
    private byte[] _buffer = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        (_storage, _) = ImageFixture.CreateAllocated(inMemory: true, compressed: true);
        _image = Qcow2Image.Open(_storage, new Qcow2OpenOptions { ReadOnly = true });
        _buffer = new byte[65536];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _image.Dispose();
        _storage.Dispose();
    }

    [Benchmark]
    public void ReadCompressedCluster()
    {
        _image.Read((_next++ & 1023) * 65536L, _buffer);
    }
}

/// <summary>Concurrent readers: the same total work split over N threads.</summary>
public class ConcurrentReadBenchmarks
{
    private const int ReadsPerInvocation = 8192;
    private IStorage _storage = null!;
    private Qcow2Image _image = null!;
    private long[] _offsets = null!;

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        (_storage, _) = ImageFixture.CreateAllocated(inMemory: true);
        _image = Qcow2Image.Open(_storage, new Qcow2OpenOptions { ReadOnly = true });
        _offsets = ImageFixture.RandomOffsets(ReadsPerInvocation, 4096, ImageFixture.DiskSize - 4096);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _image.Dispose();
        _storage.Dispose();
    }

    [Benchmark(OperationsPerInvoke = ReadsPerInvocation)]
    public void RandomRead4K()
    {
        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
        {
            Span<byte> buffer = stackalloc byte[4096];
            for (int i = t; i < ReadsPerInvocation; i += Threads)
            {
                _image.Read(_offsets[i], buffer);
            }
        });
    }
}
