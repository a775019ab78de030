using Qcow2.CrashWriter;

namespace Qcow2.Property.Tests.Harness;

/// <summary>
/// One operation of a concurrent workload as the test knows it after a crash.
/// </summary>
/// <param name="Thread">The thread that ran it.</param>
/// <param name="Index">Its place in that thread's workload.</param>
/// <param name="Op">The operation.</param>
/// <param name="StartSeq">Its number on the workload's global sequence, taken just before it was called (null when unknown).</param>
/// <param name="AckSeq">Its number taken just after it returned (null when it did not return, or the test does not know that it did).</param>
/// <param name="MayHaveRun">Whether any of its effects may have reached the media before the crash.</param>
internal sealed record HistoryEntry(int Thread, int Index, WorkloadOp Op, long? StartSeq, long? AckSeq, bool MayHaveRun)
{
    public override string ToString() =>
        $"thread {Thread} #{Index} {Op} (seq {StartSeq?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"}..{AckSeq?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"}{(MayHaveRun ? "" : ", not run")})";
}

/// <summary>
/// What a crash may leave of a concurrent workload: threads write through one image and flush at
/// will, and an operation is durable once a flush that was called after it returned has itself
/// returned (a flush makes durable what was acknowledged before it began, not what runs alongside).
/// </summary>
/// <remarks>
/// <para>Order between operations comes from one global sequence: each operation takes a number
/// just before it is called and another just after it returns, so <c>a.AckSeq &lt; b.StartSeq</c>
/// means a returned before b was called. Concurrent operations are unordered.</para>
/// <para>A byte is checked against a durable write (or write-zeroes) W when every other operation
/// covering it that may have run finished before W began (W then overwrote it); bytes that a later or
/// concurrent operation may have touched are left out. Discards are never checked (their bytes may
/// read as before or as zero) but do leave bytes out.</para>
/// </remarks>
internal static class ConcurrentHistory
{
    /// <summary>Whether <paramref name="entry"/> is durable given the latest start (<paramref name="durableBefore"/>) of a flush that returned.</summary>
    public static bool IsDurable(HistoryEntry entry, long durableBefore) =>
        entry.Op.Mutates && entry.AckSeq is { } ack && ack < durableBefore;

    /// <summary>
    /// The first byte of <paramref name="observed"/> (the guest disk from offset 0) that lost durable
    /// data, described, or null.
    /// </summary>
    /// <param name="observed">The whole guest disk as read after the crash.</param>
    /// <param name="entries">Every operation of the workload (those that surely did not run may be left out).</param>
    /// <param name="durableBefore">The greatest <see cref="HistoryEntry.StartSeq"/> of a flush that returned before the crash; <see cref="long.MinValue"/> when none did.</param>
    public static string? FindLostData(ReadOnlySpan<byte> observed, IReadOnlyList<HistoryEntry> entries, long durableBefore)
    {
        var checkedBytes = 0L;
        return FindLostData(observed, entries, durableBefore, ref checkedBytes);
    }

    /// <inheritdoc cref="FindLostData(ReadOnlySpan{byte}, IReadOnlyList{HistoryEntry}, long)"/>
    /// <param name="checkedBytes">Adds the number of bytes compared.</param>
    public static string? FindLostData(ReadOnlySpan<byte> observed, IReadOnlyList<HistoryEntry> entries, long durableBefore, ref long checkedBytes)
    {
        foreach (var w in entries)
        {
            if (!IsDurable(w, durableBefore) || w.Op.Kind == WorkloadOpKind.Discard) continue;
            var op = w.Op;
            var skip = new bool[op.Length];
            foreach (var x in entries)
            {
                if (ReferenceEquals(x, w) || !x.MayHaveRun || !x.Op.Mutates) continue;
                // Finished before w began: w overwrote it.
                if (x.AckSeq is { } xAck && xAck < w.StartSeq!.Value) continue;
                var from = Math.Max(op.Offset, x.Op.Offset);
                var to = Math.Min(op.Offset + op.Length, x.Op.Offset + x.Op.Length);
                for (var o = from; o < to; o++) skip[o - op.Offset] = true;
            }
            for (var i = 0; i < op.Length; i++)
            {
                if (skip[i]) continue;
                var at = op.Offset + i;
                if (at >= observed.Length) return $"the disk read is {observed.Length} bytes, {w} reaches 0x{op.Offset + op.Length:x}";
                checkedBytes++;
                var expected = op.ResultAt(at);
                if (observed[(int)at] != expected)
                    return $"guest byte 0x{at:x} reads 0x{observed[(int)at]:x2}, but {w} left 0x{expected:x2} there and was durable (acknowledged before a flush that returned began at seq {durableBefore}); no other operation that may have run touched it since. Operations covering it: "
                        + string.Join("; ", entries.Where(e => e.Op.Mutates && e.Op.Covers(at)).Select(e => e.Op.WritesPattern ? $"{e} (0x{e.Op.ByteAt(at):x2})" : e.ToString()));
            }
        }
        return null;
    }

    /// <summary>
    /// The first byte of <paramref name="observed"/> that no operation that may have run could have
    /// put there (nor the initial zeros), described, or null: stale data of a reused cluster, or
    /// data-file contents an L2 entry reached before its data did.
    /// </summary>
    public static string? FindForeignData(ReadOnlySpan<byte> observed, IReadOnlyList<HistoryEntry> entries)
    {
        var explained = new bool[observed.Length];
        for (var i = 0; i < observed.Length; i++) explained[i] = observed[i] == 0;
        foreach (var e in entries)
        {
            if (!e.MayHaveRun || !e.Op.WritesPattern) continue;
            var end = Math.Min(observed.Length, e.Op.Offset + e.Op.Length);
            for (var o = e.Op.Offset; o < end; o++)
                if (!explained[o] && observed[(int)o] == e.Op.ByteAt(o)) explained[o] = true;
        }
        var bad = Array.IndexOf(explained, false);
        return bad < 0 ? null : $"guest byte 0x{bad:x} reads 0x{observed[bad]:x2}, which no operation that may have run put there (nor the initial zeros)";
    }

    /// <summary>The latest start of a flush among <paramref name="entries"/> that returned (by <paramref name="returned"/>), or <see cref="long.MinValue"/>.</summary>
    public static long DurableBefore(IEnumerable<HistoryEntry> entries, Func<HistoryEntry, bool> returned) =>
        entries.Where(e => e.Op.Kind == WorkloadOpKind.Flush && e.StartSeq is not null && returned(e))
            .Select(e => e.StartSeq!.Value)
            .DefaultIfEmpty(long.MinValue)
            .Max();
}
