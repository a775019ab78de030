using System.Diagnostics;
using System.Globalization;
using System.Text;
using Qcow2.Cli.Framework;
using Qcow2.Cli.Output;
using Qcow2.Cli.Parsing;
using Qcow2.Volume;

namespace Qcow2.Cli.Commands;

/// <summary>
/// <c>qcow2 io</c>: a qemu-io-like runner. Each <c>-c</c> runs one command against the open image,
/// with qemu-io's number syntax and output lines. The exit code is 1 when any command failed
/// (including a pattern mismatch), as qemu-io does.
/// </summary>
internal sealed class IoCommand : Command
{
    /// <summary>qemu-io's default write pattern.</summary>
    internal const byte DefaultWritePattern = 0xcd;

    public override string Name => "io";
    public override string Summary => "Run qemu-io style commands (read, write, discard, flush, map) against an image";
    public override string Synopsis => "[--object OBJECTDEF] [--image-opts] [-f FMT] [-r] [-c CMD]... FILE";
    public override string Details =>
        "Commands:\n" +
        "  read [-P PATTERN] [-v] [-q] OFF LEN   read, optionally verify every byte is PATTERN, -v dumps\n" +
        "  write [-P PATTERN] [-z [-u]] [-c] [-q] OFF LEN\n" +
        "                                       write PATTERN (default 0xcd); -z zeroes (-u: may unmap);\n" +
        "                                       -c compressed (qcow2, whole clusters)\n" +
        "  discard [-q] OFF LEN                 discard a range\n" +
        "  flush                                flush to stable storage\n" +
        "  map                                  show which ranges this image (not its backing) allocates\n" +
        "Without -c, commands are read from standard input, one per line, until quit or end of input.\n" +
        "Numbers take k, M, G, T, P, E suffixes and 0x hex; patterns are C integers (0x.., 0..).\n\n" +
        ImageArguments.EncryptionHelp;

    public override IReadOnlyList<OptionSpec> Options { get; } = new[]
    {
        new OptionSpec('c', "cmd", true, "CMD", "command to run (repeatable)"),
        new OptionSpec('f', "format", true, "FMT", "image format (qcow2 or raw); probed when absent"),
        new OptionSpec('r', "read-only", false, null, "open the image read-only"),
        new OptionSpec('U', "force-share", false, null, "accepted for qemu-io compatibility"),
        ImageArguments.Object,
        ImageArguments.ImageOpts,
    };

    /// <summary>
    /// Opens the image, failing in qemu-io's words: "can't open device FILE: REASON" for a file
    /// name ("can't open: REASON" for an option string), where REASON is what qemu-img would put
    /// after "Could not open 'FILE': " (or the whole message when the file itself is missing).
    /// </summary>
    private static IDiskImage OpenAsQemuIo(ParsedArgs args, SecretStore secrets)
    {
        string argument = args.Positionals[0];
        bool imageOpts = args.Has("image-opts");
        string prefix = imageOpts ? "can't open: " : $"can't open device {argument}: ";
        try
        {
            var spec = ImageArguments.Image(args, argument, args.Get("format"), imageOpts);
            return ImageOpener.Open(spec, secrets, readOnly: args.Has("read-only"), needsData: true);
        }
        catch (CommandFailedException e)
        {
            throw new CommandFailedException(prefix + (e.OpenReason ?? e.Message), e.ExitCode, e) { Hint = e.Hint };
        }
    }

    public override int Execute(ParsedArgs args, CliContext context)
    {
        if (ImageArguments.LoadSecrets(args, context) is not { } secrets) return ExitCodes.Success;
        RequirePositionals(args, 1, 1, "one image file name");
        // qemu-io's wording (qemu-img says --format).
        if (args.Has("image-opts") && args.Has("format")) throw new CommandFailedException("--image-opts and -f are mutually exclusive");
        using var image = OpenAsQemuIo(args, secrets);
        var runner = new IoRunner(image, context.Out);
        bool failed = false;
        var commands = args.GetAll("cmd");
        if (commands.Count > 0)
        {
            foreach (var cmd in commands)
                if (!runner.Run(cmd)) failed = true;
        }
        else
        {
            // No -c: read commands from stdin, as qemu-io's interactive mode does.
            while (true)
            {
                if (context.OutputIsTerminal) { context.Out.Write("qcow2 io> "); context.Out.Flush(); }
                string? line = context.Input.ReadLine();
                if (line is null || line.Trim() is "quit" or "q" or "exit") break;
                if (!runner.Run(line)) failed = true;
                context.Out.Flush();
            }
        }
        image.Flush();
        return failed ? ExitCodes.Failure : ExitCodes.Success;
    }
}

/// <summary>Runs qemu-io command lines against one image.</summary>
internal sealed class IoRunner
{
    private readonly IDiskImage _image;
    private readonly TextWriter _out;

    public IoRunner(IDiskImage image, TextWriter output)
    {
        _image = image;
        _out = output;
    }

    /// <summary>Runs one command line; false when it failed.</summary>
    public bool Run(string commandLine)
    {
        var words = commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (words.Length == 0) return true;
        try
        {
            return words[0] switch
            {
                "read" or "r" => Read(words),
                "write" or "w" => Write(words),
                "discard" or "d" => Discard(words),
                "flush" or "f" => Flush(),
                "map" => Map(),
                "help" => Help(),
                _ => Fail($"command \"{words[0]}\" not found"),
            };
        }
        catch (Exception e) when (e is IOException or ArgumentException or NotSupportedException or InvalidOperationException or InvalidDataException)
        {
            return Fail($"{words[0]} failed: {CliApp.MessageOf(e).ReplaceLineEndings(" ")}");
        }
    }

    private bool Help()
    {
        _out.Write("read [-P PATTERN] [-v] [-q] OFF LEN\nwrite [-P PATTERN] [-z [-u]] [-c] [-q] OFF LEN\ndiscard [-q] OFF LEN\nflush\nmap\nhelp\nquit\n");
        return true;
    }

    private bool Fail(string message)
    {
        _out.Write(message + "\n");
        return false;
    }

    /// <summary>Splits flags from the two numeric arguments; null (after printing why) on error.</summary>
    private (Dictionary<char, string?> Flags, long Offset, long Length)? ParseArgs(string[] words, string flagsWithValue, string flags)
    {
        var f = new Dictionary<char, string?>();
        var rest = new List<string>();
        for (int i = 1; i < words.Length; i++)
        {
            string w = words[i];
            if (w.Length > 1 && w[0] == '-' && rest.Count == 0)
            {
                for (int j = 1; j < w.Length; j++)
                {
                    char c = w[j];
                    if (flagsWithValue.Contains(c))
                    {
                        string? v = j + 1 < w.Length ? w[(j + 1)..] : (i + 1 < words.Length ? words[++i] : null);
                        if (v is null) { Fail($"{words[0]}: option requires an argument -- '{c}'"); return null; }
                        f[c] = v;
                        break;
                    }
                    if (!flags.Contains(c)) { Fail($"{words[0]}: invalid option -- '{c}'"); return null; }
                    f[c] = null;
                }
                continue;
            }
            rest.Add(w);
        }
        if (rest.Count != 2) { Fail($"bad number of arguments to {words[0]}, expected 2, got {rest.Count}"); return null; }
        if (!SizeParser.TryParseIoNumber(rest[0], out long off, out var err)) { Fail(err!); return null; }
        if (!SizeParser.TryParseIoNumber(rest[1], out long len, out err)) { Fail(err!); return null; }
        if (len > int.MaxValue) { Fail($"length cannot exceed {int.MaxValue}, cannot {words[0]} {len} bytes"); return null; }
        return (f, off, len);
    }

    private bool CheckRange(string op, long offset, long length)
    {
        if (offset > _image.Size || length > _image.Size - offset)
            return Fail($"{op} failed: Input/output error");
        return true;
    }

    private bool Read(string[] words)
    {
        var parsed = ParseArgs(words, "P", "vqC");
        if (parsed is not { } p) return false;
        byte? pattern = null;
        if (p.Flags.TryGetValue('P', out var ps))
        {
            if (!PatternParser.TryParse(ps!, out byte pb)) return Fail($"{ps} is not a valid pattern byte");
            pattern = pb;
        }
        if (!CheckRange("read", p.Offset, p.Length)) return false;
        var buffer = new byte[p.Length];
        var sw = Stopwatch.StartNew();
        _image.Read(p.Offset, buffer);
        sw.Stop();
        bool ok = true;
        if (pattern is { } pat && buffer.AsSpan().IndexOfAnyExcept(pat) >= 0)
        {
            _out.Write($"Pattern verification failed at offset {p.Offset}, {p.Length} bytes\n");
            ok = false;
        }
        if (p.Flags.ContainsKey('v')) _out.Write(HexDump(buffer, p.Offset));
        if (!p.Flags.ContainsKey('q'))
        {
            _out.Write($"read {p.Length}/{p.Length} bytes at offset {p.Offset}\n");
            _out.Write(TimingLine(p.Length, 1, sw.Elapsed));
        }
        return ok;
    }

    private bool Write(string[] words)
    {
        var parsed = ParseArgs(words, "P", "zucqfn");
        if (parsed is not { } p) return false;
        byte pattern = IoCommand.DefaultWritePattern;
        if (p.Flags.TryGetValue('P', out var ps))
        {
            if (!PatternParser.TryParse(ps!, out pattern)) return Fail($"{ps} is not a valid pattern byte");
        }
        bool zero = p.Flags.ContainsKey('z');
        bool compressed = p.Flags.ContainsKey('c');
        if (p.Flags.ContainsKey('u') && !zero) return Fail("-u requires -z to be specified");
        if (zero && p.Flags.ContainsKey('P')) return Fail("-z and -P cannot be specified at the same time");
        if (zero && compressed) return Fail("-c and -z cannot be specified at the same time");
        if (!CheckRange("write", p.Offset, p.Length)) return false;
        var sw = Stopwatch.StartNew();
        if (zero)
        {
            _image.WriteZeroes(p.Offset, p.Length, unmap: p.Flags.ContainsKey('u'));
        }
        else
        {
            var buffer = new byte[p.Length];
            buffer.AsSpan().Fill(pattern);
            if (compressed)
            {
                if (_image is not Qcow2Image q) return Fail("write failed: Operation not supported");
                q.WriteCompressed(p.Offset, buffer);
            }
            else
            {
                _image.Write(p.Offset, buffer);
            }
        }
        sw.Stop();
        if (!p.Flags.ContainsKey('q'))
        {
            _out.Write($"wrote {p.Length}/{p.Length} bytes at offset {p.Offset}\n");
            _out.Write(TimingLine(p.Length, 1, sw.Elapsed));
        }
        return true;
    }

    private bool Discard(string[] words)
    {
        var parsed = ParseArgs(words, "", "q");
        if (parsed is not { } p) return false;
        if (!CheckRange("discard", p.Offset, p.Length)) return false;
        var sw = Stopwatch.StartNew();
        _image.Discard(p.Offset, p.Length);
        sw.Stop();
        if (!p.Flags.ContainsKey('q'))
        {
            _out.Write($"discard {p.Length}/{p.Length} bytes at offset {p.Offset}\n");
            _out.Write(TimingLine(p.Length, 1, sw.Elapsed));
        }
        return true;
    }

    private bool Flush()
    {
        _image.Flush();
        return true;
    }

    /// <summary>qemu-io's map: ranges allocated in this image itself (not in its backing files).</summary>
    private bool Map()
    {
        long offset = 0;
        long size = _image.Size;
        while (offset < size)
        {
            bool allocated = IsAllocatedHere(_image.GetBlockStatus(offset, size - offset));
            long start = offset;
            while (offset < size)
            {
                var st = _image.GetBlockStatus(offset, size - offset);
                if (IsAllocatedHere(st) != allocated) break;
                offset += Math.Max(1, Math.Min(st.Length, size - offset));
            }
            long len = offset - start;
            _out.Write(string.Create(CultureInfo.InvariantCulture,
                $"{NumberFormat.IoSize(len)} (0x{len:x}) bytes {(allocated ? "    allocated" : "not allocated")} at offset {NumberFormat.IoSize(start)} (0x{start:x})\n"));
        }
        return true;
    }

    private static bool IsAllocatedHere(BlockStatus st) =>
        (st.Flags & BlockStatusFlags.Allocated) != 0 && st.Depth == 0;

    /// <summary>qemu-io's -v dump: 16 bytes a line, "%08x:  " then hex then the printable characters.</summary>
    internal static string HexDump(ReadOnlySpan<byte> data, long baseOffset)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        for (int i = 0; i < data.Length; i += 16)
        {
            int n = Math.Min(16, data.Length - i);
            sb.Append((baseOffset + i).ToString("x8", inv)).Append(":  ");
            for (int j = 0; j < n; j++) sb.Append(data[i + j].ToString("x2", inv)).Append(' ');
            sb.Append(' ');
            for (int j = 0; j < n; j++)
            {
                byte c = data[i + j];
                sb.Append(c >= 0x20 && c < 0x7f ? (char)c : '.');
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>qemu-io's statistics line: "4 KiB, 1 ops; 00.00 sec (62.198 MiB/sec and 15922.8062 ops/sec)".</summary>
    internal static string TimingLine(long bytes, int ops, TimeSpan elapsed)
    {
        double secs = Math.Max(elapsed.TotalSeconds, 1e-9);
        return NumberFormat.IoSize(bytes) + ", " + ops.ToString(CultureInfo.InvariantCulture) + " ops; " +
               TimeText(elapsed) + " (" + NumberFormat.IoSize(bytes / secs) + "/sec and " +
               NumberFormat.Fixed(ops / secs, 4) + " ops/sec)\n";
    }

    /// <summary>"SS.cc sec", "MM:SS.cc" or "HH:MM:SS.cc", as qemu-io prints durations.</summary>
    internal static string TimeText(TimeSpan t)
    {
        var inv = CultureInfo.InvariantCulture;
        long cs = (long)(t.TotalMilliseconds / 10);
        long sec = cs / 100 % 60, min = cs / 6000 % 60, hours = cs / 360000;
        string frac = (cs % 100).ToString("00", inv);
        if (hours > 0) return $"{hours.ToString("00", inv)}:{min.ToString("00", inv)}:{sec.ToString("00", inv)}.{frac}";
        if (min > 0) return $"{min.ToString("00", inv)}:{sec.ToString("00", inv)}.{frac}";
        return $"{sec.ToString("00", inv)}.{frac} sec";
    }
}
