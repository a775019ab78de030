using BenchmarkDotNet.Attributes;
using Qcow2.Volume;
using Qcow2.Volume.Storage;

namespace Qcow2.Benchmarks.Volume;

/// <summary>
/// Writes to clusters that are already allocated (COPIED set): the in-place path, which must not
/// allocate. And cluster allocation: writes into an empty image (the allocator, L2 and refcount
/// updates), measured per 64 KiB cluster.
/// </summary>
[MemoryDiagnoser]
public class WriteBenchmarks
{
    private IStorage _storage = null!;
    private Qcow2Image _image = null!;
    private byte[] _buffer = null!;
    private long[] _offsets = null!;
    private int _next;

    [GlobalSetup]
    public void Setup()
    {
        (_storage, _) = ImageFixture.CreateAllocated(inMemory: true);
        _image = Qcow2Image.Open(_storage);
        _buffer = new byte[65536];
        new Random(1).NextBytes(_buffer);
        _offsets = ImageFixture.RandomOffsets(4096, 4096, ImageFixture.DiskSize - 4096);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _image.Dispose();
        _storage.Dispose();
    }

    [Benchmark]
    public void OverwriteAllocated4K()
    {
        _image.Write(_offsets[_next++ & 4095], _buffer.AsSpan(0, 4096));
    }

    [Benchmark]
    public ValueTask OverwriteAllocated4KAsync()
    {
        return _image.WriteAsync(_offsets[_next++ & 4095], _buffer.AsMemory(0, 4096));
    }
}

/// <summary>Allocating writes: fill an empty 64 MiB image cluster by cluster.</summary>
[MemoryDiagnoser]
public class AllocatingWriteBenchmarks
{
    private const int Clusters = 1024;
    private byte[] _buffer = null!;
    private MemoryStorage _storage = null!;
    private Qcow2Image _image = null!;

    [GlobalSetup]
    public void Setup()
    {
        _buffer = new byte[65536];
        new Random(2).NextBytes(_buffer);
    }

    [IterationSetup]
    public void IterationSetup()
    {
        _storage = new MemoryStorage("bench");
        Qcow2Creator.Create(_storage, new Qcow2CreateOptions { Size = ImageFixture.DiskSize });
        _image = Qcow2Image.Open(_storage);
    }

    [IterationCleanup]
    public void IterationCleanup()
    {
        _image.Dispose();
        _storage.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Clusters)]
    public void AllocateAndWrite64K()
    {
        for (int i = 0; i < Clusters; i++)
        {
            _image.Write(i * 65536L, _buffer);
        }
    }
}
