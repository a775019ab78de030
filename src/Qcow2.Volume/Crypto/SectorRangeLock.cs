namespace Qcow2.Volume.Crypto;

/// <summary>
/// Keeps overlapping writes to an encrypted image apart. A write that does not cover whole sectors
/// must read, decrypt, merge and re-encrypt the sectors at its edges; a concurrent write to the same
/// sectors could otherwise be undone by that read-modify-write. Writes register the sector-aligned
/// range they touch; one overlapping a registered range waits for it. Only encrypted images use it.
/// Uncontended, it allocates nothing: released holders are reused, and the completion a waiter awaits
/// is made only when someone has to wait.
/// </summary>
internal sealed class SectorRangeLock
{
    private const int MaxPooled = 64;
    private readonly List<Holder> _held = [];
    private readonly Stack<Holder> _free = new();

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
                    h.Released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    waitFor = h.Released.Task;
                    return false;
                }
            }
            holder = _free.TryPop(out var reused) ? reused : new Holder();
            holder.Start = start;
            holder.End = end;
            _held.Add(holder);
            waitFor = null;
            return true;
        }
    }

    /// <summary>Unregisters <paramref name="holder"/> (which the caller must not use again) and wakes its waiters.</summary>
    public void Release(Holder holder)
    {
        TaskCompletionSource? waiters;
        lock (_held)
        {
            _held.Remove(holder);
            waiters = holder.Released;
            holder.Released = null;
            if (_free.Count < MaxPooled) _free.Push(holder);
        }
        waiters?.TrySetResult();
    }

    /// <summary>A registered range; reused after release.</summary>
    internal sealed class Holder
    {
        public long Start { get; set; }

        public long End { get; set; }

        /// <summary>Completed at release; made by the first waiter (under the lock).</summary>
        public TaskCompletionSource? Released { get; set; }
    }
}
