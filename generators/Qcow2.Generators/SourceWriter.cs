using System.Globalization;
using System.Text;

namespace Qcow2.Generators;

/// <summary>
/// A small indenting text writer: four spaces per level, "\n" line ends whatever the host,
/// so the output is the same on every machine.
/// </summary>
internal sealed class SourceWriter
{
    private readonly StringBuilder _builder = new();
    private int _indent;

    /// <summary>Formats an integer under the invariant culture.</summary>
    public static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Quotes a string as a C# literal (names are identifiers, so only quotes and backslashes matter).</summary>
    public static string Literal(string value) => "\"" + value.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";

    public void WriteLine()
    {
        _builder.Append('\n');
    }

    public void WriteLine(string line)
    {
        if (line.Length == 0)
        {
            _builder.Append('\n');
            return;
        }

        _builder.Append(' ', _indent * 4);
        _builder.Append(line);
        _builder.Append('\n');
    }

    /// <summary>Writes <paramref name="header"/> and an opening brace, and indents.</summary>
    public void OpenBlock(string header)
    {
        WriteLine(header);
        WriteLine("{");
        _indent++;
    }

    /// <summary>Unindents and writes a closing brace followed by <paramref name="suffix"/>.</summary>
    public void CloseBlock(string suffix = "")
    {
        _indent--;
        WriteLine("}" + suffix);
    }

    public override string ToString() => _builder.ToString();
}
