using System.Numerics;
using FsCheck.Fluent;

namespace Qcow2.Spans.Tests;

public class RefcountBlockTests
{
    public static TheoryData<int> Orders() => new() { 0, 1, 2, 3, 4, 5, 6 };

    private static ulong Max(int order) => order == 6 ? ulong.MaxValue : (ulong)(BigInteger.Pow(2, 1 << order) - 1);

    [Fact]
    public void Set_SubByteWidths_PackFromTheLeastSignificantBit()
    {
        // Spec: "bit 0 means the least significant bit" for sub-byte widths.
        var b = new byte[2];
        var r1 = new RefcountBlock(b, 0);
        Assert.True(r1.TrySet(0, 1));
        Assert.True(r1.TrySet(9, 1));
        Assert.Equal(new byte[] { 0x01, 0x02 }, b);
        b.AsSpan().Clear();
        var r2 = new RefcountBlock(b, 1);
        Assert.True(r2.TrySet(1, 3));
        Assert.True(r2.TrySet(4, 2));
        Assert.Equal(new byte[] { 0x0C, 0x02 }, b);
        b.AsSpan().Clear();
        var r4 = new RefcountBlock(b, 2);
        Assert.True(r4.TrySet(1, 0xA));
        Assert.True(r4.TrySet(2, 0x5));
        Assert.Equal(new byte[] { 0xA0, 0x05 }, b);
    }

    [Fact]
    public void Set_WideWidths_AreBigEndian()
    {
        var b = new byte[16];
        new RefcountBlock(b, 4).TrySet(1, 0x0102);
        Assert.Equal(new byte[] { 0, 0, 1, 2 }, b[..4]);
        b.AsSpan().Clear();
        new RefcountBlock(b, 5).TrySet(1, 0x01020304);
        Assert.Equal(new byte[] { 0, 0, 0, 0, 1, 2, 3, 4 }, b[..8]);
        b.AsSpan().Clear();
        new RefcountBlock(b, 6).TrySet(1, 0x0102030405060708);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, b[8..]);
    }

    private abstract record Op;
    private sealed record SetOp(int Index, ulong Value) : Op;
    private sealed record IncOp(int Index) : Op;
    private sealed record DecOp(int Index) : Op;
    private sealed record AddOp(int Index, long Delta) : Op;

    [Theory]
    [MemberData(nameof(Orders))]
    public void Operations_RandomScripts_MatchAnArrayModel(int order)
    {
        const int blockBytes = 512;
        int count = blockBytes * 8 >> order;
        ulong max = Max(order);
        var value = Gen.Frequency(
            (3, Gen.Choose(0, 3).Select(i => (ulong)i)),
            (1, Gen.Choose(0, 3).Select(i => max - (ulong)i)),
            (1, Props.UInt64));
        var op = Gen.OneOf(
            from i in Gen.Choose(0, count - 1) from v in value select (Op)new SetOp(i, v),
            Gen.Choose(0, count - 1).Select(i => (Op)new IncOp(i)),
            Gen.Choose(0, count - 1).Select(i => (Op)new DecOp(i)),
            from i in Gen.Choose(0, count - 1) from d in Gen.Choose(-3, 3) select (Op)new AddOp(i, d));
        var script = from seed in Gen.Choose(0, 1000) from ops in Gen.ListOf(op) select (seed, ops);
        Props.Check(script, s =>
        {
            var data = new byte[blockBytes];
            var model = new ulong[count];
            var rnd = new Random(s.seed);
            // Start from a random valid block so that neighbours are non-zero too.
            var block = new RefcountBlock(data, order);
            for (int i = 0; i < count; i++)
            {
                model[i] = rnd.Next(3) == 0 ? 0 : (ulong)rnd.NextInt64() & max;
                Assert.True(block.TrySet(i, model[i]));
            }
            foreach (var o in s.ops)
            {
                switch (o)
                {
                    case SetOp set:
                        bool fits = set.Value <= max;
                        Assert.Equal(fits, block.TrySet(set.Index, set.Value));
                        if (fits) model[set.Index] = set.Value;
                        break;
                    case IncOp inc:
                    {
                        var st = block.TryIncrement(inc.Index, out ulong nv);
                        if (model[inc.Index] == max) Assert.Equal(RefcountUpdateStatus.Overflow, st);
                        else
                        {
                            Assert.Equal(RefcountUpdateStatus.Ok, st);
                            model[inc.Index]++;
                            Assert.Equal(model[inc.Index], nv);
                        }
                        break;
                    }
                    case DecOp dec:
                    {
                        var st = block.TryDecrement(dec.Index, out ulong nv);
                        if (model[dec.Index] == 0) Assert.Equal(RefcountUpdateStatus.Underflow, st);
                        else
                        {
                            Assert.Equal(RefcountUpdateStatus.Ok, st);
                            model[dec.Index]--;
                            Assert.Equal(model[dec.Index], nv);
                        }
                        break;
                    }
                    case AddOp add:
                    {
                        var st = block.TryAdd(add.Index, add.Delta, out _);
                        BigInteger result = new BigInteger(model[add.Index]) + add.Delta;
                        if (result < 0) Assert.Equal(RefcountUpdateStatus.Underflow, st);
                        else if (result > max) Assert.Equal(RefcountUpdateStatus.Overflow, st);
                        else
                        {
                            Assert.Equal(RefcountUpdateStatus.Ok, st);
                            model[add.Index] = (ulong)result;
                        }
                        break;
                    }
                }
            }
            for (int i = 0; i < count; i++) Assert.Equal(model[i], block.Get(i));
            var ro = block.AsReadOnly();
            for (int i = 0; i < count; i += 7) Assert.Equal(model[i], ro.Get(i));
        }, cases: 60);
    }

    [Theory]
    [MemberData(nameof(Orders))]
    public void Scans_RandomSparseBlocks_MatchNaiveScans(int order)
    {
        // Blocks with long free runs and a few used entries, of several sizes (not only powers of two).
        var gen = from bytes in Gen.Elements(8, 64, 520, 4096)
                  from seed in Gen.Choose(0, int.MaxValue)
                  from density in Gen.Choose(0, 40)
                  from start in Gen.Choose(0, 1 << 20)
                  from minLength in Gen.Choose(1, 300)
                  from dense in Gen.Elements(false, true)
                  select (bytes, seed, density, start, minLength, dense);
        Props.Check(gen, t =>
        {
            var data = new byte[t.bytes];
            var block = new RefcountBlock(data, order);
            int count = block.Count;
            var rnd = new Random(t.seed);
            var model = new ulong[count];
            ulong max = Max(order);
            if (t.dense)
            {
                // Mostly used, with a few short free runs: the allocator's usual situation.
                for (int i = 0; i < count; i++)
                {
                    model[i] = 1 + (ulong)rnd.NextInt64() % max;
                    block.TrySet(i, model[i]);
                }
                for (int i = 0; i < count; i++)
                {
                    if (rnd.Next(1000) < t.density / 4)
                    {
                        int len = rnd.Next(1, 80);
                        for (int j = i; j < Math.Min(count, i + len); j++)
                        {
                            model[j] = 0;
                            block.TrySet(j, 0);
                        }
                        i += len;
                    }
                }
            }
            else
            {
                for (int i = 0; i < count; i++)
                {
                    if (rnd.Next(1000) < t.density)
                    {
                        // A used run of a few entries with random non-zero values.
                        int len = rnd.Next(1, 5);
                        for (int j = i; j < Math.Min(count, i + len); j++)
                        {
                            model[j] = 1 + (ulong)rnd.NextInt64() % max;
                            block.TrySet(j, model[j]);
                        }
                        i += len;
                    }
                }
            }
            int start = t.start % (count + 1);
            var ro = block.AsReadOnly();

            int NaiveIndexOf(bool zero)
            {
                for (int i = start; i < count; i++) if ((model[i] == 0) == zero) return i;
                return -1;
            }
            Assert.Equal(NaiveIndexOf(false), block.IndexOfNonZero(start));
            Assert.Equal(NaiveIndexOf(true), block.IndexOfZero(start));
            Assert.Equal(NaiveIndexOf(true), ro.IndexOfZero(start));

            int free = 0;
            while (start + free < count && model[start + free] == 0) free++;
            Assert.Equal(free, block.CountFree(start));
            Assert.Equal(Math.Min(free, 3), block.CountFree(start, 3));

            int naiveRun = -1;
            for (int i = start, run = 0; i < count; i++)
            {
                run = model[i] == 0 ? run + 1 : 0;
                if (run == t.minLength)
                {
                    naiveRun = i - run + 1;
                    break;
                }
            }
            Assert.Equal(naiveRun >= 0, block.FindFreeRun(start, t.minLength, out int runStart));
            Assert.Equal(naiveRun, runStart);

            int trailing = 0;
            while (trailing < count && model[count - 1 - trailing] == 0) trailing++;
            Assert.Equal(trailing, block.TrailingFreeCount());
            Assert.Equal(model.Count(v => v != 0), block.CountNonZero());
        }, cases: 250);
    }

    [Theory]
    [MemberData(nameof(Orders))]
    public void Get_IndexOutOfRange_ThrowsArgumentOutOfRange(int order)
    {
        var data = new byte[64];
        var block = new RefcountBlock(data, order);
        int count = block.Count;
        Assert.Equal(64 * 8 >> order, count);
        Assert.Throws<ArgumentOutOfRangeException>(() => new RefcountBlock(data, order).Get(count));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RefcountBlock(data, order).TrySet(-1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RefcountBlock(data, order).IndexOfZero(count + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RefcountBlock(data, order).FindFreeRun(0, 0, out _));
        Assert.Equal(-1, block.IndexOfZero(block.Count));
    }

    [Fact]
    public void Constructor_OrderOutOfRange_ThrowsArgumentOutOfRange()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new RefcountBlock(new byte[8], 7));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReadOnlyRefcountBlock(new byte[8], -1));
    }
}
