namespace Qcow2.Volume.Storage;

/// <summary>What becomes of one write that was not yet made durable when the power was cut.</summary>
public enum CrashWriteFate
{
    /// <summary>The write never reached the medium.</summary>
    Drop,

    /// <summary>The whole write reached the medium.</summary>
    Keep,

    /// <summary>Each 512-byte sector of the write independently reached the medium or not.</summary>
    Tear,
}

/// <summary>One operation recorded by <see cref="CrashSimulationStorage"/>.</summary>
/// <param name="Kind">Write, flush or length change.</param>
/// <param name="Offset">Offset of a write; the new length for <see cref="StorageEventKind.SetLength"/>.</param>
/// <param name="Data">The bytes of a write (empty otherwise).</param>
/// <param name="Time">The event's place on the storage's <see cref="CrashSimulationClock"/>: how many events
/// every storage sharing that clock had recorded before it.</param>
public readonly record struct StorageEvent(StorageEventKind Kind, long Offset, ReadOnlyMemory<byte> Data, int Time = 0);

/// <summary>
/// One machine's power supply for several <see cref="CrashSimulationStorage"/> instances, e.g. an image
/// file and its external data file: their events are numbered on one shared count, so that one cut
/// point, a time on this clock, says what each storage had seen when the power went. The storages
/// sharing a clock also share one lock, so the order of the count is the order the media saw.
/// </summary>
public sealed class CrashSimulationClock
{
    internal readonly Lock Lock = new();
    internal int Now;
    internal int PowerCutAt = int.MaxValue;

    /// <summary>The number of events recorded so far by every storage on this clock; a cut point is a time from 0 to this.</summary>
    public int EventCount
    {
        get { lock (Lock) return Now; }
    }

    /// <summary>Makes every operation on every storage of this clock fail with <see cref="IOException"/> once <paramref name="eventCount"/> events are recorded in all.</summary>
    /// <param name="eventCount">The cut time; <see cref="int.MaxValue"/> disarms.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="eventCount"/> is negative.</exception>
    public void ArmPowerCut(int eventCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(eventCount);
        lock (Lock) PowerCutAt = eventCount;
    }
}

/// <summary>Kinds of <see cref="StorageEvent"/>.</summary>
public enum StorageEventKind
{
    /// <summary>A write of <see cref="StorageEvent.Data"/> at <see cref="StorageEvent.Offset"/>.</summary>
    Write,

    /// <summary>A completed flush: every earlier write is durable.</summary>
    Flush,

    /// <summary>A truncation or extension to <see cref="StorageEvent.Offset"/> bytes.</summary>
    SetLength,
}

/// <summary>
/// Storage for crash-consistency tests. It passes every operation to an inner storage and records
/// each write, flush and length change in order. From the record it can rebuild the medium as it
/// would be after a power cut at any point: writes before the last completed flush are all there;
/// each write after it is dropped, kept or torn at 512-byte granularity, as a chosen
/// <see cref="Func{T, TResult}"/> or a seeded random choice decides.
/// </summary>
/// <remarks>
/// <para>The initial contents of the inner storage are copied when the wrapper is created: keep the
/// images small. Length changes are applied in order and never lost (only data is at risk).</para>
/// <para>A cut can also be armed for a running workload with <see cref="ArmPowerCut"/>: once that
/// many events are recorded, every further operation throws <see cref="IOException"/>, as a vanished
/// device would.</para>
/// <para>Disposing the wrapper does not dispose the inner storage, and the wrapper stays usable, so an
/// image closed over it can be reopened.</para>
/// <para>Several storages of one machine (an image and its external data file) share a
/// <see cref="CrashSimulationClock"/>: a cut at clock time t is, for each of them, a cut after its
/// <see cref="EventCountAt"/>(t) events; each keeps what its own last completed flush made durable.</para>
/// </remarks>
public sealed class CrashSimulationStorage : IStorage
{
    /// <summary>Granularity of a torn write.</summary>
    public const int SectorSize = 512;

    private readonly IStorage _inner;
    private readonly byte[] _initial;
    private readonly List<StorageEvent> _events = new();
    private readonly CrashSimulationClock _clock;
    private readonly Lock _lock;
    private int _powerCutAt = int.MaxValue;

    /// <summary>Wraps <paramref name="inner"/> and starts recording, on a clock of its own.</summary>
    /// <param name="inner">The storage that receives every operation.</param>
    /// <exception cref="ArgumentNullException"><paramref name="inner"/> is null.</exception>
    /// <exception cref="ArgumentException">The inner storage is larger than 1 GiB.</exception>
    public CrashSimulationStorage(IStorage inner)
        : this(inner, new CrashSimulationClock())
    {
    }

    /// <summary>Wraps <paramref name="inner"/> and starts recording on <paramref name="clock"/>, shared with the machine's other storages.</summary>
    /// <param name="inner">The storage that receives every operation.</param>
    /// <param name="clock">The machine's clock.</param>
    /// <exception cref="ArgumentNullException"><paramref name="inner"/> or <paramref name="clock"/> is null.</exception>
    /// <exception cref="ArgumentException">The inner storage is larger than 1 GiB.</exception>
    public CrashSimulationStorage(IStorage inner, CrashSimulationClock clock)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(clock);
        if (inner.Length > 1 << 30) throw new ArgumentException("crash simulation keeps a copy of the initial contents: at most 1 GiB", nameof(inner));
        _inner = inner;
        _clock = clock;
        _lock = clock.Lock;
        _initial = new byte[inner.Length];
        var done = 0;
        while (done < _initial.Length)
        {
            var n = inner.Read(done, _initial.AsSpan(done));
            if (n <= 0) break;
            done += n;
        }
    }

    /// <summary>The number of recorded events; a cut point is a number from 0 to this.</summary>
    public int EventCount
    {
        get { lock (_lock) return _events.Count; }
    }

    /// <summary>The clock this storage records on.</summary>
    public CrashSimulationClock Clock => _clock;

    /// <summary>The number of this storage's events recorded before its clock reached <paramref name="clockTime"/>: the local cut point of a cut at that time.</summary>
    /// <param name="clockTime">A time on <see cref="Clock"/>, 0 to its <see cref="CrashSimulationClock.EventCount"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="clockTime"/> is out of range.</exception>
    public int EventCountAt(int clockTime)
    {
        lock (_lock)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(clockTime);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(clockTime, _clock.Now);
            // Times only grow: find the first event at or after clockTime.
            int lo = 0, hi = _events.Count;
            while (lo < hi)
            {
                int mid = (lo + hi) >>> 1;
                if (_events[mid].Time < clockTime) lo = mid + 1;
                else hi = mid;
            }
            return lo;
        }
    }

    /// <summary>A copy of the recorded events.</summary>
    public IReadOnlyList<StorageEvent> Events
    {
        get { lock (_lock) return _events.ToArray(); }
    }

    /// <inheritdoc/>
    public long Length => _inner.Length;

    /// <inheritdoc/>
    public bool CanWrite => _inner.CanWrite;

    /// <inheritdoc/>
    public string Name => "crash-simulation(" + _inner.Name + ")";

    /// <summary>Makes every operation after <paramref name="eventCount"/> events recorded by this storage fail with <see cref="IOException"/> (<see cref="CrashSimulationClock.ArmPowerCut"/> cuts every storage of the clock).</summary>
    /// <param name="eventCount">The cut point; <see cref="int.MaxValue"/> disarms.</param>
    public void ArmPowerCut(int eventCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(eventCount);
        lock (_lock) _powerCutAt = eventCount;
    }

    /// <summary>The index of the last flush among the first <paramref name="cutPoint"/> events, or -1.</summary>
    /// <param name="cutPoint">Number of events that happened before the cut.</param>
    public int LastFlushBefore(int cutPoint)
    {
        lock (_lock)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(cutPoint);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(cutPoint, _events.Count);
            for (var i = cutPoint - 1; i >= 0; i--)
                if (_events[i].Kind == StorageEventKind.Flush) return i;
            return -1;
        }
    }

    /// <summary>
    /// Writes into <paramref name="target"/> the medium as it would be after a power cut once the
    /// first <paramref name="cutPoint"/> events had happened.
    /// </summary>
    /// <param name="cutPoint">Number of events before the cut (0 to <see cref="EventCount"/>).</param>
    /// <param name="fate">Decides each write after the last completed flush, by its event index.</param>
    /// <param name="random">Chooses the sectors of torn writes.</param>
    /// <param name="target">Empty writable storage that receives the result.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="cutPoint"/> is out of range.</exception>
    public void RestoreAfterPowerCut(int cutPoint, Func<int, CrashWriteFate> fate, Random random, IStorage target)
    {
        ArgumentNullException.ThrowIfNull(fate);
        ArgumentNullException.ThrowIfNull(random);
        ArgumentNullException.ThrowIfNull(target);
        StorageEvent[] events;
        lock (_lock)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(cutPoint);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(cutPoint, _events.Count);
            events = _events.GetRange(0, cutPoint).ToArray();
        }
        var lastFlush = Array.FindLastIndex(events, e => e.Kind == StorageEventKind.Flush);
        target.SetLength(0);
        target.Write(0, _initial);
        for (var i = 0; i < events.Length; i++)
        {
            var e = events[i];
            switch (e.Kind)
            {
                case StorageEventKind.SetLength:
                    target.SetLength(e.Offset);
                    break;
                case StorageEventKind.Flush:
                    break;
                case StorageEventKind.Write when i < lastFlush:
                    target.Write(e.Offset, e.Data.Span);
                    break;
                case StorageEventKind.Write:
                    switch (fate(i))
                    {
                        case CrashWriteFate.Keep:
                            target.Write(e.Offset, e.Data.Span);
                            break;
                        case CrashWriteFate.Tear:
                            WriteTorn(target, e, random);
                            break;
                    }
                    break;
            }
        }
    }

    /// <summary>
    /// Like <see cref="RestoreAfterPowerCut(int, Func{int, CrashWriteFate}, Random, IStorage)"/> with
    /// every pending write's fate drawn from <paramref name="seed"/>: dropped, kept or torn with the given weights.
    /// </summary>
    /// <param name="cutPoint">Number of events before the cut.</param>
    /// <param name="seed">Seed for every choice, so that a failure replays.</param>
    /// <param name="target">Empty writable storage that receives the result.</param>
    /// <param name="dropWeight">Relative weight of dropping a write.</param>
    /// <param name="keepWeight">Relative weight of keeping a write.</param>
    /// <param name="tearWeight">Relative weight of tearing a write.</param>
    public void RestoreAfterPowerCut(int cutPoint, int seed, IStorage target, int dropWeight = 1, int keepWeight = 1, int tearWeight = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dropWeight);
        ArgumentOutOfRangeException.ThrowIfNegative(keepWeight);
        ArgumentOutOfRangeException.ThrowIfNegative(tearWeight);
        var total = dropWeight + keepWeight + tearWeight;
        if (total <= 0) throw new ArgumentException("at least one weight must be positive", nameof(dropWeight));
        var random = new Random(seed);
        RestoreAfterPowerCut(cutPoint, _ =>
        {
            var r = random.Next(total);
            return r < dropWeight ? CrashWriteFate.Drop : r < dropWeight + keepWeight ? CrashWriteFate.Keep : CrashWriteFate.Tear;
        }, random, target);
    }

    private static void WriteTorn(IStorage target, StorageEvent e, Random random)
    {
        var data = e.Data.Span;
        var pos = 0;
        while (pos < data.Length)
        {
            // Sector boundaries are those of the medium, not of the write.
            var sectorEnd = (e.Offset + pos) / SectorSize * SectorSize + SectorSize;
            var n = (int)Math.Min(data.Length - pos, sectorEnd - (e.Offset + pos));
            if (random.Next(2) == 0) target.Write(e.Offset + pos, data.Slice(pos, n));
            pos += n;
        }
    }

    /// <inheritdoc/>
    public int Read(long offset, Span<byte> destination)
    {
        ThrowIfCut();
        return _inner.Read(offset, destination);
    }

    /// <inheritdoc/>
    public ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        ThrowIfCut();
        return _inner.ReadAsync(offset, destination, cancellationToken);
    }

    /// <inheritdoc/>
    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        // Recording and writing under one lock keeps the record in the order the medium saw.
        lock (_lock)
        {
            ThrowIfCutLocked();
            _inner.Write(offset, source);
            Record(StorageEventKind.Write, offset, source.ToArray());
        }
    }

    /// <inheritdoc/>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Write(offset, source.Span);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public void Flush()
    {
        lock (_lock)
        {
            ThrowIfCutLocked();
            _inner.Flush();
            Record(StorageEventKind.Flush, 0, ReadOnlyMemory<byte>.Empty);
        }
    }

    /// <inheritdoc/>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Flush();
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public void SetLength(long length)
    {
        lock (_lock)
        {
            ThrowIfCutLocked();
            _inner.SetLength(length);
            Record(StorageEventKind.SetLength, length, ReadOnlyMemory<byte>.Empty);
        }
    }

    /// <summary>Does nothing: the wrapper does not own the inner storage and stays usable.</summary>
    public void Dispose()
    {
    }

    /// <inheritdoc cref="Dispose"/>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private void ThrowIfCut()
    {
        lock (_lock) ThrowIfCutLocked();
    }

    private void ThrowIfCutLocked()
    {
        if (_events.Count >= _powerCutAt || _clock.Now >= _clock.PowerCutAt) throw new IOException("simulated power cut: the device is gone");
    }

    private void Record(StorageEventKind kind, long offset, ReadOnlyMemory<byte> data)
    {
        _events.Add(new StorageEvent(kind, offset, data, _clock.Now));
        _clock.Now++;
    }
}
