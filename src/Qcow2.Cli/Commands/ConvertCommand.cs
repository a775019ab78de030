using System.Buffers;
using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Cli.Parsing;
using Qcow2.Volume;

namespace Qcow2.Cli.Commands;

/// <summary>
/// <c>qcow2 convert</c>: copies one or more sources (concatenated) into a new or existing image,
/// skipping ranges that read as zeroes, compressing with -c, with -m parallel workers.
/// </summary>
internal sealed class ConvertCommand : Command
{
    public override string Name => "convert";
    public override string Summary => "Convert, copy or compress images (several sources are concatenated)";
    public override string Synopsis =>
        "[-f FMT] [-O FMT] [-o OPTIONS] [-c] [-p] [-m N] [-W] [-n] [-S SIZE] [--target-is-zero] [-B BACKING [-F FMT]] [-l snapshot.name=NAME] [-q] SRC... DST";
    public override string Details =>
        "Ranges that read as zeroes are not written (with -S SIZE, default 4k, zero runs of at least\n" +
        "SIZE inside data are skipped too; -S 0 writes everything). -n writes into an existing target;\n" +
        "add --target-is-zero when that target already reads as zeroes. -B makes the target an\n" +
        "overlay of BACKING and copies only what the sources allocate above their own backing files.";

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('f', "format", true, "FMT", "format of the sources; probed when absent"),
        new OptionSpec('O', "output-format", true, "FMT", "format of the target: raw (default) or qcow2"),
        new OptionSpec('o', "options", true, "OPTIONS", "target creation options (as create -o)"),
        new OptionSpec('c', "compress", false, null, "write compressed clusters (qcow2 target)"),
        new OptionSpec('p', "progress", false, null, "show progress on a terminal"),
        new OptionSpec('m', "parallel", true, "N", "parallel workers (default 8, 1 to 16)"),
        new OptionSpec('W', "out-of-order", false, null, "allow out-of-order writes (always done here)"),
        new OptionSpec('n', "no-create", false, null, "do not create the target; write into the existing one"),
        new OptionSpec('S', "sparse-size", true, "SIZE", "minimum zero run to skip (default 4k; 0 disables)"),
        new OptionSpec('\0', "target-is-zero", false, null, "with -n: the target already reads as zeroes"),
        new OptionSpec('B', "backing", true, "BACKING", "backing file of the target"),
        new OptionSpec('F', "backing-format", true, "FMT", "format of BACKING"),
        new OptionSpec('l', "snapshot", true, "snapshot.name=NAME", "convert an internal snapshot of the source"),
        new OptionSpec('q', "quiet", false, null, "quiet"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-img compatibility"),
        new OptionSpec('t', "cache", true, "MODE", "accepted for qemu-img compatibility"),
        new OptionSpec('T', "source-cache", true, "MODE", "accepted for qemu-img compatibility"),
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        if (args.Positionals.Count < 2) throw new UsageException("Expecting a source and a target file name");
        var sources = args.Positionals.GetRange(0, args.Positionals.Count - 1);
        string target = args.Positionals[^1];
        string outFormat = ImageOpener.CheckFormat(args.Get("output-format") ?? "raw");
        bool compress = args.Has("compress");
        bool noCreate = args.Has("no-create");
        bool targetIsZero = args.Has("target-is-zero");
        if (targetIsZero && !noCreate) throw new UsageException("--target-is-zero requires use of -n flag");
        int parallel = 8;
        if (args.Get("parallel") is { } m && (!int.TryParse(m, out parallel) || parallel < 1 || parallel > 16))
            throw new UsageException("Invalid number of coroutines. Allowed number of coroutines is between 1 and 16");
        long sparse = 4096;
        if (args.Get("sparse-size") is { } sps)
        {
            sparse = SizeParser.ParseSize(sps, "buffer size for sparse output");
            if (sparse != 0 && (sparse % 512 != 0 || sparse > 32L << 20))
                throw new UsageException("Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 32M.");
        }
        if (compress && outFormat != "qcow2") throw new CommandFailedException("Compression not supported for this file format");
        string? snapshot = null;
        if (args.Get("snapshot") is { } snap)
        {
            snapshot = snap.StartsWith("snapshot.name=", StringComparison.Ordinal) ? snap["snapshot.name=".Length..]
                     : snap.StartsWith("snapshot.id=", StringComparison.Ordinal) ? snap["snapshot.id=".Length..]
                     : snap;
            if (sources.Count != 1) throw new UsageException("No support for concatenating multiple snapshot");
        }

        var options = OptionList.Parse(args.GetAll("options"));
        if (options.HelpRequested)
        {
            context.Out.Write(CreateSettings.HelpText(outFormat));
            return ExitCodes.Success;
        }

        var opened = new List<IDiskImage>();
        IDiskImage? targetImage = null;
        try
        {
            foreach (var s in sources)
            {
                var img = ImageOpener.Open(s, args.Get("format"), readOnly: true);
                opened.Add(img);
            }
            var inputs = new List<IDiskImage>(opened);
            if (snapshot is not null)
            {
                if (inputs[0] is not Qcow2Image q) throw new CommandFailedException("Failed to load snapshot: the source has no snapshots");
                inputs[0] = q.OpenSnapshot(snapshot);
                opened.Add(inputs[0]);
            }
            long total = 0;
            foreach (var i in inputs) total = checked(total + i.Size);

            var settings = CreateSettings.FromOptions(outFormat, options);
            if (args.Get("backing") is { } b) settings = settings with { BackingFile = b };
            if (args.Get("backing-format") is { } bf) settings = settings with { BackingFormat = ImageOpener.CheckFormat(bf) };
            bool hasTargetBacking = settings.BackingFile is not null;
            if (hasTargetBacking && outFormat != "qcow2")
                throw new UsageException($"Backing file not supported for file format '{outFormat}'");
            if (hasTargetBacking && settings.BackingFormat is null)
            {
                string full = ImageOpener.FullBackingName(target, settings.BackingFile!);
                settings = settings with { BackingFormat = File.Exists(full) ? ImageOpener.Probe(full) : null };
            }

            bool fresh = false;
            if (!noCreate)
            {
                ImageFactory.Create(target, settings, settings.Size ?? total);
                fresh = true;
            }
            targetImage = ImageOpener.Open(target, noCreate ? args.Get("output-format") : outFormat, readOnly: false);
            if (targetImage.Size < total)
                throw new CommandFailedException("Target image is too small for the source data");

            // A freshly created target reads as zeroes unless it has a backing file.
            bool targetReadsZero = (fresh && !hasTargetBacking) || targetIsZero;
            var job = new ConvertJob(inputs, targetImage, compress, sparse, targetReadsZero, hasTargetBacking, parallel);
            using (var bar = ProgressBar.Create(context, args.Has("progress") && !args.Has("quiet"), total, "convert"))
            {
                job.Run(bar);
            }
            targetImage.Flush();
            return ExitCodes.Success;
        }
        finally
        {
            targetImage?.Dispose();
            for (int i = opened.Count - 1; i >= 0; i--) opened[i].Dispose();
        }
    }
}

/// <summary>
/// The copy loop of convert: the target range is cut into chunks (a cluster when compressing,
/// else 1 MiB), and <c>-m</c> workers copy chunks in parallel. A chunk that the sources report as
/// zeroes is skipped when the target already reads as zeroes, else zero-written; data is read,
/// scanned for zero runs of at least the sparse size, and the rest written (or compressed).
/// </summary>
internal sealed class ConvertJob
{
    private readonly IReadOnlyList<IDiskImage> _sources;
    private readonly long[] _starts;
    private readonly IDiskImage _target;
    private readonly bool _compress;
    private readonly long _sparse;
    private readonly bool _targetReadsZero;
    private readonly bool _onlyTopLayer;
    private readonly int _parallel;
    private readonly int _chunk;
    private readonly long _total;

    public ConvertJob(IReadOnlyList<IDiskImage> sources, IDiskImage target, bool compress, long sparse,
        bool targetReadsZero, bool onlyTopLayer, int parallel)
    {
        _sources = sources;
        _starts = new long[sources.Count];
        long pos = 0;
        for (int i = 0; i < sources.Count; i++) { _starts[i] = pos; pos += sources[i].Size; }
        _total = pos;
        _target = target;
        _compress = compress;
        _sparse = sparse;
        _targetReadsZero = targetReadsZero;
        _onlyTopLayer = onlyTopLayer;
        _parallel = parallel;
        _chunk = compress && target is Qcow2Image q ? q.Info.ClusterSize : 1 << 20;
    }

    public void Run(ProgressBar progress)
    {
        long chunks = (_total + _chunk - 1) / _chunk;
        var po = new ParallelOptions { MaxDegreeOfParallelism = _parallel };
        Parallel.For(0L, chunks, po, () => ArrayPool<byte>.Shared.Rent(_chunk), (index, _, buffer) =>
        {
            long start = index * _chunk;
            int length = (int)Math.Min(_chunk, _total - start);
            CopyChunk(start, length, buffer);
            progress.Advance(length);
            return buffer;
        }, buffer => ArrayPool<byte>.Shared.Return(buffer));
    }

    private void CopyChunk(long start, int length, byte[] buffer)
    {
        var span = buffer.AsSpan(0, length);
        // Status of the chunk across the sources: all zero? anything to copy at all?
        bool allZero = true;
        bool anyToCopy = false;
        for (long pos = start; pos < start + length;)
        {
            int si = SourceIndex(pos);
            var src = _sources[si];
            long local = pos - _starts[si];
            long avail = Math.Min(start + length - pos, src.Size - local);
            var st = src.GetBlockStatus(local, avail);
            long len = Math.Clamp(st.Length, 1, avail);
            bool zero = (st.Flags & BlockStatusFlags.Zero) != 0;
            bool inTop = (st.Flags & BlockStatusFlags.Allocated) != 0 && st.Depth == 0;
            if (!_onlyTopLayer || inTop)
            {
                anyToCopy = true;
                if (!zero) allZero = false;
            }
            pos += len;
        }
        if (!anyToCopy) return;
        if (allZero && !_onlyTopLayer)
        {
            if (!_targetReadsZero) _target.WriteZeroes(start, length);
            return;
        }

        ReadSources(start, span);
        if (_compress)
        {
            if (span.IndexOfAnyExcept((byte)0) < 0)
            {
                if (!_targetReadsZero || _onlyTopLayer) _target.WriteZeroes(start, length);
                return;
            }
            if (length == _chunk)
            {
                ((Qcow2Image)_target).WriteCompressed(start, span);
                return;
            }
            // The last partial cluster cannot be compressed: write it plainly.
            _target.Write(start, span);
            return;
        }
        WriteSparse(start, span);
    }

    /// <summary>Writes the data, leaving out zero runs of at least the sparse size.</summary>
    private void WriteSparse(long start, ReadOnlySpan<byte> data)
    {
        bool skipZeroes = _targetReadsZero && !_onlyTopLayer;
        if (_sparse == 0)
        {
            _target.Write(start, data);
            return;
        }
        int block = (int)Math.Min(_sparse, data.Length);
        int pos = 0;
        while (pos < data.Length)
        {
            // A run of blocks that are all zero, or not.
            int n = Math.Min(block, data.Length - pos);
            bool zero = data.Slice(pos, n).IndexOfAnyExcept((byte)0) < 0;
            int runStart = pos;
            pos += n;
            while (pos < data.Length)
            {
                int m = Math.Min(block, data.Length - pos);
                bool z = data.Slice(pos, m).IndexOfAnyExcept((byte)0) < 0;
                if (z != zero) break;
                pos += m;
            }
            var run = data[runStart..pos];
            if (!zero) _target.Write(start + runStart, run);
            else if (!skipZeroes) _target.WriteZeroes(start + runStart, run.Length);
        }
    }

    private void ReadSources(long start, Span<byte> destination)
    {
        long pos = start;
        int done = 0;
        while (done < destination.Length)
        {
            int si = SourceIndex(pos);
            var src = _sources[si];
            long local = pos - _starts[si];
            int n = (int)Math.Min(destination.Length - done, src.Size - local);
            src.Read(local, destination.Slice(done, n));
            done += n;
            pos += n;
        }
    }

    private int SourceIndex(long pos)
    {
        for (int i = _starts.Length - 1; i >= 0; i--)
            if (pos >= _starts[i] && _sources[i].Size > 0) return i;
        return 0;
    }
}
