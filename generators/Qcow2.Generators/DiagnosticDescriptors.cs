using Microsoft.CodeAnalysis;

namespace Qcow2.Generators;

/// <summary>The generator's diagnostics (prefix QCG, listed in docs/DESIGN.md).</summary>
internal static class DiagnosticDescriptors
{
    private const string Category = "Qcow2.Generators";

    public static readonly DiagnosticDescriptor TypeNotPartial = new(
        id: "QCG001",
        title: "On-disk struct must be a partial ref struct",
        messageFormat: "On-disk struct '{0}' cannot carry generated code: {1}",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor UnsupportedFieldType = new(
        id: "QCG002",
        title: "Unsupported on-disk field type",
        messageFormat: "Field '{0}' has type '{1}'; on-disk fields must be byte, sbyte, ushort, short, uint, int, ulong, long or Span<byte>",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor FieldPastSize = new(
        id: "QCG003",
        title: "On-disk field lies outside the struct",
        messageFormat: "Field '{0}' covers bytes {1} to {2}, outside the declared size of {3} bytes",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor OverlappingFields = new(
        id: "QCG004",
        title: "On-disk fields overlap",
        messageFormat: "Field '{0}' (bytes {1} to {2}) overlaps field '{3}' (bytes {4} to {5})",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor MisalignedField = new(
        id: "QCG005",
        title: "On-disk field is not naturally aligned",
        messageFormat: "Field '{0}' at offset {1} is not aligned to its width of {2} bytes, but the struct declares NaturalAlignment",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Warning,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor InvalidLength = new(
        id: "QCG006",
        title: "Invalid Length on an on-disk field",
        messageFormat: "Field '{0}': {1}",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor InvalidStructSize = new(
        id: "QCG007",
        title: "Invalid on-disk struct size",
        messageFormat: "On-disk struct '{0}' declares size {1}; the size must be between 1 and {2} bytes",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor InvalidProperty = new(
        id: "QCG008",
        title: "On-disk field property has an unexpected shape",
        messageFormat: "Property '{0}': {1}",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor NameCollision = new(
        id: "QCG009",
        title: "Member name collides with a generated member",
        messageFormat: "'{0}' in '{1}' has the name of something the generator adds ({2})",
        category: Category,
        defaultSeverity: DiagnosticSeverity.Error,
        isEnabledByDefault: true);
}
