using Qcow2.Tests.Shared;
using static Qcow2.Volume.Tests.Image.ImageTestKit;

namespace Qcow2.Volume.Tests.Image;

/// <summary>Many threads reading and writing one image at once.</summary>
public sealed class Qcow2ImageConcurrencyTests
{
    [Theory]
    [InlineData("cluster_size=65536")]
    [InlineData("extended_l2=on")]
    [InlineData("cluster_size=4096,compat=0.10")]
    public async Task Write_ThreadsSharingUnallocatedClusters_EachClusterAllocatedOnce(string options)
    {
        using var dir = new TempDir();
        string image = dir.File("c.qcow2");
        const int threads = 4;
        const int clusters = 64;
        QemuTools.Img("create", "-f", "qcow2", "-o", options, image, "8M");
        int cs;
        using (var probe = Qcow2Image.Open(image, TrustedReadOnly)) cs = probe.Info.ClusterSize;
        int piece = cs / threads;
        var model = new byte[8 << 20];
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            using var start = new Barrier(threads);
            var workers = Enumerable.Range(0, threads).Select(t => Task.Factory.StartNew(() =>
            {
                var rng = new Random(Seed + t);
                var order = Enumerable.Range(0, clusters).OrderBy(_ => rng.Next()).ToArray();
                var data = new byte[piece];
                start.SignalAndWait();
                foreach (int k in order)
                {
                    data.AsSpan().Fill((byte)(t * clusters + k + 1));
                    long offset = (long)k * cs + t * piece;
                    if (((k + t) & 1) == 0) img.Write(offset, data);
                    else img.WriteAsync(offset, data).AsTask().Wait();
                }
            }, TaskCreationOptions.LongRunning)).ToArray();
            await Task.WhenAll(workers);
            for (int t = 0; t < threads; t++)
                for (int k = 0; k < clusters; k++)
                    model.AsSpan(k * cs + t * piece, piece).Fill((byte)(t * clusters + k + 1));
            AssertSameBytes(model, ReadAll(img), "after concurrent writes");
        }
        // A cluster allocated twice would leak one of the two.
        AssertQemuCheckClean(image);
        AssertQemuCompareEqual(dir, image, model);
    }

    [Fact]
    public async Task Read_RacingWritesZeroesDiscardsAndCompressedWrites_SeesOldOrNewBlocksNeverGarbage()
    {
        using var dir = new TempDir();
        string image = dir.File("r.qcow2");
        QemuTools.Img("create", "-f", "qcow2", "-o", "cluster_size=16384", image, "4M");
        const int block = 4096;
        int blocks = (4 << 20) / block;
        using (var img = Qcow2Image.Open(image, Trusted))
        {
            using var cts = new CancellationTokenSource();
            int bad = 0;
            string? firstBad = null;
            var readers = Enumerable.Range(0, 2).Select(r => Task.Factory.StartNew(() =>
            {
                var rng = new Random(Seed + 100 + r);
                var buf = new byte[block];
                while (!cts.IsCancellationRequested)
                {
                    int b = rng.Next(blocks);
                    img.Read((long)b * block, buf);
                    // Each byte must be old or new data of this block: zeros or one of the two
                    // writers' patterns for it. A block need not be all one pattern: a read racing
                    // an in-place overwrite of the same block is not atomic in the host's page cache
                    // (pread/pwrite of a regular file), so it may see part of each (seen here torn at
                    // byte 120 and at byte 3584). Data of another block, or anything never written,
                    // is what must never appear.
                    byte p1 = Pattern(b), p2 = Pattern2(b);
                    int foreign = buf.AsSpan().IndexOfAnyExcept(p1, p2, (byte)0);
                    if (foreign >= 0 && Interlocked.Increment(ref bad) == 1)
                        firstBad = $"block {b}: byte {foreign} is {buf[foreign]} (expected 0, {p1} or {p2}); values {string.Join(",", buf.Distinct())}";
                }
            }, TaskCreationOptions.LongRunning)).ToArray();
            var writers = Enumerable.Range(0, 2).Select(w => Task.Factory.StartNew(() =>
            {
                var rng = new Random(Seed + 200 + w);
                var buf = new byte[block];
                for (int i = 0; i < 1500; i++)
                {
                    int b = rng.Next(blocks);
                    int op = rng.Next(10);
                    if (op < 7)
                    {
                        buf.AsSpan().Fill(w == 0 ? Pattern(b) : Pattern2(b));
                        img.Write((long)b * block, buf);
                    }
                    else if (op < 8)
                    {
                        if (rng.Next(2) == 0) img.Discard((long)(b / 4) * 16384, 16384);
                        else img.WriteZeroes((long)b * block, block, unmap: rng.Next(2) == 0);
                    }
                    else if (op < 9)
                    {
                        // A whole cluster, compressed, each block with its own pattern.
                        var cluster = new byte[16384];
                        int first = b / 4 * 4;
                        for (int k = 0; k < 4; k++) cluster.AsSpan(k * block, block).Fill(w == 0 ? Pattern(first + k) : Pattern2(first + k));
                        img.WriteCompressed((long)first * block, cluster);
                    }
                    else
                    {
                        img.Flush();
                    }
                }
            }, TaskCreationOptions.LongRunning)).ToArray();
            await Task.WhenAll(writers);
            cts.Cancel();
            await Task.WhenAll(readers);
            Assert.True(bad == 0, $"{bad} reads with foreign bytes; first: {firstBad}");
        }
        AssertQemuCheckClean(image);
    }

    private static byte Pattern(int block) => (byte)(block % 127 + 1);

    private static byte Pattern2(int block) => (byte)(block % 127 + 129);
}
