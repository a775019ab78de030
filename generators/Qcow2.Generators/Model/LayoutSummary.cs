namespace Qcow2.Generators.Model;

/// <summary>
/// What <c>GeneratedLayouts.All</c> needs of a view: only its name, so that editing a view's
/// fields does not regenerate the list.
/// </summary>
internal sealed record LayoutSummary(string FullyQualifiedName) : System.IComparable<LayoutSummary>
{
    public int CompareTo(LayoutSummary? other) => string.CompareOrdinal(FullyQualifiedName, other?.FullyQualifiedName);
}
