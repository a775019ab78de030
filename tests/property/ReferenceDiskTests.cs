using Qcow2.Property.Tests.Model;

namespace Qcow2.Property.Tests;

public class ReferenceDiskTests
{
    [Fact]
    public void Verify_UnwrittenDisk_ReadsZero()
    {
        var disk = new ReferenceDisk(8192);
        Assert.Null(disk.Verify(0, new byte[8192]));
        var wrong = new byte[8192];
        wrong[5000] = 1;
        Assert.Contains("0x1388", disk.Verify(0, wrong));
    }

    [Fact]
    public void Write_AcrossChunks_ReadsBackAndLeavesNeighbours()
    {
        var disk = new ReferenceDisk(3 * ReferenceDisk.ChunkSize);
        var data = Enumerable.Range(0, 5000).Select(i => (byte)(i % 251 + 1)).ToArray();
        disk.Write(4000, data);
        var expected = new byte[3 * ReferenceDisk.ChunkSize];
        data.CopyTo(expected, 4000);
        var actual = new byte[expected.Length];
        disk.ReadExpected(0, actual);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void ReadPossible_AfterDiscard_MarksOnlyDiscardedBytesWithPriorAndBackingValues()
    {
        var disk = new ReferenceDisk(8192, [8192]);
        disk.WriteLayer(1, 0, Filled(8192, 0xbb));
        disk.Write(0, Filled(8192, 0xcc));
        disk.Discard(4000, 200);
        var values = new byte[8192];
        var below = new byte[8192];
        var uncertain = new bool[8192];
        disk.ReadPossible(0, values, below, uncertain);
        Assert.All(values, b => Assert.Equal(0xcc, b));
        Assert.Equal(Enumerable.Range(4000, 200), Enumerable.Range(0, 8192).Where(i => uncertain[i]));
        Assert.All(below[4000..4200], b => Assert.Equal(0xbb, b));
        // Nothing was settled: the discarded bytes may still read as zero.
        var observed = Filled(8192, 0xcc);
        Array.Clear(observed, 4000, 200);
        Assert.Null(disk.Verify(0, observed));
    }

    [Fact]
    public void Read_BackingChain_TopmostLayerWinsAndShortLayerReadsZero()
    {
        // top (8 KiB) -> mid (4 KiB) -> base (8 KiB): past mid's end the chain reads zero, not base.
        var disk = new ReferenceDisk(8192, [4096, 8192]);
        disk.WriteLayer(2, 0, Filled(8192, 0xbb));
        disk.WriteLayer(1, 1024, Filled(1024, 0xaa));
        disk.Write(1536, Filled(16, 0xcc));
        var actual = new byte[8192];
        disk.ReadExpected(0, actual);
        Assert.All(actual[..1024], b => Assert.Equal(0xbb, b));
        Assert.All(actual[1024..1536], b => Assert.Equal(0xaa, b));
        Assert.All(actual[1536..1552], b => Assert.Equal(0xcc, b));
        Assert.All(actual[1552..2048], b => Assert.Equal(0xaa, b));
        Assert.All(actual[2048..4096], b => Assert.Equal(0xbb, b));
        Assert.All(actual[4096..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void WriteZeroes_OverBacking_ReadsZero()
    {
        var disk = new ReferenceDisk(4096, [4096]);
        disk.WriteLayer(1, 0, Filled(4096, 0x11));
        disk.WriteZeroes(100, 200);
        var actual = new byte[4096];
        disk.ReadExpected(0, actual);
        Assert.All(actual[100..300], b => Assert.Equal(0, b));
        Assert.Equal(0x11, actual[99]);
        Assert.Equal(0x11, actual[300]);
    }

    [Fact]
    public void Discard_Then_Verify_AcceptsPriorZeroOrBackingAndSettles()
    {
        var disk = new ReferenceDisk(4096, [4096]);
        disk.WriteLayer(1, 0, Filled(4096, 0x22));
        disk.Write(0, Filled(4096, 0x33));
        disk.Discard(0, 3072);
        Assert.True(disk.HasUncertainBytes);
        Assert.Throws<InvalidOperationException>(() => disk.ReadExpected(0, new byte[1]));

        var observed = new byte[4096];
        observed.AsSpan(0, 1024).Fill(0x33);   // kept
        observed.AsSpan(1024, 1024).Fill(0);   // zeroed
        observed.AsSpan(2048, 1024).Fill(0x22); // backing shows through
        observed.AsSpan(3072).Fill(0x33);       // not discarded
        Assert.Null(disk.Verify(0, observed));
        Assert.False(disk.HasUncertainBytes);

        // Settled: the same bytes must now read exactly so.
        var changed = (byte[])observed.Clone();
        changed[1500] = 0x33;
        Assert.NotNull(disk.Verify(0, changed));
        Assert.Null(disk.Verify(0, observed));
    }

    [Fact]
    public void Discard_Verify_RejectsAValueNoneOfTheAlternativesHas()
    {
        var disk = new ReferenceDisk(1024);
        disk.Write(0, Filled(1024, 0x44));
        disk.Discard(0, 1024);
        var observed = Filled(1024, 0x44);
        observed[700] = 0x45;
        Assert.Contains("0x2bc", disk.Verify(0, observed));
    }

    [Fact]
    public void Clone_IsIndependentOfTheOriginal()
    {
        var disk = new ReferenceDisk(1024);
        disk.Write(0, Filled(10, 1));
        var copy = disk.Clone();
        disk.Write(0, Filled(10, 2));
        Assert.Null(copy.Verify(0, Filled(10, 1)));
        Assert.Null(disk.Verify(0, Filled(10, 2)));
    }

    [Fact]
    public void Write_OutsideTheDisk_Throws()
    {
        var disk = new ReferenceDisk(1024);
        Assert.Throws<ArgumentOutOfRangeException>(() => disk.Write(1000, new byte[25]));
        Assert.Throws<ArgumentOutOfRangeException>(() => disk.WriteZeroes(-1, 2));
    }

    [Fact]
    public void Snapshot_TakeWriteRevert_RestoresTheSnapshotContentAndKeepsIt()
    {
        var disk = new ReferenceDisk(4096, [4096]);
        disk.WriteLayer(1, 0, Filled(4096, 0x22));
        disk.Write(0, Filled(1024, 0x33));
        disk.TakeSnapshot("s1");
        disk.Write(0, Filled(2048, 0x44));
        Assert.Null(disk.Snapshot("s1").Verify(0, [.. Filled(1024, 0x33), .. Filled(3072, 0x22)]));
        Assert.Null(disk.Verify(0, [.. Filled(2048, 0x44), .. Filled(2048, 0x22)]));

        disk.RevertToSnapshot("s1");
        Assert.Null(disk.Verify(0, [.. Filled(1024, 0x33), .. Filled(3072, 0x22)]));
        disk.Write(0, Filled(10, 0x55));
        Assert.Null(disk.Snapshot("s1").Verify(0, Filled(10, 0x33)));
        Assert.Equal(["s1"], disk.SnapshotNames);
        disk.DeleteSnapshot("s1");
        Assert.Empty(disk.SnapshotNames);
        Assert.Throws<ArgumentException>(() => disk.DeleteSnapshot("s1"));
    }

    [Fact]
    public void Clone_CopiesSnapshotsIndependently()
    {
        var disk = new ReferenceDisk(1024);
        disk.Write(0, Filled(10, 1));
        disk.TakeSnapshot("a");
        var copy = disk.Clone();
        disk.RevertToSnapshot("a");
        disk.DeleteSnapshot("a");
        Assert.Equal(["a"], copy.SnapshotNames);
        Assert.Null(copy.Snapshot("a").Verify(0, Filled(10, 1)));
    }

    internal static byte[] Filled(int length, byte value)
    {
        var b = new byte[length];
        b.AsSpan().Fill(value);
        return b;
    }
}
