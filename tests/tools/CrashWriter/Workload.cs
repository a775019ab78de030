namespace Qcow2.CrashWriter;

/// <summary>Kinds of operation in the writer's workload.</summary>
internal enum WorkloadOpKind
{
    Write,
    WriteZeroes,
    Discard,
    Flush,

    /// <summary>A compressed write of whole clusters (threaded workload without a data file only); its bytes repeat in runs of 64, so they compress.</summary>
    WriteCompressed,
}

/// <summary>One operation; writes fill with a pattern keyed by <see cref="Seed"/> and the guest offset.</summary>
internal readonly record struct WorkloadOp(WorkloadOpKind Kind, long Offset, int Length, int Seed)
{
    /// <summary>Whether the operation changes guest bytes (not a flush).</summary>
    public bool Mutates => Kind != WorkloadOpKind.Flush;

    /// <summary>Whether the operation writes its own pattern (a plain or compressed write).</summary>
    public bool WritesPattern => Kind is WorkloadOpKind.Write or WorkloadOpKind.WriteCompressed;

    /// <summary>Whether <paramref name="guestOffset"/> lies in the operation's range.</summary>
    public bool Covers(long guestOffset) => guestOffset >= Offset && guestOffset - Offset < Length;

    /// <summary>
    /// The byte a write puts at <paramref name="guestOffset"/>: a hash of the offset and the seed, so
    /// two operations (or two neighbouring offsets) agree only by chance (1 in 256). Compressed
    /// writes hash the offset rounded down to 64 bytes, so that their data compresses.
    /// </summary>
    public byte ByteAt(long guestOffset)
    {
        if (Kind == WorkloadOpKind.WriteCompressed) guestOffset &= ~63L;
        var h = ((ulong)guestOffset * 0x9E3779B97F4A7C15UL) ^ ((ulong)(uint)Seed * 0xC2B2AE3D27D4EB4FUL);
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9UL;
        h ^= h >> 32;
        return (byte)h;
    }

    /// <summary>The byte the operation leaves at <paramref name="guestOffset"/> (zero for write-zeroes); meaningless for discards and flushes.</summary>
    public byte ResultAt(long guestOffset) => Kind == WorkloadOpKind.WriteZeroes ? (byte)0 : ByteAt(guestOffset);

    public byte[] Data()
    {
        var data = new byte[Length];
        for (var i = 0; i < data.Length; i++) data[i] = ByteAt(Offset + i);
        return data;
    }

    public override string ToString() => Kind switch
    {
        WorkloadOpKind.Write => $"write #{Seed:x} 0x{Offset:x} 0x{Length:x}",
        WorkloadOpKind.WriteZeroes => $"write -z 0x{Offset:x} 0x{Length:x}",
        WorkloadOpKind.Discard => $"discard 0x{Offset:x} 0x{Length:x}",
        WorkloadOpKind.WriteCompressed => $"write -c #{Seed:x} 0x{Offset:x} 0x{Length:x}",
        _ => "flush",
    };
}

/// <summary>
/// The writer's workloads: endless, seeded sequences shared by the writer process and the tests
/// that check what survived its SIGKILL (or a simulated power cut).
/// </summary>
internal static class Workload
{
    /// <summary>Every <see cref="FlushInterval"/>-th operation of the single-threaded workload is a flush.</summary>
    public const int FlushInterval = 8;

    /// <summary>One flush in this many operations of each thread of the threaded workload, on average.</summary>
    public const int ThreadFlushOneIn = 6;

    /// <summary>The single-threaded workload.</summary>
    public static IEnumerable<WorkloadOp> Ops(int seed, long size, int clusterSize)
    {
        var random = new Random(seed);
        for (var i = 0; ; i++)
        {
            if (i % FlushInterval == FlushInterval - 1)
            {
                yield return new WorkloadOp(WorkloadOpKind.Flush, 0, 0, 0);
                continue;
            }
            var offset = random.Next(3) == 0
                ? random.NextInt64(size / clusterSize) * clusterSize
                : random.NextInt64(size - 1);
            var length = (int)Math.Min(size - offset, random.Next(4) == 0 ? random.Next(1, 4) * clusterSize : random.Next(1, 3 * 4096));
            yield return new WorkloadOp(NextKind(random), offset, length, 1 + i);
        }
    }

    /// <summary>
    /// The workload of thread <paramref name="thread"/> of <paramref name="threads"/> writing
    /// concurrently through one image: half its operations go to a region every thread shares (the
    /// first quarter of the disk, so ranges overlap and race), half to a region of its own (an equal
    /// share of the rest); flushes come at random, one in <see cref="ThreadFlushOneIn"/>. With
    /// <paramref name="compressed"/> one operation in ten is a compressed write of 1 to 3 whole clusters.
    /// </summary>
    public static IEnumerable<WorkloadOp> ThreadOps(int seed, int thread, int threads, long size, int clusterSize, bool compressed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(thread);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(thread, threads);
        var (sharedEnd, privateSize) = ThreadRegions(threads, size, clusterSize);
        // Not HashCode.Combine: that is randomised per process, and the test must replay the writer's workload.
        var random = new Random(unchecked(seed * 1_000_003 + thread * 7_919 + threads));
        for (var i = 0; ; i++)
        {
            if (random.Next(ThreadFlushOneIn) == 0)
            {
                yield return new WorkloadOp(WorkloadOpKind.Flush, 0, 0, 0);
                continue;
            }
            var shared = random.Next(2) == 0;
            var start = shared ? 0 : sharedEnd + thread * privateSize;
            var end = shared ? sharedEnd : start + privateSize;
            var offset = start + (random.Next(3) == 0
                ? random.NextInt64((end - start) / clusterSize) * clusterSize
                : random.NextInt64(end - start - 1));
            var length = (int)Math.Min(end - offset, random.Next(4) == 0 ? random.Next(1, 4) * clusterSize : random.Next(1, 3 * 4096));
            // Unique per thread and operation, so every write's bytes name it.
            var opSeed = ((thread + 1) << 24) | (i & 0xffffff);
            if (compressed && random.Next(10) == 0)
            {
                var first = start + random.NextInt64((end - start) / clusterSize) * clusterSize;
                var clusters = (int)Math.Min((end - first) / clusterSize, random.Next(1, 4));
                yield return new WorkloadOp(WorkloadOpKind.WriteCompressed, first, clusters * clusterSize, opSeed);
                continue;
            }
            yield return new WorkloadOp(NextKind(random), offset, length, opSeed);
        }
    }

    /// <summary>The end of the shared region and the size of each thread's own region (whole clusters).</summary>
    public static (long SharedEnd, long PrivateSize) ThreadRegions(int threads, long size, int clusterSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        var clusters = size / clusterSize;
        var sharedClusters = Math.Max(1, clusters / 4);
        var privateClusters = (clusters - sharedClusters) / threads;
        if (privateClusters < 1) throw new ArgumentException($"a disk of {clusters} clusters is too small for {threads} threads", nameof(size));
        return (sharedClusters * clusterSize, privateClusters * clusterSize);
    }

    private static WorkloadOpKind NextKind(Random random) => random.Next(10) switch
    {
        < 7 => WorkloadOpKind.Write,
        < 9 => WorkloadOpKind.WriteZeroes,
        _ => WorkloadOpKind.Discard,
    };
}
