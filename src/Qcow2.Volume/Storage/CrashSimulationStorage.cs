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
public readonly record struct StorageEvent(StorageEventKind Kind, long Offset, ReadOnlyMemory<byte> Data);

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
/// </remarks>
public sealed class CrashSimulationStorage : IStorage
{
    /// <summary>Granularity of a torn write.</summary>
    public const int SectorSize = 512;

    private readonly IStorage _inner;
    private readonly byte[] _initial;
    private readonly List<StorageEvent> _events = new();
    private readonly Lock _lock = new();
    private int _powerCutAt = int.MaxValue;

    /// <summary>Wraps <paramref name="inner"/> and starts recording.</summary>
    /// <param name="inner">The storage that receives every operation.</param>
    /// <exception cref="ArgumentNullException"><paramref name="inner"/> is null.</exception>
    /// <exception cref="ArgumentException">The inner storage is larger than 1 GiB.</exception>
    public CrashSimulationStorage(IStorage inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        if (inner.Length > 1 << 30) throw new ArgumentException("crash simulation keeps a copy of the initial contents: at most 1 GiB", nameof(inner));
        _inner = inner;
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

    /// <summary>Makes every operation after <paramref name="eventCount"/> recorded events fail with <see cref="IOException"/>.</summary>
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
            _events.Add(new StorageEvent(StorageEventKind.Write, offset, source.ToArray()));
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
            _events.Add(new StorageEvent(StorageEventKind.Flush, 0, ReadOnlyMemory<byte>.Empty));
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
            _events.Add(new StorageEvent(StorageEventKind.SetLength, length, ReadOnlyMemory<byte>.Empty));
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
        if (_events.Count >= _powerCutAt) throw new IOException("simulated power cut: the device is gone");
    }
}
