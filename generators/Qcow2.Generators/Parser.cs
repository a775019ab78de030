using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Qcow2.Generators.Model;

namespace Qcow2.Generators;

/// <summary>
/// Turns a declaration found by the pipeline (symbols and syntax) into a <see cref="ParseResult"/>:
/// an equatable model, or null, and the diagnostics. Nothing of the compilation survives in the result.
/// </summary>
internal static class Parser
{
    public const string StructAttributeName = "Qcow2.Layout.OnDiskStructAttribute";
    public const string FieldAttributeName = "Qcow2.Layout.OnDiskFieldAttribute";

    /// <summary>The largest struct size accepted (QCG007); the largest real one is a few hundred bytes.</summary>
    public const int MaxStructSize = 1 << 20;

    private const string ViewSuffix = "View";

    /// <summary>The members every view gets, besides the per-field constants.</summary>
    private static readonly string[] s_generatedMembers =
    {
        "SizeInBytes", "StructName", "Data", "Fields", "TryCreate", "Create", "AsReadOnly", "_data", "s_fields",
    };

    public static ParseResult Parse(GeneratorAttributeSyntaxContext context, CancellationToken cancellationToken)
    {
        var diagnostics = new List<DiagnosticInfo>();
        var type = (INamedTypeSymbol)context.TargetSymbol;
        var syntax = (TypeDeclarationSyntax)context.TargetNode;
        Location typeLocation = syntax.Identifier.GetLocation();
        bool hasError = false;

        string? shapeProblem = FindShapeProblem(type, syntax);
        if (shapeProblem is not null)
        {
            // The fields are not worth checking: nothing can be generated for this type.
            diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.TypeNotPartial, typeLocation, type.Name, shapeProblem));
            return new ParseResult(null, new EquatableArray<DiagnosticInfo>(diagnostics));
        }

        AttributeData structAttribute = context.Attributes[0];
        if (structAttribute.ConstructorArguments.Length != 1 || structAttribute.ConstructorArguments[0].Value is not int size)
        {
            // The compiler reports the malformed attribute itself.
            return new ParseResult(null, new EquatableArray<DiagnosticInfo>(diagnostics));
        }

        bool naturalAlignment = false;
        foreach (KeyValuePair<string, TypedConstant> named in structAttribute.NamedArguments)
        {
            if (named.Key == "NaturalAlignment" && named.Value.Value is bool value)
            {
                naturalAlignment = value;
            }
        }

        bool sizeValid = size >= 1 && size <= MaxStructSize;
        if (!sizeValid)
        {
            diagnostics.Add(DiagnosticInfo.Create(
                DiagnosticDescriptors.InvalidStructSize,
                AttributeLocation(structAttribute) ?? typeLocation,
                type.Name,
                SourceWriter.Invariant(size),
                SourceWriter.Invariant(MaxStructSize)));
            hasError = true;
        }

        var fields = new List<FieldModel>();
        var fieldLocations = new List<Location?>();
        foreach (ISymbol member in type.GetMembers())
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (member is not IPropertySymbol property)
            {
                continue;
            }

            AttributeData? fieldAttribute = property.GetAttributes()
                .FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == FieldAttributeName);
            Location? propertyLocation = property.Locations.FirstOrDefault();
            if (fieldAttribute is null)
            {
                if (property.IsPartialDefinition && property.PartialImplementationPart is null)
                {
                    diagnostics.Add(DiagnosticInfo.Create(
                        DiagnosticDescriptors.InvalidProperty, propertyLocation, property.Name,
                        "a partial property of an on-disk struct needs [OnDiskField]"));
                    hasError = true;
                }

                continue;
            }

            FieldModel? field = ParseField(property, fieldAttribute, size, sizeValid, naturalAlignment, diagnostics);
            if (field is null)
            {
                hasError = true;
            }
            else
            {
                fields.Add(field);
                fieldLocations.Add(propertyLocation);
            }
        }

        string structName = type.Name.Length > ViewSuffix.Length && type.Name.EndsWith(ViewSuffix, System.StringComparison.Ordinal)
            ? type.Name.Substring(0, type.Name.Length - ViewSuffix.Length)
            : type.Name;
        string readOnlyName = structName == type.Name ? type.Name + "ReadOnly" : structName + "ReadOnlyView";

        hasError |= ReportTwinCollision(type, readOnlyName, diagnostics);
        hasError |= ReportOverlaps(fields, fieldLocations, diagnostics);
        hasError |= ReportNameCollisions(type, fields, diagnostics);

        if (hasError)
        {
            return new ParseResult(null, new EquatableArray<DiagnosticInfo>(diagnostics));
        }


        var containing = new List<ContainingTypeModel>();
        for (INamedTypeSymbol? outer = type.ContainingType; outer is not null; outer = outer.ContainingType)
        {
            var outerSyntax = (TypeDeclarationSyntax)outer.DeclaringSyntaxReferences[0].GetSyntax(cancellationToken);
            containing.Insert(0, new ContainingTypeModel(Keyword(outerSyntax), outer.Name));
        }

        var model = new LayoutModel(
            type.ContainingNamespace.IsGlobalNamespace ? string.Empty : type.ContainingNamespace.ToDisplayString(),
            new EquatableArray<ContainingTypeModel>(containing),
            type.Name,
            readOnlyName,
            structName,
            AccessibilityKeywords(type.DeclaredAccessibility),
            IsVisibleInAssembly(type),
            size,
            new EquatableArray<FieldModel>(fields));
        return new ParseResult(model, new EquatableArray<DiagnosticInfo>(diagnostics));
    }

    private static FieldModel? ParseField(
        IPropertySymbol property,
        AttributeData attribute,
        int structSize,
        bool sizeValid,
        bool naturalAlignment,
        List<DiagnosticInfo> diagnostics)
    {
        Location? location = property.Locations.FirstOrDefault();
        if (attribute.ConstructorArguments.Length != 1 || attribute.ConstructorArguments[0].Value is not int offset)
        {
            return null;
        }

        int? length = null;
        foreach (KeyValuePair<string, TypedConstant> named in attribute.NamedArguments)
        {
            if (named.Key == "Length" && named.Value.Value is int value)
            {
                length = value;
            }
        }

        string? shapeProblem = FindPropertyProblem(property);
        if (shapeProblem is not null)
        {
            diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.InvalidProperty, location, property.Name, shapeProblem));
            return null;
        }

        FieldKind? kind = Classify(property.Type);
        if (kind is null)
        {
            diagnostics.Add(DiagnosticInfo.Create(
                DiagnosticDescriptors.UnsupportedFieldType, location, property.Name,
                property.Type.ToDisplayString(SymbolDisplayFormat.MinimallyQualifiedFormat)));
            return null;
        }

        int width;
        if (kind == FieldKind.Bytes)
        {
            if (length is null)
            {
                diagnostics.Add(DiagnosticInfo.Create(
                    DiagnosticDescriptors.InvalidLength, location, property.Name, "a Span<byte> field needs Length"));
                return null;
            }

            if (length.Value <= 0)
            {
                diagnostics.Add(DiagnosticInfo.Create(
                    DiagnosticDescriptors.InvalidLength, location, property.Name,
                    "Length must be positive, not " + SourceWriter.Invariant(length.Value)));
                return null;
            }

            if (property.SetMethod is not null)
            {
                diagnostics.Add(DiagnosticInfo.Create(
                    DiagnosticDescriptors.InvalidProperty, location, property.Name,
                    "a byte-array field has only a get accessor (write through the span)"));
                return null;
            }

            width = length.Value;
        }
        else
        {
            if (length is not null)
            {
                diagnostics.Add(DiagnosticInfo.Create(
                    DiagnosticDescriptors.InvalidLength, location, property.Name,
                    "Length applies only to Span<byte> fields; an integer's width comes from its type"));
                return null;
            }

            width = IntegerWidth(kind.Value);
        }

        long end = (long)offset + width;
        if (offset < 0 || (sizeValid && end > structSize))
        {
            diagnostics.Add(DiagnosticInfo.Create(
                DiagnosticDescriptors.FieldPastSize, location, property.Name,
                SourceWriter.Invariant(offset),
                (end - 1).ToString(System.Globalization.CultureInfo.InvariantCulture),
                SourceWriter.Invariant(structSize)));
            return null;
        }

        if (naturalAlignment && kind != FieldKind.Bytes && offset % width != 0)
        {
            // A warning: the accessors would still be right, but the declaration contradicts the spec's alignment.
            diagnostics.Add(DiagnosticInfo.Create(
                DiagnosticDescriptors.MisalignedField, location, property.Name,
                SourceWriter.Invariant(offset), SourceWriter.Invariant(width)));
        }

        IMethodSymbol? setter = property.SetMethod;
        string setterAccessibility = setter is not null && setter.DeclaredAccessibility != property.DeclaredAccessibility
            ? AccessibilityKeywords(setter.DeclaredAccessibility)
            : string.Empty;
        return new FieldModel(
            property.Name,
            offset,
            width,
            kind.Value,
            AccessibilityKeywords(property.DeclaredAccessibility),
            setter is not null,
            setterAccessibility);
    }

    private static string? FindShapeProblem(INamedTypeSymbol type, TypeDeclarationSyntax syntax)
    {
        if (!syntax.Modifiers.Any(SyntaxKind.PartialKeyword))
        {
            return "it is not declared partial";
        }

        if (type.TypeKind != TypeKind.Struct || !type.IsRefLikeType)
        {
            return "it must be a ref struct, because it holds a Span<byte>";
        }

        if (type.IsGenericType)
        {
            return "generic on-disk structs are not supported";
        }

        if (type.IsFileLocal)
        {
            return "a file-local type cannot have parts in the generated file";
        }

        for (INamedTypeSymbol? outer = type.ContainingType; outer is not null; outer = outer.ContainingType)
        {
            if (outer.IsGenericType)
            {
                return "its containing type '" + outer.Name + "' is generic";
            }

            foreach (SyntaxReference reference in outer.DeclaringSyntaxReferences)
            {
                if (reference.GetSyntax() is TypeDeclarationSyntax outerSyntax && !outerSyntax.Modifiers.Any(SyntaxKind.PartialKeyword))
                {
                    return "its containing type '" + outer.Name + "' is not declared partial";
                }
            }
        }

        return null;
    }

    private static string? FindPropertyProblem(IPropertySymbol property)
    {
        if (property.IsStatic)
        {
            return "an on-disk field must be an instance property";
        }

        if (property.IsIndexer)
        {
            return "an indexer cannot be an on-disk field";
        }

        if (!property.IsPartialDefinition)
        {
            return "an on-disk field must be a partial property without a body";
        }

        if (property.PartialImplementationPart is not null)
        {
            return "the property already has an implementation; the generator writes it";
        }

        if (property.ReturnsByRef || property.ReturnsByRefReadonly)
        {
            return "an on-disk field cannot return by reference";
        }

        if (property.GetMethod is null)
        {
            return "an on-disk field needs a get accessor";
        }

        if (property.SetMethod is not null && property.SetMethod.IsInitOnly)
        {
            return "an on-disk field cannot have an init accessor; use set";
        }

        return null;
    }

    private static FieldKind? Classify(ITypeSymbol type)
    {
        switch (type.SpecialType)
        {
            case SpecialType.System_Byte: return FieldKind.UInt8;
            case SpecialType.System_SByte: return FieldKind.Int8;
            case SpecialType.System_UInt16: return FieldKind.UInt16;
            case SpecialType.System_Int16: return FieldKind.Int16;
            case SpecialType.System_UInt32: return FieldKind.UInt32;
            case SpecialType.System_Int32: return FieldKind.Int32;
            case SpecialType.System_UInt64: return FieldKind.UInt64;
            case SpecialType.System_Int64: return FieldKind.Int64;
        }

        if (type is INamedTypeSymbol named
            && named.MetadataName == "Span`1"
            && named.ContainingNamespace is { Name: "System" } ns
            && ns.ContainingNamespace.IsGlobalNamespace
            && named.TypeArguments.Length == 1
            && named.TypeArguments[0].SpecialType == SpecialType.System_Byte)
        {
            return FieldKind.Bytes;
        }

        return null;
    }

    public static int IntegerWidth(FieldKind kind) => kind switch
    {
        FieldKind.UInt8 or FieldKind.Int8 => 1,
        FieldKind.UInt16 or FieldKind.Int16 => 2,
        FieldKind.UInt32 or FieldKind.Int32 => 4,
        _ => 8,
    };

    /// <summary>Reports each field that starts before the end of a field placed before it.</summary>
    private static bool ReportOverlaps(List<FieldModel> fields, List<Location?> locations, List<DiagnosticInfo> diagnostics)
    {
        int[] order = Enumerable.Range(0, fields.Count).OrderBy(i => fields[i].Offset).ThenBy(i => i).ToArray();
        bool found = false;
        int widest = -1;
        foreach (int index in order)
        {
            FieldModel field = fields[index];
            if (widest >= 0)
            {
                FieldModel previous = fields[widest];
                if ((long)field.Offset < (long)previous.Offset + previous.Width)
                {
                    diagnostics.Add(DiagnosticInfo.Create(
                        DiagnosticDescriptors.OverlappingFields, locations[index],
                        field.Name, SourceWriter.Invariant(field.Offset), SourceWriter.Invariant(field.Offset + field.Width - 1),
                        previous.Name, SourceWriter.Invariant(previous.Offset), SourceWriter.Invariant(previous.Offset + previous.Width - 1)));
                    found = true;
                }
            }

            if (widest < 0 || (long)field.Offset + field.Width > (long)fields[widest].Offset + fields[widest].Width)
            {
                widest = index;
            }
        }

        return found;
    }

    private static bool ReportNameCollisions(INamedTypeSymbol type, List<FieldModel> fields, List<DiagnosticInfo> diagnostics)
    {
        var generated = new Dictionary<string, string>(System.StringComparer.Ordinal);
        foreach (string name in s_generatedMembers)
        {
            generated[name] = "a member of every view";
        }

        foreach (FieldModel field in fields)
        {
            generated[field.Name + "Offset"] = "the offset constant of field '" + field.Name + "'";
            generated[field.Name + "Width"] = "the width constant of field '" + field.Name + "'";
        }

        bool found = false;
        foreach (ISymbol member in type.GetMembers())
        {
            if (member.IsImplicitlyDeclared || !generated.TryGetValue(member.Name, out string? what))
            {
                continue;
            }

            diagnostics.Add(DiagnosticInfo.Create(
                DiagnosticDescriptors.NameCollision, member.Locations.FirstOrDefault(), member.Name, type.Name, what!));
            found = true;
        }

        return found;
    }

    /// <summary>Reports a type already named like the read-only twin, in the scope the twin goes to.</summary>
    private static bool ReportTwinCollision(INamedTypeSymbol type, string readOnlyName, List<DiagnosticInfo> diagnostics)
    {
        INamespaceOrTypeSymbol scope = (INamespaceOrTypeSymbol?)type.ContainingType ?? type.ContainingNamespace;
        foreach (INamedTypeSymbol existing in scope.GetTypeMembers(readOnlyName))
        {
            diagnostics.Add(DiagnosticInfo.Create(
                DiagnosticDescriptors.NameCollision, existing.Locations.FirstOrDefault(), readOnlyName,
                scope.IsNamespace && ((INamespaceSymbol)scope).IsGlobalNamespace ? "<global namespace>" : scope.ToDisplayString(),
                "the read-only twin of '" + type.Name + "'"));
            return true;
        }

        return false;
    }

    private static Location? AttributeLocation(AttributeData attribute)
        => attribute.ApplicationSyntaxReference?.GetSyntax().GetLocation();

    private static bool IsVisibleInAssembly(INamedTypeSymbol type)
    {
        for (INamedTypeSymbol? current = type; current is not null; current = current.ContainingType)
        {
            if (current.DeclaredAccessibility is not (Accessibility.Public or Accessibility.Internal or Accessibility.ProtectedOrInternal))
            {
                return false;
            }
        }

        return true;
    }

    private static string Keyword(TypeDeclarationSyntax syntax) => syntax switch
    {
        RecordDeclarationSyntax record => record.ClassOrStructKeyword.IsKind(SyntaxKind.StructKeyword) ? "record struct" : "record",
        StructDeclarationSyntax => "struct",
        InterfaceDeclarationSyntax => "interface",
        _ => "class",
    };

    public static string AccessibilityKeywords(Accessibility accessibility) => accessibility switch
    {
        Accessibility.Public => "public",
        Accessibility.Internal => "internal",
        Accessibility.Protected => "protected",
        Accessibility.ProtectedOrInternal => "protected internal",
        Accessibility.ProtectedAndInternal => "private protected",
        _ => "private",
    };
}
