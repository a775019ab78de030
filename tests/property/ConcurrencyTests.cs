using Qcow2.Property.Tests.Commands;
using Qcow2.Property.Tests.Qcow2;
using Qcow2.Property.Tests.Runner;
using Qcow2.Spans;
using Qcow2.Volume;
using Qcow2.Volume.Storage;
using Xunit.Abstractions;

namespace Qcow2.Property.Tests;

/// <summary>
/// Parallel writers (plain, compressed and write-zeroes) and readers on one image. Every write has its own pattern, so each byte names
/// the write it came from. Finally every sector holds one of the writes that covered it (never the
/// old content once written), every cluster that only whole-cluster writes touched holds a single
/// write, and check is clean. Readers running alongside see only bytes some write (or the initial
/// zeros) put there.
/// </summary>
public class ConcurrencyTests(ITestOutputHelper output)
{
    private readonly PropertySettings _settings = PropertySettings.FromEnvironment();

    /// <summary>A write of a pattern, or of zeroes (write-zeroes, with or without unmap) when <see cref="Zero"/>.</summary>
    private sealed record PlannedWrite(int Id, long Offset, int Length, DataPattern Pattern, bool Zero = false, bool Unmap = false, bool Compressed = false)
    {
        public bool Covers(long offset) => offset >= Offset && offset - Offset < Length;

        public byte ByteAt(long offset) => Zero ? (byte)0 : Pattern.ByteAt(offset);

        public byte[] Create(long offset, int length) => Zero ? new byte[length] : Pattern.Create(offset, length);

        public override string ToString() =>
            Zero ? $"#{Id} write -z{(Unmap ? " -u" : "")} {Hex.Of(Offset)} {Hex.Of(Length)}"
                : $"#{Id} write{(Compressed ? " -c" : "")} {Pattern} {Hex.Of(Offset)} {Hex.Of(Length)}";
    }

    [Fact]
    public void Qcow2Image_ParallelWritersAndReaders_EndInSomeSerialOrderAndCheckClean()
    {
        var rounds = _settings.CasesOr(12);
        var random = new Random(unchecked((int)_settings.Seed));
        output.WriteLine($"seed 0x{_settings.Seed:x}, {rounds} rounds");
        for (var round = 0; round < rounds; round++)
        {
            var clusterBits = new[] { 9, 12, 14, 16 }[round % 4];
            var extendedL2 = clusterBits >= 14 && random.Next(2) == 0;
            var refcountBits = 1 << random.Next(0, 7);
            var roundSeed = random.Next();
            try
            {
                RunRound(clusterBits, extendedL2, refcountBits, new Random(roundSeed));
            }
            catch (Exception e)
            {
                throw new InvalidOperationException(
                    $"round {round} (cluster_size={1 << clusterBits}, extended_l2={extendedL2}, refcount_bits={refcountBits}, round seed {roundSeed}, QCOW2_PROP_SEED=0x{_settings.Seed:x}): {e.Message}", e);
            }
        }
    }

    [Fact]
    public void VerifySerializable_LostUpdateOrMixedWholeClusterWrites_AreCaught()
    {
        // The checker itself: two whole-cluster writes to cluster 0, a sector write into cluster 1.
        const int cluster = 4096;
        var a = new PlannedWrite(1, 0, cluster, DataPattern.Random(1));
        var b = new PlannedWrite(2, 0, 2 * cluster, DataPattern.Random(2));
        var c = new PlannedWrite(3, cluster + 512, 512, DataPattern.Random(3));
        PlannedWrite[] all = [a, b, c];
        byte[] Serial(params PlannedWrite[] order)
        {
            var d = new byte[3 * cluster];
            foreach (var w in order) w.Create(w.Offset, w.Length).CopyTo(d, w.Offset);
            return d;
        }
        VerifySerializable(Serial(a, b, c), all, cluster);
        VerifySerializable(Serial(b, a, c), all, cluster);

        var lost = Serial(a, b);   // c's sector still holds b's data: allowed (b after c)...
        VerifySerializable(lost, all, cluster);
        var old = Serial(a, b, c);
        Array.Clear(old, cluster + 512, 512); // ...but zero there means c (and b) were lost
        Assert.Throws<InvalidOperationException>(() => VerifySerializable(old, all, cluster));

        var mixed = Serial(a, b, c);
        a.Create(0, 512).CopyTo(mixed, 0); // cluster 0: first sector from a, the rest from b
        var e = Assert.Throws<InvalidOperationException>(() => VerifySerializable(mixed, all, cluster));
        Assert.Contains("mixes writes 1, 2", e.Message);

        var stray = Serial(a, b, c);
        stray[3 * cluster - 1] ^= 0xff; // never written, must be zero
        Assert.Throws<InvalidOperationException>(() => VerifySerializable(stray, all, cluster));
    }

    private static void RunRound(int clusterBits, bool extendedL2, int refcountBits, Random random)
    {
        var cluster = 1 << clusterBits;
        const int blocks = 24;
        var size = (long)blocks * cluster;
        // Alternate between memory and a real file.
        using var dir = new global::Qcow2.Tests.Shared.TempDir();
        IStorage storage = random.Next(2) == 0 ? new MemoryStorage("concurrency") : FileStorage.Create(dir.File("concurrency.qcow2"));
        Qcow2Creator.Create(storage, new Qcow2CreateOptions { Size = size, ClusterSize = cluster, ExtendedL2 = extendedL2, RefcountBits = refcountBits });

        // Four writers of 20 writes each: whole clusters (1-3) or a few sectors inside one cluster.
        const int writers = 4;
        var plans = new List<PlannedWrite>[writers];
        var id = 0;
        for (var w = 0; w < writers; w++)
        {
            plans[w] = new List<PlannedWrite>();
            for (var i = 0; i < 20; i++)
            {
                id++;
                var pattern = DataPattern.Random((byte)id);
                var zero = random.Next(8) == 0;
                var unmap = zero && random.Next(2) == 0;
                if (random.Next(5) < 3 || cluster == 512)
                {
                    var first = random.Next(blocks);
                    var count = Math.Min(blocks - first, random.Next(1, 4));
                    var compressed = !zero && random.Next(6) == 0;
                    plans[w].Add(new PlannedWrite(id, (long)first * cluster, count * cluster, pattern, zero, unmap, compressed));
                }
                else
                {
                    var sectors = cluster / 512;
                    var start = random.Next(sectors);
                    var count = random.Next(1, sectors - start + 1);
                    plans[w].Add(new PlannedWrite(id, (long)random.Next(blocks) * cluster + start * 512L, count * 512, pattern, zero, unmap));
                }
            }
        }
        var all = plans.SelectMany(p => p).ToArray();

        using (var image = Qcow2Image.Open(storage))
        {
            using var done = new CancellationTokenSource();
            var readerErrors = new List<string>();
            var readers = Enumerable.Range(0, 2).Select(r => Task.Run(() =>
            {
                var rnd = new Random(r);
                var buffer = new byte[8 * 512];
                while (!done.IsCancellationRequested)
                {
                    var offset = (long)rnd.Next(blocks) * cluster + rnd.Next(cluster / 512) * 512L;
                    var length = (int)Math.Min(size - offset, rnd.Next(1, 8) * 512L);
                    image.Read(offset, buffer.AsSpan(0, length));
                    for (var i = 0; i < length; i++)
                    {
                        var o = offset + i;
                        var b = buffer[i];
                        if (b != 0 && !all.Any(w => w.Covers(o) && w.ByteAt(o) == b))
                        {
                            lock (readerErrors) readerErrors.Add($"a reader saw 0x{b:x2} at 0x{o:x}, which no write put there");
                            return;
                        }
                    }
                }
            })).ToArray();
            var writerTasks = plans.Select((plan, w) => Task.Run(async () =>
            {
                foreach (var p in plan)
                {
                    var data = p.Create(p.Offset, p.Length);
                    // Mix the sync and async paths.
                    if (p.Zero) image.WriteZeroes(p.Offset, p.Length, p.Unmap);
                    else if (p.Compressed) image.WriteCompressed(p.Offset, data);
                    else if (p.Id % 2 == 0) image.Write(p.Offset, data);
                    else await image.WriteAsync(p.Offset, data);
                    if (p.Id % 7 == 0) image.Flush();
                }
            })).ToArray();
            Task.WaitAll(writerTasks);
            done.Cancel();
            Task.WaitAll(readers);
            Assert.Empty(readerErrors);
            image.Flush();
            VerifySerializable(image, all, size, cluster);
        }
        GeometryMapping.CheckClean(storage, "after the parallel writes");
        using (var reopened = Qcow2Image.Open(storage, new Qcow2OpenOptions { ReadOnly = true }))
            VerifySerializable(reopened, all, size, cluster);
        storage.Dispose();
    }

    private static void VerifySerializable(Qcow2Image image, PlannedWrite[] all, long size, int cluster)
    {
        var data = new byte[size];
        image.Read(0, data);
        VerifySerializable(data, all, cluster);
    }

    private static void VerifySerializable(byte[] data, PlannedWrite[] all, int cluster)
    {
        var size = data.LongLength;
        for (long block = 0; block < size / cluster; block++)
        {
            var blockStart = block * cluster;
            var touching = all.Where(w => w.Offset < blockStart + cluster && w.Offset + w.Length > blockStart).ToArray();
            var winners = new HashSet<int>();
            for (var s = blockStart; s < blockStart + cluster; s += 512)
            {
                var sector = data.AsMemory((int)s, 512);
                var covering = touching.Where(w => w.Covers(s)).ToArray();
                if (covering.Length == 0)
                {
                    if (sector.Span.ContainsAnyExcept((byte)0)) throw new InvalidOperationException($"sector 0x{s:x} was never written but is not zero");
                    continue;
                }
                var match = covering.FirstOrDefault(w => sector.Span.SequenceEqual(w.Create(s, 512)));
                if (match is null)
                {
                    throw new InvalidOperationException(
                        $"sector 0x{s:x} holds none of the writes that covered it ({string.Join(", ", covering.Select(w => w.ToString()))}); first bytes {Convert.ToHexString(sector.Span[..16])}");
                }
                winners.Add(match.Id);
            }
            var wholeOnly = touching.All(w => w.Offset <= blockStart && w.Offset + w.Length >= blockStart + cluster);
            if (wholeOnly && winners.Count > 1)
                throw new InvalidOperationException($"cluster 0x{blockStart:x}, written only whole, mixes writes {string.Join(", ", winners.Order())}");
        }
    }
}
