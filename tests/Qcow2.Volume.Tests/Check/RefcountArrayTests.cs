using Qcow2.Volume.Check;

namespace Qcow2.Volume.Tests.Check;

public sealed class RefcountArrayTests
{
    private const int Seed = 20261121;

    /// <summary>Independent decoding of one refcount of a block (spec "Refcount blocks"), bit by bit.</summary>
    private static ulong Decode(ReadOnlySpan<byte> block, int order, long index)
    {
        int bits = 1 << order;
        long firstBit = index * bits;
        if (bits >= 8)
        {
            ulong v = 0;
            for (int b = 0; b < bits / 8; b++) v = (v << 8) | block[(int)(firstBit / 8) + b];
            return v;
        }
        // Sub-byte widths: entry 0 in the least significant bits of byte 0.
        return (ulong)(block[(int)(firstBit / 8)] >> (int)(firstBit % 8)) & ((1UL << bits) - 1);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    public void Set_EveryWidth_StoresOnDiskFormat(int order)
    {
        const int clusterBits = 9;
        var array = new RefcountArray(order, clusterBits, 5000, long.MaxValue);
        var model = new Dictionary<long, ulong>();
        var rng = new Random(Seed + order);
        for (int n = 0; n < 3000; n++)
        {
            long index = rng.NextInt64(0, 5000);
            ulong value = (ulong)rng.NextInt64() & array.MaxValue;
            array.Set(index, value);
            model[index] = value;
        }
        int perBlockBits = clusterBits + 3 - order;
        foreach (var (index, value) in model)
        {
            Assert.Equal(value, array.Get(index));
            var block = array.Block(index >> perBlockBits);
            long inBlock = index & ((1L << perBlockBits) - 1);
            Assert.Equal(value, Decode(block, order, inBlock));
            Assert.Equal(value, RefcountArray.GetFrom(block, order, (int)inBlock));
        }
    }

    [Theory]
    [InlineData(0, 1UL)]
    [InlineData(4, 65535UL)]
    [InlineData(6, ulong.MaxValue)]
    public void MaxValue_Width_IsAllOnes(int order, ulong expected) =>
        Assert.Equal(expected, new RefcountArray(order, 16, 1, long.MaxValue).MaxValue);

    [Fact]
    public void TryEnsure_BeyondLimit_ReturnsFalseAndKeepsContents()
    {
        var array = new RefcountArray(4, 9, 100, maxBytes: 4096);
        array.Set(99, 7);
        Assert.False(array.TryEnsure(1_000_000));
        Assert.True(array.TryEnsure(2048));
        Assert.Equal(7UL, array.Get(99));
        Assert.True(array.Capacity >= 2048);
    }
}
