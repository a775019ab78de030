namespace Qcow2.Generators.Model;

/// <summary>The integer or byte-array shape of one on-disk field.</summary>
internal enum FieldKind
{
    UInt8,
    Int8,
    UInt16,
    Int16,
    UInt32,
    Int32,
    UInt64,
    Int64,
    Bytes,
}

/// <summary>One field of an on-disk struct, as the emitter needs it.</summary>
/// <param name="Name">The property name.</param>
/// <param name="Offset">The byte offset from the start of the struct.</param>
/// <param name="Width">The width in bytes (1, 2, 4, 8, or the array length).</param>
/// <param name="Kind">The field's kind.</param>
/// <param name="Accessibility">The property's accessibility keywords, e.g. "public".</param>
/// <param name="HasSetter">Whether the declaration has a set accessor.</param>
/// <param name="SetterAccessibility">The set accessor's own accessibility keywords, or "" when none.</param>
internal sealed record FieldModel(
    string Name,
    int Offset,
    int Width,
    FieldKind Kind,
    string Accessibility,
    bool HasSetter,
    string SetterAccessibility);

/// <summary>A (non-generic, partial) type that contains the declaration.</summary>
/// <param name="Keyword">The declaration keyword(s), e.g. "class" or "record struct".</param>
/// <param name="Name">The type's name.</param>
internal sealed record ContainingTypeModel(string Keyword, string Name);

/// <summary>One valid on-disk struct declaration.</summary>
/// <param name="Namespace">The namespace, or "" for the global namespace.</param>
/// <param name="ContainingTypes">Enclosing type declarations, outermost first.</param>
/// <param name="TypeName">The view's name, e.g. "HeaderView".</param>
/// <param name="ReadOnlyTypeName">The read-only twin's name, e.g. "HeaderReadOnlyView".</param>
/// <param name="StructName">The struct's name without "View", e.g. "Header".</param>
/// <param name="Accessibility">The view's accessibility keywords.</param>
/// <param name="ListedInAll">Whether GeneratedLayouts can name the view (it is not private or protected).</param>
/// <param name="Size">The struct size in bytes.</param>
/// <param name="Fields">The fields in declaration order.</param>
internal sealed record LayoutModel(
    string Namespace,
    EquatableArray<ContainingTypeModel> ContainingTypes,
    string TypeName,
    string ReadOnlyTypeName,
    string StructName,
    string Accessibility,
    bool ListedInAll,
    int Size,
    EquatableArray<FieldModel> Fields)
{
    /// <summary>The fully qualified view name with the global:: prefix.</summary>
    public string FullyQualifiedName => Qualify(TypeName);

    /// <summary>The fully qualified read-only twin name with the global:: prefix.</summary>
    public string FullyQualifiedReadOnlyName => Qualify(ReadOnlyTypeName);

    /// <summary>A file name unique within the compilation.</summary>
    public string HintName
    {
        get
        {
            string prefix = Namespace.Length == 0 ? string.Empty : Namespace + ".";
            foreach (ContainingTypeModel containing in ContainingTypes)
            {
                prefix += containing.Name + ".";
            }

            return prefix + TypeName + ".g.cs";
        }
    }

    private string Qualify(string name)
    {
        string result = "global::" + (Namespace.Length == 0 ? string.Empty : Namespace + ".");
        foreach (ContainingTypeModel containing in ContainingTypes)
        {
            result += containing.Name + ".";
        }

        return result + name;
    }
}
