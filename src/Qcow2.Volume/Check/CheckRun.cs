using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Check;

/// <summary>One pass of the check (and repair), following the order qemu-img uses so the counts agree.</summary>
internal sealed partial class CheckRun
{
    // Entry bits (spec "Cluster mapping", "Refcount table").
    internal const ulong CopiedFlag = 1UL << 63;
    internal const ulong CompressedFlag = 1UL << 62;
    internal const ulong ZeroFlag = 1UL;
    internal const ulong L1OffsetMask = 0x00ff_ffff_ffff_fe00UL;
    internal const ulong L1ReservedMask = 0x7f00_0000_0000_01ffUL;
    internal const ulong L2OffsetMask = 0x00ff_ffff_ffff_fe00UL;
    internal const ulong L2StandardReservedMask = 0x3f00_0000_0000_01feUL;
    internal const ulong RefcountTableOffsetMask = 0xffff_ffff_ffff_fe00UL;
    internal const ulong RefcountTableReservedMask = 0x1ffUL;
    internal const ulong SubclusterAllocMask = 0xffff_ffffUL;
    internal const ulong SubclusterZeroMask = 0xffff_ffff_0000_0000UL;

    private const int MaxBatchBytes = 4 << 20;
    private const int MaxBatchGap = 256 << 10;

    private readonly IStorage _storage;
    private readonly RepairMode _fix;
    private readonly long _maxArrayBytes;
    private readonly IProgress<double>? _progress;
    private readonly CheckResult _res = new();
    private CheckImage _img = null!;
    private RefcountArray _refs = null!;
    private long _nbClusters;          // clusters the comparison covers (grows like QEMU's array)
    private long _fileLength;
    private ulong[] _refcountTable = [];
    private long _refcountTableOffset;
    private bool _rebuild;
    private long _persistentCorruptions; // corruptions found while counting that a rebuild does not fix
    private readonly List<(long Start, long Count)> _structureIncrements = new();
    private bool _countingStructure;
    private bool _recordSnapshotTable;
    private ulong _maxReferencedEnd;

    // Regions referenced past the end of the file: new metadata written after them brings them
    // inside the file (reading zeros, as before), so a rewritten refcount structure counts them.
    private const int MaxPastEndRegions = 1 << 20;
    private const ulong MaxReachPastEnd = 64UL << 20;
    private readonly List<(ulong Offset, long Size, long Weight, bool Persistent)> _pastEndRegions = new();

    private readonly int _maxFindings;

    public CheckRun(IStorage storage, RepairMode fix, long maxArrayBytes, IProgress<double>? progress, int maxFindings = int.MaxValue)
    {
        _maxFindings = Math.Max(0, maxFindings);
        _storage = storage;
        _fix = fix;
        _maxArrayBytes = maxArrayBytes;
        _progress = progress;
    }

    private int ClusterBits => _img.ClusterBits;
    private int ClusterSize => _img.ClusterSize;
    private bool FixErrors => _fix == RepairMode.All;
    private bool FixLeaks => _fix != RepairMode.None;

    private sealed class CheckFailedException(string message) : Exception(message);

    public CheckResult Run()
    {
        _img = CheckImage.Read(_storage);
        _fileLength = _storage.Length;
        _res.TotalClusters = ((_img.VirtualSize / 512 * 512) + ClusterSize - 1) >> ClusterBits;
        try
        {
            var snapshots = ReadSnapshotTable(out long snapshotsSize);
            CheckRefcounts(snapshots, snapshotsSize);
            if (_snapshotCorruptions > 0 && FixErrors)
            {
                RewriteSnapshotTable();
                _res.CorruptionsFixed += _snapshotCorruptions;
                _snapshotCorruptions = 0;
            }
            _res.Corruptions += _snapshotCorruptions;
            if (_fix != RepairMode.None && _res.CheckErrors == 0 && _res.Corruptions == 0)
                MarkClean();
        }
        catch (CheckFailedException e)
        {
            _res.FailureMessage = e.Message;
        }
        _res.FindingList = _findings;
        return _res;
    }

    private readonly List<CheckFinding> _findings = new();

    private void Report(CheckFindingKind kind, long offset, string message, bool repaired = false)
    {
        if (_findings.Count < _maxFindings) _findings.Add(new CheckFinding(kind, offset, message, repaired));
        else _res.FindingsOmitted++;
    }

    private static string Hex(ulong v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);
    private static string Hex(long v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);

    /// <summary>Hex without "0x": how qemu-img prints whole L1/L2 entries.</summary>
    private static string BareHex(ulong v) => v.ToString("x", CultureInfo.InvariantCulture);

    /// <summary>
    /// How many times the structure being examined is referenced: identical L2 tables (or snapshot L1
    /// tables) are examined once and their effect counted this many times, as QEMU would by examining
    /// each reference (hostile images can repeat one table millions of times).
    /// </summary>
    private long _weight = 1;

    private void Corruption(CheckFindingKind kind, long offset, string message, bool persistent = true) =>
        Corruptions(kind, offset, message, _weight, persistent);

    private void Corruptions(CheckFindingKind kind, long offset, string message, long count, bool persistent = true)
    {
        _res.Corruptions += count;
        if (persistent) _persistentCorruptions += count;
        Report(kind, offset, count == 1 ? message : $"{message} ({count} times)");
    }

    private CheckFailedException Fail(string errnoText, CheckFindingKind kind, long offset, string message)
    {
        _res.CheckErrors++;
        Report(kind, offset, message);
        return new CheckFailedException(errnoText);
    }

    /// <summary>
    /// The check cannot go on because a structure cannot be read at all (qemu-img reports the reason
    /// and then "Check failed: " with the errno text): no finding, the reason goes to
    /// <see cref="CheckResult.FailureDetail"/>.
    /// </summary>
    private CheckFailedException FailOpen(string errnoText, string detail)
    {
        _res.CheckErrors++;
        _res.FailureDetail = detail;
        return new CheckFailedException(errnoText);
    }

    /// <summary>Reads exactly, zero-filling what lies past the end of the storage (as QEMU's block layer does).</summary>
    private void ReadZeroFilled(long offset, Span<byte> destination)
    {
        int got = 0;
        if (offset >= 0 && offset < _storage.Length)
        {
            while (got < destination.Length)
            {
                int n = _storage.Read(offset + got, destination[got..]);
                if (n <= 0) break;
                got += n;
            }
        }
        destination[got..].Clear();
    }

    /// <summary>
    /// Counts one reference to every host cluster that [offset, offset+size) touches. A region that
    /// runs a whole cluster or more past the end of the file is a corruption and is not counted (the
    /// last cluster of an image may legitimately be partly allocated).
    /// </summary>
    private void IncrementRange(ulong offset, long size, bool persistent = true)
    {
        if (size <= 0) return;
        ulong fileLength = (ulong)_fileLength;
        // Remember how far references reach (within reason: new metadata is placed after them, and
        // regions within the reach are brought inside the file by a rebuild). The reach is bounded by
        // the file's own size: a length or offset from the header must never size the repaired file.
        ulong reachLimit = fileLength + Math.Max(fileLength, MaxReachPastEnd);
        if (offset < reachLimit && (ulong)size <= reachLimit - offset && offset + (ulong)size > _maxReferencedEnd)
            _maxReferencedEnd = offset + (ulong)size;
        if (offset >= fileLength + (ulong)ClusterSize || (ulong)size >= fileLength + (ulong)ClusterSize - offset)
        {
            if (!_countingStructure && _pastEndRegions.Count < MaxPastEndRegions)
                _pastEndRegions.Add((offset, size, _weight, persistent));
            Corruption(CheckFindingKind.PastEndOfFile, offset > long.MaxValue ? -1 : (long)offset,
                $"counting reference for region exceeding the end of the file by one cluster or more: offset {Hex(offset)} size {Hex(size)}", persistent);
            return;
        }
        long first = (long)(offset >> ClusterBits);
        long last = (long)((offset + (ulong)size - 1) >> ClusterBits);
        if (last >= _nbClusters)
        {
            if (!_refs.TryEnsure(last + 1))
                throw Fail("Cannot allocate memory", CheckFindingKind.CheckError, (long)offset, "the refcount array would exceed the memory limit");
            _nbClusters = last + 1;
        }
        if (_countingStructure) _structureIncrements.Add((first, last - first + 1));
        if (_recordSnapshotTable) _snapshotTableIncrements.Add((first, last - first + 1));
        ulong max = _refs.MaxValue;
        ulong weight = (ulong)_weight;
        for (long k = first; k <= last; k++)
        {
            ulong r = _refs.Get(k);
            if (weight > max - r)
            {
                Corruptions(CheckFindingKind.RefcountOverflow, k << ClusterBits, $"overflow cluster offset={Hex(k << ClusterBits)}",
                    (long)(weight - (max - r)), persistent);
                _refs.Set(k, max);
                continue;
            }
            _refs.Set(k, r + weight);
        }
    }

    private readonly struct ReadWindow(int first, int end, long start, int length)
    {
        public readonly int First = first, End = end;
        public readonly long Start = start;
        public readonly int Length = length;
    }

    private readonly struct ReadBatchRange(int firstWindow, int endWindow)
    {
        public readonly int FirstWindow = firstWindow, EndWindow = endWindow;
    }

    /// <summary>
    /// Visits tables of one cluster each at the given offsets, reading neighbours together in large
    /// positional reads. <paramref name="offsets"/> must be sorted. A table repeated k times is visited
    /// once with weight k; tables wholly past the end of the file read as zeros, which reference
    /// nothing, and are not visited.
    /// </summary>
    private void VisitTables(long[] offsets, TableVisitor visitor, double progressStart = -1, double progressSpan = 0)
    {
        int cs = ClusterSize;
        int bufferSize = Math.Max(MaxBatchBytes, cs);
        long storageLength = _storage.Length;

        // Windows: runs of nearby tables read with one positional read each.
        // Plain arrays of our own structs, not List<ValueTuple<...>>: those generic instantiations
        // over value types cannot be precompiled (ReadyToRun) and cost JIT time on every run.
        var windows = new ReadWindow[offsets.Length];
        int windowCount = 0;
        int i = 0;
        while (i < offsets.Length && offsets[i] < storageLength)
        {
            long start = offsets[i];
            long end = start + cs;
            int j = i + 1;
            while (j < offsets.Length)
            {
                long o = offsets[j];
                if (o >= storageLength || o - start + cs > bufferSize || o - end > MaxBatchGap) break;
                end = Math.Max(end, o + cs);
                j++;
            }
            windows[windowCount++] = new ReadWindow(i, j, start, (int)(end - start));
            i = j;
        }

        // Batches of windows that fill one buffer; the next batch is read on another thread while
        // this one is examined (the reads are mostly page-cache copies: two cores halve the time).
        var batches = new ReadBatchRange[windowCount];
        int batchCount = 0;
        for (int w = 0; w < windowCount;)
        {
            int used = 0, v = w;
            while (v < windowCount && used + windows[v].Length <= bufferSize) used += windows[v++].Length;
            batches[batchCount++] = new ReadBatchRange(w, v);
            w = v;
        }
        if (batchCount == 0) return;

        byte[][] buffers = [ArrayPool<byte>.Shared.Rent(bufferSize), ArrayPool<byte>.Shared.Rent(bufferSize)];
        Task pending = Task.CompletedTask;
        try
        {
            void ReadBatch(int b, byte[] buffer)
            {
                int at = 0;
                for (int w = batches[b].FirstWindow; w < batches[b].EndWindow; w++)
                {
                    ReadZeroFilled(windows[w].Start, buffer.AsSpan(at, windows[w].Length));
                    at += windows[w].Length;
                }
            }

            ReadBatch(0, buffers[0]);
            for (int b = 0; b < batchCount; b++)
            {
                pending.GetAwaiter().GetResult();
                byte[] current = buffers[b & 1];
                if (b + 1 < batchCount)
                {
                    int next = b + 1;
                    pending = batchCount > 1 ? Task.Run(() => ReadBatch(next, buffers[next & 1])) : Task.CompletedTask;
                }
                int at = 0;
                for (int w = batches[b].FirstWindow; w < batches[b].EndWindow; w++)
                {
                    int first = windows[w].First, endIndex = windows[w].End, length = windows[w].Length;
                    long start = windows[w].Start;
                    var window = current.AsSpan(at, length);
                    for (int k = first; k < endIndex;)
                    {
                        int n = 1;
                        while (k + n < endIndex && offsets[k + n] == offsets[k]) n++;
                        visitor(k, window.Slice((int)(offsets[k] - start), cs), n);
                        k += n;
                    }
                    at += length;
                }
                if (progressStart >= 0 && _progress is not null)
                    _progress.Report(progressStart + progressSpan * (b + 1) / batchCount);
            }
            pending.GetAwaiter().GetResult();
        }
        finally
        {
            // Never hand a buffer back to the pool while the reader may still fill it.
            try { pending.Wait(); } catch (AggregateException) { }
            ArrayPool<byte>.Shared.Return(buffers[0]);
            ArrayPool<byte>.Shared.Return(buffers[1]);
        }
    }

    private delegate void TableVisitor(int index, Span<byte> table, long weight);

    /// <summary>Reads a whole table of big-endian 64-bit entries (zero-filled past the end of the file).</summary>
    private ulong[] ReadEntries(long offset, int count)
    {
        var entries = new ulong[count];
        const int chunkEntries = 8192;
        byte[] chunk = ArrayPool<byte>.Shared.Rent(chunkEntries * 8);
        try
        {
            for (int done = 0; done < count; done += chunkEntries)
            {
                int n = Math.Min(chunkEntries, count - done);
                var bytes = chunk.AsSpan(0, n * 8);
                ReadZeroFilled(offset + done * 8L, bytes);
                for (int i = 0; i < n; i++) entries[done + i] = BinaryPrimitives.ReadUInt64BigEndian(bytes[(i * 8)..]);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
        return entries;
    }

    private static ulong ReadL2(ReadOnlySpan<byte> table, int index, int entrySize) =>
        BinaryPrimitives.ReadUInt64BigEndian(table[(index * entrySize)..]);

    private void MarkClean()
    {
        if (_img.Version < 3) return;
        const ulong clear = CheckImage.IncompatDirty | CheckImage.IncompatCorrupt;
        if ((_img.IncompatibleFeatures & clear) == 0) return;
        _storage.Flush();
        Span<byte> field = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(field, _img.IncompatibleFeatures & ~clear);
        _storage.Write(CheckImage.IncompatibleFeaturesOffset, field);
        _storage.Flush();
        // Not a finding: qemu-img clears the bits silently too.
    }
}
