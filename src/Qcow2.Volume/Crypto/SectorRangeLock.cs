namespace Qcow2.Volume.Crypto;

/// <summary>
/// Keeps overlapping writes to an encrypted image apart. A write that does not cover whole sectors
/// must read, decrypt, merge and re-encrypt the sectors at its edges; a concurrent write to the same
/// sectors could otherwise be undone by that read-modify-write. Writes register the sector-aligned
/// range they touch; one overlapping a registered range waits for it. Only encrypted images use it.
/// </summary>
internal sealed class SectorRangeLock
{
    private readonly List<Holder> _held = [];

    /// <summary>Registers [start, end) unless it overlaps a held range, whose completion is then returned to wait for.</summary>
    public bool TryAcquire(long start, long end, out Holder holder, out Task? waitFor)
    {
        lock (_held)
        {
            foreach (var h in _held)
            {
                if (h.Start < end && start < h.End)
                {
                    holder = null!;
                    waitFor = h.Done.Task;
                    return false;
                }
            }
            holder = new Holder(start, end);
            _held.Add(holder);
            waitFor = null;
            return true;
        }
    }

    public void Release(Holder holder)
    {
        lock (_held) _held.Remove(holder);
        holder.Done.TrySetResult();
    }

    internal sealed class Holder(long start, long end)
    {
        public long Start { get; } = start;
        public long End { get; } = end;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
