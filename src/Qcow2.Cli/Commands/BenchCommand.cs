using System.Diagnostics;
using System.Globalization;
using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Cli.Parsing;
using Qcow2.Volume;
using Qcow2.Volume.Caching;

namespace Qcow2.Cli.Commands;

/// <summary>
/// <c>qcow2 bench</c>: qemu-img bench's request loop (same defaults and summary lines), then the
/// metadata cache statistics of a qcow2 image.
/// </summary>
internal sealed class BenchCommand : Command
{
    public override string Name => "bench";
    public override string Summary => "Run a simple read or write benchmark and report the metadata cache statistics";
    public override string Synopsis =>
        "[--object OBJECTDEF] [--image-opts] [-c COUNT] [-d DEPTH] [-f FMT] [-s SIZE] [-S STEP] [-w] [-t CACHE] [--pattern=N] [--flush-interval=N] [-o OFFSET|CACHE-OPTIONS] [-q] FILE";
    public override string Details =>
        "Defaults as qemu-img: 75000 requests of 4096 bytes, 64 in flight, step = size, offset 0.\n" +
        "-o takes an offset (as qemu-img) or cache options: l2-cache-size=SIZE,\n" +
        "l2-cache-entry-size=SIZE,refcount-cache-size=SIZE. --object is accepted here too (qemu-img\n" +
        "bench has no --object, so it cannot open encrypted images).\n\n" + ImageArguments.EncryptionHelp;

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('c', "count", true, "COUNT", "number of requests (default 75000)"),
        new OptionSpec('d', "depth", true, "DEPTH", "requests in flight (default 64)"),
        new OptionSpec('f', "format", true, "FMT", "image format; probed when absent"),
        new OptionSpec('s', "size", true, "SIZE", "bytes per request (default 4096)"),
        new OptionSpec('S', "step", true, "STEP", "offset step between requests (default SIZE)"),
        new OptionSpec('w', "write", false, null, "write instead of read"),
        new OptionSpec('t', "cache", true, "CACHE", "accepted for qemu-img compatibility"),
        new OptionSpec('i', "aio", true, "AIO", "accepted for qemu-img compatibility"),
        new OptionSpec('n', "native", false, null, "accepted for qemu-img compatibility"),
        new OptionSpec('\0', "pattern", true, "N", "byte written with -w (default 0)"),
        new OptionSpec('\0', "flush-interval", true, "N", "flush after every N writes"),
        new OptionSpec('\0', "no-drain", false, null, "accepted for qemu-img compatibility"),
        new OptionSpec('o', "offset", true, "OFFSET|OPTIONS", "start offset, or cache options"),
        new OptionSpec('q', "quiet", false, null, "print nothing"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-img compatibility"),
        ImageArguments.Object,
        ImageArguments.ImageOpts,
    };

    public override int Execute(ParsedArgs args, CliContext context)
    {
        if (ImageArguments.LoadSecrets(args, context) is not { } secrets) return ExitCodes.Success;
        RequirePositionals(args, 1, 1, "one image file name");
        int count = ParseInt(args.Get("count"), 75000, "request count");
        int depth = ParseInt(args.Get("depth"), 64, "queue depth");
        if (depth < 1) throw new UsageException("Invalid queue depth specified");
        long size = args.Get("size") is { } ss ? SizeParser.ParseSize(ss, "buffer size") : 4096;
        if (size < 1 || size > int.MaxValue) throw new UsageException("Invalid buffer size specified");
        long step = args.Get("step") is { } st ? SizeParser.ParseSize(st, "step size") : size;
        bool write = args.Has("write");
        byte pattern = 0;
        if (args.Get("pattern") is { } ps && !PatternParser.TryParse(ps, out pattern))
            throw new UsageException("Invalid pattern byte specified");
        int flushInterval = ParseInt(args.Get("flush-interval"), 0, "flush interval");
        if (flushInterval > 0 && !write) throw new UsageException("--flush-interval is only available in write tests");
        if (flushInterval > 0 && flushInterval < depth) throw new UsageException("Flush interval can't be smaller than depth");

        long offset = 0;
        var qopts = Qcow2OpenOptions.Default;
        foreach (var o in args.GetAll("offset"))
        {
            if (!o.Contains('='))
            {
                offset = SizeParser.ParseSize(o, "offset");
                continue;
            }
            var list = OptionList.Parse(o);
            list.RejectUnknown(new[] { "l2-cache-size", "l2-cache-entry-size", "refcount-cache-size" }, "");
            foreach (var (k, v) in list.Items)
            {
                long value = SizeParser.ParseSize(v ?? "", k);
                qopts = k switch
                {
                    "l2-cache-size" => qopts with { L2CacheSize = value },
                    "l2-cache-entry-size" => qopts with { L2CacheEntrySize = checked((int)value) },
                    _ => qopts with { RefcountCacheSize = value },
                };
            }
        }

        var spec = ImageArguments.Image(args, args.Positionals[0], args.Get("format"));
        using var image = ImageOpener.Open(spec, secrets, readOnly: !write, needsData: true, qopts);
        if (size > image.Size) throw new CommandFailedException("Buffer size is larger than the image");
        bool quiet = args.Has("quiet");
        if (!quiet)
        {
            context.Out.Write(string.Create(CultureInfo.InvariantCulture,
                $"Sending {count} {(write ? "write" : "read")} requests, {size} bytes each, {depth} in parallel (starting at offset {offset}, step size {step})\n"));
            if (flushInterval > 0) context.Out.Write(string.Create(CultureInfo.InvariantCulture, $"Sending flush every {flushInterval} requests\n"));
            context.Out.Flush();
        }

        var elapsed = RunRequests(image, count, depth, (int)size, step, offset, write, pattern, flushInterval);
        if (!quiet)
        {
            context.Out.Write("Run completed in " + NumberFormat.Fixed(elapsed.TotalSeconds, 3) + " seconds.\n");
            if (image is Qcow2Image q)
            {
                context.Out.Write(CacheLine("L2 cache", q.L2CacheStatistics));
                context.Out.Write(CacheLine("Refcount cache", q.RefcountCacheStatistics));
            }
        }
        return ExitCodes.Success;
    }

    internal static string CacheLine(string name, CacheStatistics s)
    {
        long lookups = s.Hits + s.Misses;
        string ratio = lookups == 0 ? "n/a" : NumberFormat.Fixed(s.Hits * 100.0 / lookups, 2) + "%";
        return string.Create(CultureInfo.InvariantCulture,
            $"{name}: {s.Hits} hits, {s.Misses} misses ({ratio} hit rate), {s.Evictions} evictions, {s.UsedBytes}/{s.CapacityBytes} bytes used\n");
    }

    private static int ParseInt(string? text, int defaultValue, string what)
    {
        if (text is null) return defaultValue;
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int v))
            throw new UsageException($"Invalid {what} specified");
        return v;
    }

    /// <summary>Issues <paramref name="count"/> requests with <paramref name="depth"/> in flight.</summary>
    private static TimeSpan RunRequests(IDiskImage image, int count, int depth, int size, long step, long start,
        bool write, byte pattern, int flushInterval)
    {
        long next = 0;
        long completedWrites = 0;
        long imageSize = image.Size;
        long wrapSpan = step == 0 ? 1 : Math.Max(1, (imageSize - size - start) / step + 1);
        var sw = Stopwatch.StartNew();
        var workers = new Task[Math.Min(depth, Math.Max(count, 1))];
        for (int w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(async () =>
            {
                var buffer = new byte[size];
                if (write) buffer.AsSpan().Fill(pattern);
                while (true)
                {
                    long i = Interlocked.Increment(ref next) - 1;
                    if (i >= count) break;
                    // Offsets wrap to the start when they would run past the end of the image.
                    long offset = start + (i % wrapSpan) * step;
                    if (write)
                    {
                        await image.WriteAsync(offset, buffer).ConfigureAwait(false);
                        long done = Interlocked.Increment(ref completedWrites);
                        if (flushInterval > 0 && done % flushInterval == 0) await image.FlushAsync().ConfigureAwait(false);
                    }
                    else
                    {
                        await image.ReadAsync(offset, buffer).ConfigureAwait(false);
                    }
                }
            });
        }
        Task.WaitAll(workers);
        if (write) image.Flush();
        sw.Stop();
        return sw.Elapsed;
    }
}
