using Qcow2.Tests.Shared;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Infra;

/// <summary>The <see cref="IStorage"/> contract, checked on every implementation.</summary>
public sealed class StorageContractTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string> Kinds => new() { "file", "memory" };

    private IStorage Make(string kind) => kind switch
    {
        "file" => FileStorage.Create(_dir.File("s.bin")),
        "memory" => new MemoryStorage(),
        _ => throw new ArgumentException(kind),
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Write_ThenRead_ReturnsTheBytes(string kind)
    {
        using var s = Make(kind);
        var data = Pattern(100_000, 7);
        s.Write(12_345, data);
        var back = new byte[data.Length];
        Assert.Equal(data.Length, s.Read(12_345, back));
        Assert.Equal(data, back);
        Assert.Equal(12_345 + data.Length, s.Length);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Read_GapBeforeWrittenRange_ReadsZeros(string kind)
    {
        using var s = Make(kind);
        s.Write(200_000, new byte[] { 1, 2, 3 });
        var gap = new byte[200_000];
        gap.AsSpan().Fill(0xFF);
        Assert.Equal(gap.Length, s.Read(0, gap));
        Assert.All(gap, b => Assert.Equal(0, b));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Read_AcrossTheEnd_ReturnsOnlyTheBytesBeforeIt(string kind)
    {
        using var s = Make(kind);
        s.Write(0, Pattern(1000, 1));
        var buf = new byte[600];
        Assert.Equal(400, s.Read(600, buf));
        Assert.Equal(0, s.Read(1000, buf));
        Assert.Equal(0, s.Read(5000, buf));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void SetLength_ShrinkThenExtend_ReadsZerosInTheRegrownPart(string kind)
    {
        using var s = Make(kind);
        s.Write(0, Pattern(300_000, 3));
        s.SetLength(70_000);
        Assert.Equal(70_000, s.Length);
        s.SetLength(300_000);
        var tail = new byte[230_000];
        Assert.Equal(tail.Length, s.Read(70_000, tail));
        Assert.All(tail, b => Assert.Equal(0, b));
        var head = new byte[70_000];
        s.Read(0, head);
        Assert.Equal(Pattern(300_000, 3).AsSpan(0, 70_000).ToArray(), head);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task WriteAsync_ThenReadAsync_ReturnsTheBytes(string kind)
    {
        await using var s = Make(kind);
        var data = Pattern(70_000, 9);
        await s.WriteAsync(65_000, data);
        await s.FlushAsync();
        var back = new byte[data.Length];
        Assert.Equal(data.Length, await s.ReadAsync(65_000, back));
        Assert.Equal(data, back);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Write_ConcurrentFromManyThreads_EveryRangeAndTheLengthAreRight(string kind)
    {
        using var s = Make(kind);
        const int Blocks = 64, BlockSize = 10_000;
        // Interleaved order so the file grows from several threads at once.
        Parallel.For(0, Blocks, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            int block = (i * 37) % Blocks;
            s.Write((long)block * BlockSize, Pattern(BlockSize, block));
        });
        Assert.Equal((long)Blocks * BlockSize, s.Length);
        Parallel.For(0, Blocks, i =>
        {
            var back = new byte[BlockSize];
            Assert.Equal(BlockSize, s.Read((long)i * BlockSize, back));
            Assert.Equal(Pattern(BlockSize, i), back);
        });
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Write_NegativeOffset_ThrowsArgumentOutOfRange(string kind)
    {
        using var s = Make(kind);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Write(-1, new byte[1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Read(-1, new byte[1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.SetLength(-1));
    }

    internal static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }
}
