using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Qcow2.Cli.Output;

/// <summary>
/// The -p progress bar: percent, bar, rate and time left, redrawn in place on stderr at most ten
/// times a second. It draws only when stderr is a terminal; otherwise every call does nothing,
/// so scripts and tests see clean output. Thread-safe: workers may report concurrently.
/// </summary>
internal sealed class ProgressBar : IDisposable
{
    private readonly TextWriter? _writer;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly object _gate = new();
    private readonly string _label;
    private long _total;
    private long _done;
    private long _lastDrawTicks = long.MinValue;
    private bool _drawn;
    private long _lastDrawnDone = -1;

    /// <param name="writer">Where to draw, or null for a silent bar.</param>
    /// <param name="total">Units of work (bytes) in total.</param>
    /// <param name="label">Text shown before the bar.</param>
    public ProgressBar(TextWriter? writer, long total, string label = "")
    {
        _writer = writer;
        _total = Math.Max(total, 0);
        _label = label;
    }

    /// <summary>A bar that draws on the context's stderr only when enabled and stderr is a terminal.</summary>
    public static ProgressBar Create(Framework.CliContext context, bool enabled, long total, string label = "") =>
        new(enabled && context.ErrorIsTerminal ? context.Error : null, total, label);

    public bool IsVisible => _writer is not null;

    public void SetTotal(long total) { lock (_gate) _total = Math.Max(total, 0); }

    /// <summary>Adds finished work.</summary>
    public void Advance(long units)
    {
        if (_writer is null) return;
        lock (_gate)
        {
            _done += units;
            MaybeDraw(force: false);
        }
    }

    /// <summary>Sets finished work to an absolute amount.</summary>
    public void Report(long done)
    {
        if (_writer is null) return;
        lock (_gate)
        {
            _done = done;
            MaybeDraw(force: false);
        }
    }

    private void MaybeDraw(bool force)
    {
        long now = _clock.ElapsedTicks;
        if (!force && _lastDrawTicks != long.MinValue && now - _lastDrawTicks < Stopwatch.Frequency / 10) return;
        _lastDrawTicks = now;
        _lastDrawnDone = _done;
        _writer!.Write("\r" + Render(_done, _total, _clock.Elapsed, _label));
        _writer.Flush();
        _drawn = true;
    }

    /// <summary>The bar's text for the given state (no carriage return).</summary>
    internal static string Render(long done, long total, TimeSpan elapsed, string label)
    {
        var inv = CultureInfo.InvariantCulture;
        double fraction = total <= 0 ? 1.0 : Math.Clamp((double)done / total, 0, 1);
        const int width = 30;
        int filled = (int)(fraction * width);
        var sb = new StringBuilder();
        if (label.Length > 0) sb.Append(label).Append(' ');
        sb.Append(NumberFormat.Fixed(fraction * 100, 2).PadLeft(6)).Append("% [")
          .Append('#', filled).Append('.', width - filled).Append("] ");
        double seconds = elapsed.TotalSeconds;
        double rate = seconds > 0 ? done / seconds : 0;
        sb.Append(NumberFormat.IoSize(rate)).Append("/s");
        if (rate > 0 && done < total)
        {
            var left = TimeSpan.FromSeconds(Math.Min((total - done) / rate, 359999));
            sb.Append(", ").Append(((int)left.TotalHours).ToString("00", inv)).Append(':')
              .Append(left.Minutes.ToString("00", inv)).Append(':').Append(left.Seconds.ToString("00", inv)).Append(" left");
        }
        sb.Append("   ");
        return sb.ToString();
    }

    /// <summary>An <see cref="IProgress{T}"/> taking the completed fraction (0 to 1) of the total, or null when silent.</summary>
    public IProgress<double>? AsFraction() =>
        _writer is null ? null : new FractionProgress(this);

    private sealed class FractionProgress(ProgressBar bar) : IProgress<double>
    {
        public void Report(double value) => bar.Report((long)(Math.Clamp(value, 0, 1) * bar._total));
    }

    /// <summary>Draws the final state and ends the line.</summary>
    public void Dispose()
    {
        if (_writer is null) return;
        lock (_gate)
        {
            if (_total > 0) _done = Math.Max(_done, _total);
            if (_done != _lastDrawnDone) MaybeDraw(force: true);
            if (_drawn) _writer.Write("\n");
            _writer.Flush();
        }
    }
}
