using System.Buffers;

namespace Qcow2.Volume.Operations;

/// <summary>Options of <see cref="ImageConverter.Convert"/> (named after qemu-img convert's flags).</summary>
public sealed record ConvertOptions
{
    /// <summary>-c: write data clusters compressed (the target must be a <see cref="Qcow2Image"/>).</summary>
    public bool Compress { get; init; }

    /// <summary>
    /// -S: a run of zero bytes this long (aligned to it) inside data is treated as a hole and not
    /// written; 0 writes every byte, zero ranges included (a fully allocated target). Default 4 KiB.
    /// </summary>
    public long SparseSize { get; init; } = 4096;

    /// <summary>
    /// The target already reads as zeros everywhere (a new image without backing file, or
    /// --target-is-zero), so zero ranges need not be written. False writes them as zeros.
    /// </summary>
    public bool TargetIsZero { get; init; }

    /// <summary>
    /// -B: the target has a backing file with the source's backing content, so only what the
    /// source's top layer holds is copied.
    /// </summary>
    public bool TargetHasBacking { get; init; }

    /// <summary>-m: worker threads reading, compressing and writing in parallel (default: the processor count).</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>Largest range handled as one unit of work (default 2 MiB, qemu-img's buffer size).</summary>
    public int ChunkSize { get; init; } = 2 << 20;

    /// <summary>Receives the completed fraction (0 to 1); called from worker threads.</summary>
    public IProgress<double>? Progress { get; init; }

    /// <summary>Stops the conversion (OperationCanceledException).</summary>
    public CancellationToken CancellationToken { get; init; }
}

/// <summary>What a conversion did.</summary>
/// <param name="BytesRead">Guest bytes read from the sources.</param>
/// <param name="DataBytesWritten">Bytes written as data (before compression).</param>
/// <param name="ZeroBytesWritten">Bytes written as zeros (WriteZeroes).</param>
/// <param name="SkippedBytes">Bytes not written (zero on a zero target, or left to the target's backing file).</param>
/// <param name="CompressedClusters">Clusters handed to the compressed write.</param>
public readonly record struct ConvertResult(long BytesRead, long DataBytesWritten, long ZeroBytesWritten, long SkippedBytes, long CompressedClusters);

/// <summary>
/// Copies the guest contents of one or more source images, concatenated, into a target image, the
/// way <c>qemu-img convert</c> does: block status decides what is data, zero or unallocated;
/// unallocated and zero ranges are skipped on a zero target; zero runs inside data are found at the
/// <see cref="ConvertOptions.SparseSize"/> granularity; data may be written compressed. Worker threads
/// (the caller's among them) take bounded units of work in turn from one walk of the block status,
/// then read, scan, compress and write them in parallel (images are safe for concurrent I/O to
/// different ranges).
/// </summary>
public static class ImageConverter
{
    /// <summary>Converts <paramref name="sources"/> into <paramref name="target"/>.</summary>
    /// <exception cref="ArgumentException">No source, a target smaller than the sources together, or compression to a target that is not qcow2.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A negative sparse size, or a parallelism or chunk size below 1.</exception>
    /// <exception cref="InvalidOperationException">The target is read-only.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static ConvertResult Convert(IReadOnlyList<IDiskImage> sources, IDiskImage target, ConvertOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(sources);
        ArgumentNullException.ThrowIfNull(target);
        options ??= new ConvertOptions();
        if (sources.Count == 0) throw new ArgumentException("At least one source image is needed.", nameof(sources));
        ArgumentOutOfRangeException.ThrowIfNegative(options.SparseSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Parallelism, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ChunkSize, 1);
        if (target.IsReadOnly) throw new InvalidOperationException("The target image is read-only.");
        long total = 0;
        foreach (var s in sources)
        {
            ArgumentNullException.ThrowIfNull(s, nameof(sources));
            total = checked(total + s.Size);
        }
        if (target.Size < total)
            throw new ArgumentException($"The target ({target.Size} bytes) is smaller than the sources ({total} bytes).", nameof(target));
        Qcow2Image? compressTarget = null;
        int clusterSize = 0;
        if (options.Compress)
        {
            compressTarget = target as Qcow2Image
                ?? throw new ArgumentException("Compression needs a qcow2 target.", nameof(target));
            clusterSize = compressTarget.Info.ClusterSize;
        }

        var job = new Job(sources, target, options, total, compressTarget, clusterSize);
        job.Run();
        target.Flush();
        return job.Result;
    }

    private enum WorkKind
    {
        Data,
        Zero,
    }

    private readonly record struct Work(WorkKind Kind, long Offset, long Length);

    private sealed class Job
    {
        private readonly IReadOnlyList<IDiskImage> _sources;
        private readonly long[] _starts;
        private readonly IDiskImage _target;
        private readonly ConvertOptions _o;
        private readonly long _total;
        private readonly Qcow2Image? _compress;
        private readonly int _clusterSize;
        private readonly int _chunk;
        private long _read, _data, _zero, _skipped, _compressed, _done;
        private int _lastPercent = -1;

        public Job(IReadOnlyList<IDiskImage> sources, IDiskImage target, ConvertOptions o, long total, Qcow2Image? compress, int clusterSize)
        {
            _sources = sources;
            _target = target;
            _o = o;
            _total = total;
            _compress = compress;
            _clusterSize = clusterSize;
            _starts = new long[sources.Count + 1];
            for (int i = 0; i < sources.Count; i++) _starts[i + 1] = _starts[i] + sources[i].Size;
            // Compressed work is whole clusters of the target.
            _chunk = compress is null ? o.ChunkSize : Math.Max(clusterSize, o.ChunkSize / clusterSize * clusterSize);
        }

        public ConvertResult Result => new(_read, _data, _zero, _skipped, _compressed);

        public void Run()
        {
            // No producer thread and no queue: each worker takes the next unit of work from the
            // block-status walk under a lock (the walk is cheap next to reading and writing a unit),
            // so no thread ever spins or sleeps waiting for a queue, and the calling thread is one
            // of the workers.
            var ct = _o.CancellationToken;
            using var work = Produce(ct).GetEnumerator();
            var gate = new object();
            bool finished = false;
            Exception? failure = null;
            void Worker()
            {
                try
                {
                    while (true)
                    {
                        Work w;
                        lock (gate)
                        {
                            if (finished || Volatile.Read(ref failure) is not null) return;
                            ct.ThrowIfCancellationRequested();
                            if (!work.MoveNext())
                            {
                                finished = true;
                                return;
                            }
                            w = work.Current;
                        }
                        Process(w);
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
            }
            var workers = new Thread[_o.Parallelism - 1];
            for (int i = 0; i < workers.Length; i++)
            {
                workers[i] = new Thread(Worker) { IsBackground = true, Name = "qcow2-convert-" + i };
                workers[i].Start();
            }
            Worker();
            foreach (var t in workers) t.Join();
            if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            ct.ThrowIfCancellationRequested();
            if (_o.Progress is not null && _total > 0) _o.Progress.Report(1.0);
        }

        /// <summary>Walks the sources' block status and yields the work, in target offsets (one caller at a time).</summary>
        private IEnumerable<Work> Produce(CancellationToken ct)
        {
            var statuses = new ChainStatus?[_sources.Count];
            try
            {
                if (_compress is not null)
                {
                    // Whole target clusters: data if any covered source range may hold data. A long
                    // run without data is passed over in one step (whole clusters of it).
                    for (long pos = 0; pos < _total;)
                    {
                        ct.ThrowIfCancellationRequested();
                        long empty = EmptyRun(statuses, pos);
                        if (empty >= _clusterSize || pos + empty == _total)
                        {
                            long len = pos + empty == _total ? empty : empty / _clusterSize * _clusterSize;
                            if (NeedsZeroWrite()) yield return new Work(WorkKind.Zero, pos, len);
                            else Skip(len);
                            pos += len;
                            continue;
                        }
                        long chunk = Math.Min(_chunk, _total - pos);
                        var kind = AnyData(statuses, pos, chunk) ? WorkKind.Data : WorkKind.Zero;
                        if (kind == WorkKind.Zero && !NeedsZeroWrite()) Skip(chunk);
                        else yield return new Work(kind, pos, chunk);
                        pos += chunk;
                    }
                    yield break;
                }
                for (int i = 0; i < _sources.Count; i++)
                {
                    var src = _sources[i];
                    long start = _starts[i];
                    var status = statuses[i] = new ChainStatus(src);
                    for (long pos = 0; pos < src.Size;)
                    {
                        ct.ThrowIfCancellationRequested();
                        // Ask for the whole rest: unallocated and zero extents come back long;
                        // only what must be read is cut into chunks.
                        var e = status.Get(pos, src.Size - pos);
                        long len = e.Length;
                        if (_o.TargetHasBacking && (!e.Allocated || e.Depth > 0))
                        {
                            Skip(len); // the target's backing file provides it
                        }
                        else if ((e.Zero || !e.Data) && _o.SparseSize != 0)
                        {
                            if (NeedsZeroWrite()) yield return new Work(WorkKind.Zero, start + pos, len);
                            else Skip(len);
                        }
                        else
                        {
                            for (long part = 0; part < len; part += _chunk)
                                yield return new Work(WorkKind.Data, start + pos + part, Math.Min(_chunk, len - part));
                        }
                        pos += len;
                    }
                }
            }
            finally
            {
                foreach (var s in statuses) s?.Dispose();
            }
        }

        private bool NeedsZeroWrite() => !_o.TargetIsZero || _o.TargetHasBacking;

        /// <summary>Whether [pos, pos+len) of the concatenated sources may hold data (compressed mode).</summary>
        private bool AnyData(ChainStatus?[] statuses, long pos, long len)
        {
            long end = pos + len;
            while (pos < end)
            {
                int i = SourceAt(pos);
                var src = _sources[i];
                var status = statuses[i] ??= new ChainStatus(src);
                long local = pos - _starts[i];
                long n = Math.Min(end - pos, src.Size - local);
                while (n > 0)
                {
                    var e = status.Get(local, n);
                    bool skip = _o.TargetHasBacking && (!e.Allocated || e.Depth > 0);
                    if (e.Data && !e.Zero && !skip) return true;
                    local += e.Length;
                    n -= e.Length;
                    pos += e.Length;
                }
            }
            return false;
        }

        /// <summary>Bytes from <paramref name="pos"/> (in one source) that hold no data to copy; 0 when data starts there.</summary>
        private long EmptyRun(ChainStatus?[] statuses, long pos)
        {
            int i = SourceAt(pos);
            var src = _sources[i];
            var status = statuses[i] ??= new ChainStatus(src);
            long local = pos - _starts[i];
            var e = status.Get(local, src.Size - local);
            bool skip = _o.TargetHasBacking && (!e.Allocated || e.Depth > 0);
            return e.Data && !e.Zero && !skip ? 0 : e.Length;
        }

        private int SourceAt(long pos)
        {
            int i = Array.BinarySearch(_starts, pos);
            if (i < 0) i = ~i - 1;
            // Skip empty sources that start at the same offset.
            while (i < _sources.Count - 1 && _starts[i + 1] <= pos) i++;
            return i;
        }

        private void Process(Work w)
        {
            if (w.Kind == WorkKind.Zero)
            {
                _target.WriteZeroes(w.Offset, w.Length);
                Interlocked.Add(ref _zero, w.Length);
                Advance(w.Length);
                return;
            }
            var buffer = ArrayPool<byte>.Shared.Rent((int)w.Length);
            try
            {
                var span = buffer.AsSpan(0, (int)w.Length);
                ReadConcatenated(w.Offset, span);
                Interlocked.Add(ref _read, w.Length);
                if (_compress is not null) WriteCompressed(w.Offset, span);
                else WriteSparse(w.Offset, span);
                Advance(w.Length);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private void ReadConcatenated(long offset, Span<byte> destination)
        {
            while (!destination.IsEmpty)
            {
                int i = SourceAt(offset);
                long local = offset - _starts[i];
                int n = (int)Math.Min(destination.Length, _sources[i].Size - local);
                _sources[i].Read(local, destination[..n]);
                destination = destination[n..];
                offset += n;
            }
        }

        private void WriteCompressed(long offset, ReadOnlySpan<byte> data)
        {
            for (int pos = 0; pos < data.Length; pos += _clusterSize)
            {
                var cluster = data.Slice(pos, Math.Min(_clusterSize, data.Length - pos));
                if (!cluster.ContainsAnyExcept((byte)0))
                {
                    if (NeedsZeroWrite())
                    {
                        _target.WriteZeroes(offset + pos, cluster.Length);
                        Interlocked.Add(ref _zero, cluster.Length);
                    }
                    else
                    {
                        Interlocked.Add(ref _skipped, cluster.Length);
                    }
                    continue;
                }
                if (cluster.Length < _clusterSize && offset + pos + cluster.Length != _target.Size)
                {
                    // A short cluster that is not the disk's last cannot be stored compressed.
                    _target.Write(offset + pos, cluster);
                    Interlocked.Add(ref _data, cluster.Length);
                    continue;
                }
                _compress!.WriteCompressed(offset + pos, cluster);
                Interlocked.Add(ref _data, cluster.Length);
                Interlocked.Increment(ref _compressed);
            }
        }

        /// <summary>Writes the data runs, and zero runs of at least the sparse size as zeros (or not at all on a zero target).</summary>
        private void WriteSparse(long offset, ReadOnlySpan<byte> data)
        {
            long unit = _o.SparseSize;
            if (unit == 0)
            {
                _target.Write(offset, data);
                Interlocked.Add(ref _data, data.Length);
                return;
            }
            int pos = 0;
            while (pos < data.Length)
            {
                // Units are aligned to the sparse size in target offsets.
                int runStart = pos;
                bool zero = IsZeroUnit(offset, data, pos, unit, out int next);
                pos = next;
                while (pos < data.Length && IsZeroUnit(offset, data, pos, unit, out int after) == zero) pos = after;
                var run = data[runStart..pos];
                if (!zero)
                {
                    _target.Write(offset + runStart, run);
                    Interlocked.Add(ref _data, run.Length);
                }
                else if (NeedsZeroWrite())
                {
                    _target.WriteZeroes(offset + runStart, run.Length);
                    Interlocked.Add(ref _zero, run.Length);
                }
                else
                {
                    Interlocked.Add(ref _skipped, run.Length);
                }
            }
        }

        private static bool IsZeroUnit(long baseOffset, ReadOnlySpan<byte> data, int pos, long unit, out int next)
        {
            long absolute = baseOffset + pos;
            long unitEnd = (absolute / unit + 1) * unit;
            next = (int)Math.Min(data.Length, pos + (unitEnd - absolute));
            return !data[pos..next].ContainsAnyExcept((byte)0);
        }

        private void Skip(long length)
        {
            Interlocked.Add(ref _skipped, length);
            Advance(length);
        }

        private void Advance(long length)
        {
            long done = Interlocked.Add(ref _done, length);
            if (_o.Progress is null || _total == 0) return;
            int percent = (int)(done * 100 / _total);
            int last = Volatile.Read(ref _lastPercent);
            if (percent > last && Interlocked.CompareExchange(ref _lastPercent, percent, last) == last)
                _o.Progress.Report((double)done / _total);
        }
    }
}
