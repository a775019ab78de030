using System.Globalization;
using System.Text;

namespace Qcow2.Cli.Output;

/// <summary>One internal snapshot as info shows it.</summary>
internal sealed record SnapshotModel(
    string Id, string Name, long VmStateSize, long DateSeconds, long DateNanoseconds,
    long VmClockNanoseconds, long? ICount);

/// <summary>What <c>info</c> prints about one image, independent of where it came from.</summary>
internal sealed class ImageInfoModel
{
    public required string Filename { get; init; }
    public required string Format { get; init; }
    public long VirtualSize { get; init; }
    /// <summary>Bytes the file occupies on disk, or null when unknown.</summary>
    public long? ActualSize { get; init; }
    public long? ClusterSize { get; init; }
    public bool Encrypted { get; init; }
    public bool DirtyFlag { get; init; }
    public string? BackingFilename { get; init; }
    public string? FullBackingFilename { get; init; }
    public string? BackingFormat { get; init; }
    public IReadOnlyList<SnapshotModel> Snapshots { get; init; } = Array.Empty<SnapshotModel>();
    /// <summary>The "format-specific" object's "data" member (type is <see cref="Format"/>), or null.</summary>
    public QDict? FormatSpecificData { get; init; }
}

/// <summary>info's JSON and human output, as qemu-img 7.2 prints them.</summary>
internal static class InfoFormatter
{
    public static QDict ToQDict(ImageInfoModel m)
    {
        var d = new QDict(KeyOrder.ImageInfo);
        d.Add("virtual-size", m.VirtualSize);
        d.Add("filename", m.Filename);
        if (m.ClusterSize is { } cs) d.Add("cluster-size", cs);
        d.Add("format", m.Format);
        if (m.ActualSize is { } a) d.Add("actual-size", a);
        if (m.Encrypted) d.Add("encrypted", true);
        if (m.BackingFilename is not null)
        {
            d.Add("backing-filename", m.BackingFilename);
            if (m.FullBackingFilename is not null) d.Add("full-backing-filename", m.FullBackingFilename);
            if (m.BackingFormat is not null) d.Add("backing-filename-format", m.BackingFormat);
        }
        if (m.Snapshots.Count > 0)
        {
            var list = new QList();
            foreach (var s in m.Snapshots)
            {
                var sd = new QDict(KeyOrder.Snapshot)
                    .Add("id", s.Id)
                    .Add("name", s.Name)
                    .Add("vm-state-size", s.VmStateSize)
                    .Add("date-sec", s.DateSeconds)
                    .Add("date-nsec", s.DateNanoseconds)
                    .Add("vm-clock-sec", s.VmClockNanoseconds / 1_000_000_000)
                    .Add("vm-clock-nsec", s.VmClockNanoseconds % 1_000_000_000);
                if (s.ICount is { } ic) sd.Add("icount", ic);
                list.Add(sd);
            }
            d.Add("snapshots", list);
        }
        if (m.FormatSpecificData is not null)
            d.Add("format-specific", new QDict(KeyOrder.FormatSpecific).Add("type", m.Format).Add("data", m.FormatSpecificData));
        d.Add("dirty-flag", m.DirtyFlag);
        return d;
    }

    /// <summary>JSON for one image (with the trailing newline qemu-img prints).</summary>
    public static string Json(ImageInfoModel m) => QJson.ToPrettyJson(ToQDict(m)) + "\n";

    /// <summary>JSON for a backing chain: an array of the images, top first.</summary>
    public static string JsonChain(IReadOnlyList<ImageInfoModel> chain)
    {
        var list = new QList();
        foreach (var m in chain) list.Add(ToQDict(m));
        return QJson.ToPrettyJson(list) + "\n";
    }

    public static string HumanChain(IReadOnlyList<ImageInfoModel> chain)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < chain.Count; i++)
        {
            if (i > 0) sb.Append('\n');
            sb.Append(Human(chain[i]));
        }
        return sb.ToString();
    }

    public static string Human(ImageInfoModel m)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.Append("image: ").Append(m.Filename).Append('\n');
        sb.Append("file format: ").Append(m.Format).Append('\n');
        sb.Append("virtual size: ").Append(NumberFormat.HumanSize(m.VirtualSize))
          .Append(" (").Append(m.VirtualSize.ToString(inv)).Append(" bytes)\n");
        sb.Append("disk size: ").Append(m.ActualSize is { } a ? NumberFormat.HumanSize(a) : "unavailable").Append('\n');
        if (m.Encrypted) sb.Append("encrypted: yes\n");
        if (m.ClusterSize is { } cs) sb.Append("cluster_size: ").Append(cs.ToString(inv)).Append('\n');
        if (m.DirtyFlag) sb.Append("cleanly shut down: no\n");
        if (m.BackingFilename is not null)
        {
            sb.Append("backing file: ").Append(m.BackingFilename);
            if (m.FullBackingFilename is not null && m.FullBackingFilename != m.BackingFilename)
                sb.Append(" (actual path: ").Append(m.FullBackingFilename).Append(')');
            sb.Append('\n');
            if (m.BackingFormat is not null) sb.Append("backing file format: ").Append(m.BackingFormat).Append('\n');
        }
        if (m.Snapshots.Count > 0)
        {
            sb.Append("Snapshot list:\n");
            sb.Append(SnapshotTableHeader()).Append('\n');
            foreach (var s in m.Snapshots) sb.Append(SnapshotRow(s)).Append('\n');
        }
        if (m.FormatSpecificData is not null)
        {
            sb.Append("Format specific information:\n");
            QHuman.Dump(sb, m.FormatSpecificData, 4);
        }
        return sb.ToString();
    }

    public static string SnapshotTableHeader() =>
        string.Format(CultureInfo.InvariantCulture, "{0,-9} {1,-17} {2,7}{3,20}{4,13}{5,11}",
            "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");

    public static string SnapshotRow(SnapshotModel s)
    {
        var inv = CultureInfo.InvariantCulture;
        var date = DateTimeOffset.FromUnixTimeSeconds(s.DateSeconds).ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", inv);
        long ms = s.VmClockNanoseconds / 1_000_000;
        string clock = string.Format(inv, "{0:00}:{1:00}:{2:00}.{3:000}",
            ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        return string.Format(inv, "{0,-9} {1,-17} {2,7}{3,20}{4,13}{5,11}",
            s.Id, s.Name, NumberFormat.HumanSize(s.VmStateSize), date, clock,
            s.ICount is { } ic ? ic.ToString(inv) : "");
    }
}
