using System.Globalization;
using System.Text;

namespace Qcow2.Cli.Output;

/// <summary>
/// A small ordered value tree (dict, list, string, integer, boolean) from which both the JSON
/// and the human "Format specific information" output are printed, so the two always agree.
/// </summary>
internal abstract class QValue
{
    public static implicit operator QValue(string s) => new QString(s);
    public static implicit operator QValue(long v) => new QInt(v);
    public static implicit operator QValue(bool b) => new QBool(b);
}

internal sealed class QString(string value) : QValue
{
    public string Value { get; } = value;
}

internal sealed class QInt(long value) : QValue
{
    public long Value { get; } = value;
}

internal sealed class QBool(bool value) : QValue
{
    public bool Value { get; } = value;
}

internal sealed class QList : QValue
{
    public List<QValue> Items { get; } = new();

    public QList Add(QValue v) { Items.Add(v); return this; }
}

/// <summary>
/// A dictionary whose members print in a fixed order. qemu-img prints its dictionaries in the
/// order of its hash table, not in insertion order; <see cref="KeyOrder"/> holds that order as
/// observed from qemu-img 7.2 for each kind of object. Keys missing from the order print last,
/// in insertion order.
/// </summary>
internal sealed class QDict : QValue
{
    private readonly string[] _order;
    private readonly List<KeyValuePair<string, QValue>> _entries = new();

    public QDict(string[] order) { _order = order; }

    public QDict Add(string key, QValue value)
    {
        _entries.RemoveAll(e => e.Key == key);
        _entries.Add(new(key, value));
        return this;
    }

    public QValue? this[string key] => _entries.Find(e => e.Key == key).Value;

    public int Count => _entries.Count;

    /// <summary>Entries in print order.</summary>
    public IEnumerable<KeyValuePair<string, QValue>> Entries
    {
        get
        {
            int Rank(string k) { int i = Array.IndexOf(_order, k); return i < 0 ? int.MaxValue : i; }
            return _entries.Select((e, i) => (e, i)).OrderBy(t => Rank(t.e.Key)).ThenBy(t => t.i).Select(t => t.e);
        }
    }
}

/// <summary>qemu-img 7.2's member order per object (its QDict hash-bucket order), as observed.</summary>
internal static class KeyOrder
{
    public static readonly string[] ImageInfo =
    {
        "backing-filename-format", "snapshots", "virtual-size", "filename", "cluster-size", "format",
        "actual-size", "format-specific", "full-backing-filename", "encrypted", "backing-filename",
        "dirty-flag",
    };

    public static readonly string[] FormatSpecific = { "type", "data" };

    public static readonly string[] Qcow2Specific =
    {
        "compat", "compression-type", "lazy-refcounts", "bitmaps", "refcount-bits", "data-file",
        "encrypt", "data-file-raw", "corrupt", "extended-l2",
    };

    public static readonly string[] Snapshot =
    {
        "icount", "vm-clock-nsec", "name", "date-sec", "date-nsec", "vm-clock-sec", "id", "vm-state-size",
    };

    public static readonly string[] Bitmap = { "flags", "name", "granularity" };

    public static readonly string[] Luks =
    {
        "ivgen-alg", "hash-alg", "cipher-alg", "uuid", "ivgen-hash-alg", "format", "cipher-mode", "slots", "payload-offset",
        "master-key-iters",
    };

    public static readonly string[] LuksSlot = { "active", "iters", "key-offset", "stripes" };

    public static readonly string[] Check =
    {
        "image-end-offset", "compressed-clusters", "total-clusters", "corruptions", "corruptions-fixed",
        "check-errors", "leaks", "leaks-fixed", "allocated-clusters", "filename", "format",
        "fragmented-clusters",
    };

    public static readonly string[] Measure = { "bitmaps", "required", "fully-allocated" };
}

/// <summary>Prints a <see cref="QValue"/> as qemu-img's pretty JSON (4-space indent, \uXXXX escapes).</summary>
internal static class QJson
{
    public static string ToPrettyJson(QValue value)
    {
        var sb = new StringBuilder();
        Write(sb, value, 0);
        return sb.ToString();
    }

    private static void Indent(StringBuilder sb, int level) => sb.Append(' ', level * 4);

    private static void Write(StringBuilder sb, QValue value, int level)
    {
        switch (value)
        {
            case QString s: WriteString(sb, s.Value); break;
            case QInt i: sb.Append(i.Value.ToString(CultureInfo.InvariantCulture)); break;
            case QBool b: sb.Append(b.Value ? "true" : "false"); break;
            case QList l:
                sb.Append('[');
                for (int k = 0; k < l.Items.Count; k++)
                {
                    if (k > 0) sb.Append(',');
                    sb.Append('\n');
                    Indent(sb, level + 1);
                    Write(sb, l.Items[k], level + 1);
                }
                sb.Append('\n');
                Indent(sb, level);
                sb.Append(']');
                break;
            case QDict d:
                sb.Append('{');
                bool first = true;
                foreach (var e in d.Entries)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    sb.Append('\n');
                    Indent(sb, level + 1);
                    WriteString(sb, e.Key);
                    sb.Append(": ");
                    Write(sb, e.Value, level + 1);
                }
                sb.Append('\n');
                Indent(sb, level);
                sb.Append('}');
                break;
        }
    }

    /// <summary>A JSON string as QEMU escapes it: control and non-ASCII characters as \uXXXX (upper-case hex, UTF-16 units).</summary>
    public static void WriteString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20 || c >= 0x7f)
                        sb.Append("\\u").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture));
                    else
                        sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}

/// <summary>
/// Prints a <see cref="QValue"/> the way qemu-img's human output dumps format-specific data:
/// "key: value" with dashes in keys shown as spaces, nested values indented by four, list
/// items as "[i]:".
/// </summary>
internal static class QHuman
{
    public static void Dump(StringBuilder sb, QDict dict, int indent)
    {
        foreach (var e in dict.Entries) Member(sb, e.Key.Replace('-', ' '), e.Value, indent);
    }

    private static void Member(StringBuilder sb, string label, QValue value, int indent)
    {
        sb.Append(' ', indent).Append(label).Append(':');
        switch (value)
        {
            case QDict d:
                sb.Append('\n');
                Dump(sb, d, indent + 4);
                break;
            case QList l:
                sb.Append('\n');
                for (int i = 0; i < l.Items.Count; i++)
                    Member(sb, "[" + i.ToString(CultureInfo.InvariantCulture) + "]", l.Items[i], indent + 4);
                break;
            default:
                sb.Append(' ').Append(Scalar(value)).Append('\n');
                break;
        }
    }

    private static string Scalar(QValue v) => v switch
    {
        QString s => s.Value,
        QInt i => i.Value.ToString(CultureInfo.InvariantCulture),
        QBool b => b.Value ? "true" : "false",
        _ => "",
    };
}
