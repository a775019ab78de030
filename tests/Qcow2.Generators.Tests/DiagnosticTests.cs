using Microsoft.CodeAnalysis;

namespace Qcow2.Generators.Tests;

/// <summary>Each QCG diagnostic fires on its bad declaration, with its severity, and only there.</summary>
public class DiagnosticTests
{
    private static string Declaration(string attribute, string members, string modifiers = "public readonly ref partial struct")
        => $$"""
            using System;
            using Qcow2.Layout;

            namespace Sample;

            [{{attribute}}]
            {{modifiers}} SampleView
            {
            {{members}}
            }
            """;

    private static Diagnostic Single(GeneratorOutcome outcome, string id)
    {
        Diagnostic[] matching = outcome.GeneratorDiagnostics.Where(d => d.Id == id).ToArray();
        Assert.True(matching.Length == 1,
            $"expected one {id}, got:{Environment.NewLine}{GeneratorOutcome.Describe(outcome.GeneratorDiagnostics)}");
        return matching[0];
    }

    private static void AssertNoView(GeneratorOutcome outcome)
        => Assert.DoesNotContain("Sample.SampleView.g.cs", outcome.HintNames);

    /// <summary>Asserts exactly one diagnostic, of this id and severity, pointing at <paramref name="markedText"/>.</summary>
    private static Diagnostic AssertOnly(GeneratorOutcome outcome, string id, DiagnosticSeverity severity, string markedText)
    {
        Diagnostic diagnostic = Single(outcome, id);
        Assert.True(outcome.GeneratorDiagnostics.Length == 1, GeneratorOutcome.Describe(outcome.GeneratorDiagnostics));
        Assert.Equal(severity, diagnostic.Severity);
        // The generator rebuilds locations from plain data (file, span, lines), so they are external-file locations.
        FileLinePositionSpan lines = diagnostic.Location.GetLineSpan();
        SyntaxTree? tree = outcome.Output.SyntaxTrees.SingleOrDefault(t => t.FilePath == lines.Path);
        Assert.True(tree is not null, $"the diagnostic points at '{lines.Path}', which is not a source file");
        string located = tree!.ToString().Substring(diagnostic.Location.SourceSpan.Start, diagnostic.Location.SourceSpan.Length);
        Assert.Equal(markedText, located);
        Assert.Equal(tree.GetLineSpan(diagnostic.Location.SourceSpan).Span, lines.Span);
        return diagnostic;
    }

    [Theory]
    [InlineData("public readonly ref struct", "not declared partial")]
    [InlineData("public readonly partial struct", "must be a ref struct")]
    public void Generate_TypeNotPartialRefStruct_ReportsQCG001(string modifiers, string reason)
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(4)", "[OnDiskField(0)] public partial uint X { get; set; }", modifiers));

        Diagnostic diagnostic = AssertOnly(outcome, "QCG001", DiagnosticSeverity.Error, "SampleView");
        Assert.Contains(reason, diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture));
        AssertNoView(outcome);
    }

    [Fact]
    public void Generate_ContainingTypeNotPartial_ReportsQCG001()
    {
        const string source = """
            using Qcow2.Layout;
            public static class Outer
            {
                [OnDiskStruct(4)]
                public readonly ref partial struct SampleView
                {
                    [OnDiskField(0)] public partial uint X { get; set; }
                }
            }
            """;

        Diagnostic diagnostic = AssertOnly(GeneratorHarness.Run(source), "QCG001", DiagnosticSeverity.Error, "SampleView");
        Assert.Contains("'Outer' is not declared partial", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Generate_GenericType_ReportsQCG001()
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(4)", "[OnDiskField(0)] public partial uint X { get; set; }",
            "public readonly ref partial struct SampleView<T> where T : struct"));

        Assert.Equal("QCG001", Single(outcome, "QCG001").Id);
    }

    [Theory]
    [InlineData("float")]
    [InlineData("string")]
    [InlineData("ReadOnlySpan<byte>")]
    [InlineData("Span<int>")]
    [InlineData("bool")]
    public void Generate_UnsupportedFieldType_ReportsQCG002(string type)
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(8)", $"[OnDiskField(0, Length = 4)] public partial {type} Bad {{ get; }}"));

        AssertOnly(outcome, "QCG002", DiagnosticSeverity.Error, "Bad");
        AssertNoView(outcome);
    }

    [Theory]
    [InlineData("[OnDiskField(6)] public partial uint Bad { get; set; }")]
    [InlineData("[OnDiskField(8)] public partial byte Bad { get; set; }")]
    [InlineData("[OnDiskField(-1)] public partial byte Bad { get; set; }")]
    [InlineData("[OnDiskField(4, Length = 5)] public partial Span<byte> Bad { get; }")]
    [InlineData("[OnDiskField(int.MaxValue)] public partial ulong Bad { get; set; }")]
    public void Generate_FieldPastSize_ReportsQCG003(string member)
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(8)", "[OnDiskField(0)] public partial ushort Good { get; set; }\n" + member));

        AssertOnly(outcome, "QCG003", DiagnosticSeverity.Error, "Bad");
        AssertNoView(outcome);
    }

    [Theory]
    [InlineData("[OnDiskField(3)] public partial ushort Bad { get; set; }")]
    [InlineData("[OnDiskField(0)] public partial byte Bad { get; set; }")]
    [InlineData("[OnDiskField(1, Length = 2)] public partial Span<byte> Bad { get; }")]
    public void Generate_OverlappingFields_ReportsQCG004(string member)
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(8)", "[OnDiskField(0)] public partial uint First { get; set; }\n" + member));

        Diagnostic diagnostic = AssertOnly(outcome, "QCG004", DiagnosticSeverity.Error, "Bad");
        Assert.Contains("'First'", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture));
        AssertNoView(outcome);
    }

    [Fact]
    public void Generate_FieldInsideAnEarlierWideField_ReportsQCG004AgainstTheWideField()
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(16)",
            "[OnDiskField(0, Length = 12)] public partial Span<byte> Wide { get; }\n"
            + "[OnDiskField(4)] public partial uint Inner { get; set; }\n"
            + "[OnDiskField(8)] public partial uint Bad { get; set; }"));

        Diagnostic[] overlaps = outcome.GeneratorDiagnostics.Where(d => d.Id == "QCG004").ToArray();
        Assert.Equal(2, overlaps.Length);
        Assert.All(overlaps, d => Assert.Contains("'Wide'", d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Fact]
    public void Generate_AdjacentFields_ReportsNothing()
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(8, NaturalAlignment = true)",
            "[OnDiskField(4)] public partial uint Second { get; set; }\n[OnDiskField(0)] public partial uint First { get; set; }"));

        Assert.True(outcome.GeneratorDiagnostics.IsEmpty, GeneratorOutcome.Describe(outcome.GeneratorDiagnostics));
        Assert.True(outcome.CompilationProblems.Count == 0, GeneratorOutcome.Describe(outcome.CompilationProblems));
    }

    [Theory]
    [InlineData("[OnDiskField(2)] public partial uint Bad { get; set; }")]
    [InlineData("[OnDiskField(1)] public partial ushort Bad { get; set; }")]
    [InlineData("[OnDiskField(4)] public partial ulong Bad { get; set; }")]
    public void Generate_MisalignedFieldWithNaturalAlignment_WarnsQCG005AndStillEmitsTheView(string member)
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(16, NaturalAlignment = true)", member));

        AssertOnly(outcome, "QCG005", DiagnosticSeverity.Warning, "Bad");
        Assert.Contains("Sample.SampleView.g.cs", outcome.HintNames);
        Assert.DoesNotContain(outcome.CompilationProblems, d => d.Severity == DiagnosticSeverity.Error);
    }

    [Fact]
    public void Generate_MisalignedFieldWithoutNaturalAlignment_ReportsNothing()
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(16)",
            "[OnDiskField(3)] public partial ulong Odd { get; set; }\n[OnDiskField(11, Length = 3)] public partial Span<byte> Bytes { get; }"));

        Assert.True(outcome.GeneratorDiagnostics.IsEmpty, GeneratorOutcome.Describe(outcome.GeneratorDiagnostics));
        Assert.True(outcome.CompilationProblems.Count == 0, GeneratorOutcome.Describe(outcome.CompilationProblems));
    }

    [Theory]
    [InlineData("[OnDiskField(0)] public partial Span<byte> Bad { get; }", "needs Length")]
    [InlineData("[OnDiskField(0, Length = 0)] public partial Span<byte> Bad { get; }", "must be positive")]
    [InlineData("[OnDiskField(0, Length = -3)] public partial Span<byte> Bad { get; }", "must be positive")]
    [InlineData("[OnDiskField(0, Length = 4)] public partial uint Bad { get; set; }", "only to Span<byte>")]
    public void Generate_BadLength_ReportsQCG006(string member, string reason)
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(8)", member));

        Diagnostic diagnostic = AssertOnly(outcome, "QCG006", DiagnosticSeverity.Error, "Bad");
        Assert.Contains(reason, diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture));
        AssertNoView(outcome);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-8)]
    [InlineData((1 << 20) + 1)]
    public void Generate_InvalidStructSize_ReportsQCG007(int size)
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration($"OnDiskStruct({size})", ""));

        AssertOnly(outcome, "QCG007", DiagnosticSeverity.Error, $"OnDiskStruct({size})");
        AssertNoView(outcome);
    }

    [Theory]
    [InlineData("[OnDiskField(0)] public uint Bad { get => 0; set { } }", "partial property without a body")]
    [InlineData("[OnDiskField(0)] public static partial uint Bad { get; set; }", "instance property")]
    [InlineData("[OnDiskField(0)] public partial uint Bad { get; init; }", "init accessor")]
    [InlineData("[OnDiskField(0)] public partial uint Bad { set; }", "get accessor")]
    [InlineData("[OnDiskField(0, Length = 4)] public partial Span<byte> Bad { get; set; }", "only a get accessor")]
    [InlineData("public partial uint Bad { get; set; }", "needs [OnDiskField]")]
    public void Generate_UnexpectedPropertyShape_ReportsQCG008(string member, string reason)
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(8)", member));

        Diagnostic diagnostic = AssertOnly(outcome, "QCG008", DiagnosticSeverity.Error, "Bad");
        Assert.Contains(reason, diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture));
        AssertNoView(outcome);
    }

    [Fact]
    public void Generate_PropertyWithImplementation_ReportsQCG008()
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(8)",
            "[OnDiskField(0)] public partial uint Bad { get; }\npublic partial uint Bad { get => 1; }"));

        Assert.Contains("already has an implementation",
            Single(outcome, "QCG008").GetMessage(System.Globalization.CultureInfo.InvariantCulture));
        AssertNoView(outcome);
    }

    [Theory]
    [InlineData("[OnDiskField(0)] public partial uint Data { get; set; }", "Data")]
    [InlineData("[OnDiskField(0)] public partial uint Foo { get; set; }\n[OnDiskField(4)] public partial uint FooWidth { get; set; }", "FooWidth")]
    [InlineData("public static int Create() => 0;", "Create")]
    [InlineData("public const int SizeInBytes = 8;", "SizeInBytes")]
    public void Generate_MemberNamedLikeGeneratedMember_ReportsQCG009(string members, string name)
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Declaration("OnDiskStruct(8)", members));

        AssertOnly(outcome, "QCG009", DiagnosticSeverity.Error, name);
        AssertNoView(outcome);
    }

    [Fact]
    public void Generate_TypeNamedLikeTheReadOnlyTwin_ReportsQCG009()
    {
        string source = Declaration("OnDiskStruct(4)", "[OnDiskField(0)] public partial uint Fine { get; set; }")
            + "\ninternal struct SampleReadOnlyView { }\n";

        Diagnostic diagnostic = AssertOnly(GeneratorHarness.Run(source), "QCG009", DiagnosticSeverity.Error, "SampleReadOnlyView");
        Assert.Contains("read-only twin", diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Generate_OneBadDeclaration_StillEmitsTheGoodOnes()
    {
        const string source = """
            using Qcow2.Layout;

            namespace Sample
            {
                [OnDiskStruct(4)]
                public readonly ref partial struct SampleView
                {
                    [OnDiskField(2)] public partial uint Bad { get; set; }
                }
            }

            namespace Other
            {
                [OnDiskStruct(4)]
                public readonly ref partial struct GoodView
                {
                    [OnDiskField(0)] public partial uint Fine { get; set; }
                }
            }
            """;

        GeneratorOutcome outcome = GeneratorHarness.Run(source);

        Assert.Equal("QCG003", Single(outcome, "QCG003").Id);
        AssertNoView(outcome);
        Assert.Contains("Other.GoodView.g.cs", outcome.HintNames);
        Assert.DoesNotContain("SampleView", outcome.GeneratedText("Qcow2.Layout.GeneratedLayouts.g.cs"));
    }
}
