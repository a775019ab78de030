namespace Qcow2.CrashWriter;

/// <summary>Kinds of operation in the writer's workload.</summary>
internal enum WorkloadOpKind
{
    Write,
    WriteZeroes,
    Discard,
    Flush,
}

/// <summary>One operation; writes fill with a pattern keyed by <see cref="Seed"/> and the guest offset.</summary>
internal readonly record struct WorkloadOp(WorkloadOpKind Kind, long Offset, int Length, byte Seed)
{
    /// <summary>The byte a write puts at <paramref name="guestOffset"/> (never the same for neighbouring offsets).</summary>
    public byte ByteAt(long guestOffset)
    {
        var h = (ulong)guestOffset * 0x9E3779B97F4A7C15UL;
        h ^= h >> 29;
        return (byte)((h >> 32) ^ Seed);
    }

    public byte[] Data()
    {
        var data = new byte[Length];
        for (var i = 0; i < data.Length; i++) data[i] = ByteAt(Offset + i);
        return data;
    }
}

/// <summary>
/// The writer's workload: an endless, seeded sequence shared by the writer process and the test
/// that checks what survived its SIGKILL. Every <see cref="FlushInterval"/>-th operation is a flush.
/// </summary>
internal static class Workload
{
    public const int FlushInterval = 8;

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
            var kind = random.Next(10) switch
            {
                < 7 => WorkloadOpKind.Write,
                < 9 => WorkloadOpKind.WriteZeroes,
                _ => WorkloadOpKind.Discard,
            };
            yield return new WorkloadOp(kind, offset, length, (byte)(1 + i % 255));
        }
    }
}
