using System.Numerics;
using FsCheck.Fluent;

namespace Qcow2.Spans.Tests;

public class GeometryTests
{
    public static TheoryData<int, bool> AllGeometries()
    {
        var d = new TheoryData<int, bool>();
        for (int bits = 9; bits <= 21; bits++)
        {
            d.Add(bits, false);
            if (bits >= 14) d.Add(bits, true);
        }
        return d;
    }

    [Theory]
    [MemberData(nameof(AllGeometries))]
    public void Create_EveryClusterSize_DerivedSizesMatchSpecFormulas(int bits, bool extended)
    {
        var g = ClusterGeometry.Create(bits, extended);
        int clusterSize = (int)Math.Pow(2, bits);
        Assert.Equal(clusterSize, g.ClusterSize);
        Assert.Equal(extended ? 16 : 8, g.L2EntrySize);
        // Spec: l2_entries = cluster_size / sizeof(uint64_t), or / (2 * sizeof(uint64_t)) extended.
        Assert.Equal(clusterSize / (extended ? 16 : 8), g.L2Entries);
        Assert.Equal(g.L2Entries, 1 << g.L2Bits);
        Assert.Equal(extended ? 32 : 1, g.SubclustersPerCluster);
        Assert.Equal(clusterSize / g.SubclustersPerCluster, g.SubclusterSize);
        Assert.Equal((long)clusterSize * g.L2Entries, g.BytesPerL2Table);
        Assert.Equal(clusterSize / 8, g.L1EntriesPerCluster);
        Assert.Equal(g, ClusterGeometry.FromClusterSize(clusterSize, extended));
    }

    [Theory]
    [MemberData(nameof(AllGeometries))]
    public void Indexes_RandomOffsets_RecomposeToTheOffset(int bits, bool extended)
    {
        var g = ClusterGeometry.Create(bits, extended);
        Props.Check(Props.NonNegative(62), offset =>
        {
            long clusterSize = g.ClusterSize;
            // Spec: l2_index = (offset / cluster_size) % l2_entries, l1_index = (offset / cluster_size) / l2_entries.
            long cluster = offset / clusterSize;
            Assert.Equal(cluster, g.ClusterIndex(offset));
            Assert.Equal(cluster / g.L2Entries, g.L1Index(offset));
            Assert.Equal((int)(cluster % g.L2Entries), g.L2Index(offset));
            Assert.Equal((int)(offset % clusterSize), g.OffsetInCluster(offset));
            Assert.Equal((int)(offset % clusterSize / g.SubclusterSize), g.SubclusterIndex(offset));
            Assert.Equal(offset - offset % clusterSize, g.StartOfCluster(offset));
            Assert.Equal(offset % clusterSize == 0, g.IsClusterAligned(offset));
        }, cases: 100);
    }

    [Theory]
    [MemberData(nameof(AllGeometries))]
    public void L1EntriesFor_RandomSizes_MatchesBigIntegerCeiling(int bits, bool extended)
    {
        var g = ClusterGeometry.Create(bits, extended);
        Props.Check(Props.NonNegative(63), size =>
        {
            var expected = (new BigInteger(size) + g.BytesPerL2Table - 1) / g.BytesPerL2Table;
            Assert.Equal(expected, new BigInteger(g.L1EntriesFor(size)));
            var clusters = (new BigInteger(size) + g.ClusterSize - 1) / g.ClusterSize;
            Assert.Equal(clusters, new BigInteger(g.ClustersFor(size)));
        }, cases: 100);
    }

    [Theory]
    [InlineData(8, false)]
    [InlineData(22, false)]
    [InlineData(13, true)]
    [InlineData(-1, false)]
    [InlineData(64, true)]
    public void TryCreate_OutOfRange_ReturnsFalse(int bits, bool extended)
    {
        Assert.False(ClusterGeometry.TryCreate(bits, extended, out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => ClusterGeometry.Create(bits, extended));
    }

    [Fact]
    public void L1EntriesFor_Negative_ThrowsArgumentOutOfRange()
    {
        var g = ClusterGeometry.Create(16);
        Assert.Throws<ArgumentOutOfRangeException>(() => g.L1EntriesFor(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => g.ClustersFor(-1));
    }

    [Fact]
    public void RefcountGeometry_EveryClusterSizeAndOrder_MatchesSpecFormulas()
    {
        for (int bits = 9; bits <= 21; bits++)
        {
            for (int order = 0; order <= 6; order++)
            {
                var r = RefcountGeometry.Create(bits, order);
                int refcountBits = 1 << order;
                // Spec: refcount_block_entries = cluster_size * 8 / refcount_bits.
                long entries = (1L << bits) * 8 / refcountBits;
                Assert.Equal(entries, r.EntriesPerBlock);
                Assert.Equal(refcountBits, r.RefcountBits);
                Assert.Equal(refcountBits == 64 ? ulong.MaxValue : (ulong)(BigInteger.Pow(2, refcountBits) - 1), r.MaxValue);
                Assert.Equal(order, RefcountGeometry.OrderFromBits(refcountBits));
                foreach (long cluster in new long[] { 0, 1, entries - 1, entries, entries * 7 + 3, (1L << 50) + 12345 })
                {
                    Assert.Equal(cluster / entries, r.TableIndex(cluster));
                    Assert.Equal((int)(cluster % entries), r.BlockIndex(cluster));
                }
            }
        }
        Assert.False(RefcountGeometry.TryCreate(16, 7, out _));
        Assert.False(RefcountGeometry.TryCreate(8, 4, out _));
        Assert.Equal(-1, RefcountGeometry.OrderFromBits(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => RefcountGeometry.Create(16, -1));
    }
}

public class GeometryLimitTests
{
    [Fact]
    public void MaxVirtualSizeFor_QemuL1Limit_MatchesTheSpecNotes()
    {
        // Spec, header "size": with the 32 MB L1 limit, 2 MB clusters reach 2 EB (61 bits) and
        // 512-byte clusters 128 GB (37 bits).
        Assert.Equal(1L << 61, ClusterGeometry.Create(21).MaxVirtualSizeFor(Qcow2Limits.MaxL1Entries));
        Assert.Equal(1L << 37, ClusterGeometry.Create(9).MaxVirtualSizeFor(Qcow2Limits.MaxL1Entries));
        Assert.Equal(0, ClusterGeometry.Create(16).MaxVirtualSizeFor(0));
        Assert.Equal(long.MaxValue, ClusterGeometry.Create(21).MaxVirtualSizeFor(long.MaxValue));
    }

    [Fact]
    public void MaxHostSizeFor_QemuRefcountTableLimit_MatchesTheSpecNotes()
    {
        // Spec, "Host cluster management": with the 8 MB refcount table limit, 2 MB clusters and
        // refcount_order 4 reach 2 EB (61 bits); 512-byte clusters with refcount_order 6 reach 32 GB (35 bits).
        var big = RefcountGeometry.Create(21, 4);
        Assert.Equal(1L << 61, big.MaxHostSizeFor(Qcow2Limits.MaxRefcountTableSize / big.ClusterSize));
        var small = RefcountGeometry.Create(9, 6);
        Assert.Equal(1L << 35, small.MaxHostSizeFor(Qcow2Limits.MaxRefcountTableSize / small.ClusterSize));
        Assert.Equal(long.MaxValue, small.MaxHostSizeFor(long.MaxValue));
    }
}
