using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Qcow2.Generators.Model;

/// <summary>
/// Where a diagnostic points, as plain values (a <see cref="Location"/> holds a syntax tree,
/// which would keep the whole compilation alive and defeat the pipeline's caching).
/// </summary>
internal sealed record LocationInfo(string FilePath, TextSpan Span, LinePositionSpan LineSpan)
{
    public Location ToLocation() => Location.Create(FilePath, Span, LineSpan);

    public static LocationInfo? From(Location? location)
    {
        if (location is null || location.SourceTree is null)
        {
            return null;
        }

        return new LocationInfo(location.SourceTree.FilePath, location.SourceSpan, location.GetLineSpan().Span);
    }
}

/// <summary>A diagnostic to report, carried as equatable data.</summary>
internal sealed record DiagnosticInfo(DiagnosticDescriptor Descriptor, LocationInfo? Location, EquatableArray<string> Arguments)
{
    public Diagnostic ToDiagnostic()
    {
        object[] args = new object[Arguments.Count];
        for (int i = 0; i < args.Length; i++)
        {
            args[i] = Arguments[i];
        }

        return Diagnostic.Create(Descriptor, Location?.ToLocation(), args);
    }

    public static DiagnosticInfo Create(DiagnosticDescriptor descriptor, Location? location, params string[] arguments)
        => new(descriptor, LocationInfo.From(location), new EquatableArray<string>(arguments));
}

/// <summary>
/// What the parser made of one declaration: the model (null when the declaration has an
/// error) and the diagnostics found.
/// </summary>
internal sealed record ParseResult(LayoutModel? Model, EquatableArray<DiagnosticInfo> Diagnostics);
