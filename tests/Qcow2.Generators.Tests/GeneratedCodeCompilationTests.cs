using Microsoft.CodeAnalysis;

namespace Qcow2.Generators.Tests;

/// <summary>The generated code compiles cleanly: no errors and no warnings.</summary>
public class GeneratedCodeCompilationTests
{
    [Fact]
    public void Generate_RealDeclarations_CompilesWithoutErrorsOrWarnings()
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(GeneratorHarness.ReadRealDeclarations());

        Assert.True(outcome.GeneratorDiagnostics.IsEmpty, GeneratorOutcome.Describe(outcome.GeneratorDiagnostics));
        Assert.True(outcome.CompilationProblems.Count == 0, GeneratorOutcome.Describe(outcome.CompilationProblems));
        string[] expectedViews =
        {
            "HeaderView", "HeaderV2View", "HeaderExtensionHeaderView", "FeatureNameEntryView", "BitmapsExtensionView",
            "EncryptionHeaderPointerView", "SnapshotTableEntryView", "SnapshotExtraDataView", "BitmapDirectoryEntryView",
            "LuksPartitionHeaderView", "LuksKeySlotView",
        };
        foreach (string view in expectedViews)
        {
            Assert.Contains("Qcow2.Spans.Layout." + view + ".g.cs", outcome.HintNames);
        }
    }

    [Fact]
    public void Generate_EveryFieldKind_CompilesWithoutErrorsOrWarnings()
    {
        const string source = """
            using System;
            using Qcow2.Layout;

            namespace Sample;

            [OnDiskStruct(40, NaturalAlignment = true)]
            public readonly ref partial struct AllKindsView
            {
                [OnDiskField(0)] public partial byte U8 { get; set; }
                [OnDiskField(1)] public partial sbyte I8 { get; set; }
                [OnDiskField(2)] public partial ushort U16 { get; set; }
                [OnDiskField(4)] public partial uint U32 { get; set; }
                [OnDiskField(8)] public partial ulong U64 { get; set; }
                [OnDiskField(16)] public partial short I16 { get; set; }
                [OnDiskField(20)] public partial int I32 { get; set; }
                [OnDiskField(24)] public partial long I64 { get; set; }
                [OnDiskField(32, Length = 8)] public partial Span<byte> Tail { get; }
            }
            """;

        GeneratorOutcome outcome = GeneratorHarness.Run(source);

        Assert.True(outcome.GeneratorDiagnostics.IsEmpty, GeneratorOutcome.Describe(outcome.GeneratorDiagnostics));
        Assert.True(outcome.CompilationProblems.Count == 0, GeneratorOutcome.Describe(outcome.CompilationProblems));
    }

    [Fact]
    public void Generate_NestedInternalGlobalNamespaceAndPrivateSetter_CompilesWithoutErrorsOrWarnings()
    {
        const string source = """
            using System;
            using Qcow2.Layout;

            [OnDiskStruct(6)]
            internal ref partial struct GlobalView
            {
                [OnDiskField(0)] public partial uint Value { get; private set; }
                [OnDiskField(4)] internal partial ushort Low { get; }
            }

            namespace Sample.Nested
            {
                public static partial class Outer
                {
                    internal partial record struct Middle
                    {
                        [OnDiskStruct(3)]
                        public readonly ref partial struct InnerView
                        {
                            [OnDiskField(0)] public partial byte First { get; set; }
                            [OnDiskField(1, Length = 2)] public partial Span<byte> Rest { get; }
                            public int Sum() => First + Rest[0] + Rest[1];
                        }
                    }

                    [OnDiskStruct(2)]
                    private readonly ref partial struct HiddenView
                    {
                        [OnDiskField(0)] public partial ushort Word { get; set; }
                    }
                }
            }

            internal static class Use
            {
                public static int Run(Span<byte> buffer)
                {
                    Sample.Nested.Outer.Middle.InnerView inner = Sample.Nested.Outer.Middle.InnerView.Create(buffer);
                    Sample.Nested.Outer.Middle.InnerReadOnlyView twin = inner.AsReadOnly();
                    return inner.Sum() + twin.Rest.Length + GlobalReadOnlyView.SizeInBytes + Qcow2.Layout.GeneratedLayouts.All.Length;
                }
            }
            """;

        GeneratorOutcome outcome = GeneratorHarness.Run(source);

        Assert.True(outcome.GeneratorDiagnostics.IsEmpty, GeneratorOutcome.Describe(outcome.GeneratorDiagnostics));
        Assert.True(outcome.CompilationProblems.Count == 0, GeneratorOutcome.Describe(outcome.CompilationProblems));
        // The private view cannot be named from GeneratedLayouts, so it is left out of the list.
        string all = outcome.GeneratedText("Qcow2.Layout.GeneratedLayouts.g.cs");
        Assert.Contains("global::GlobalView.StructName", all);
        Assert.Contains("global::Sample.Nested.Outer.Middle.InnerView.StructName", all);
        Assert.DoesNotContain("HiddenView", all);
    }

    [Fact]
    public void Generate_FieldNamedLikeAKeyword_CompilesWithoutErrorsOrWarnings()
    {
        const string source = """
            using Qcow2.Layout;

            namespace Sample;

            [OnDiskStruct(8)]
            public readonly ref partial struct KeywordsView
            {
                [OnDiskField(0)] public partial uint @checked { get; set; }
                [OnDiskField(4)] public partial uint @event { get; set; }
            }
            """;

        GeneratorOutcome outcome = GeneratorHarness.Run(source);

        Assert.True(outcome.GeneratorDiagnostics.IsEmpty, GeneratorOutcome.Describe(outcome.GeneratorDiagnostics));
        Assert.True(outcome.CompilationProblems.Count == 0, GeneratorOutcome.Describe(outcome.CompilationProblems));
    }

    [Fact]
    public void Generate_NoDeclarations_EmitsSupportTypesAndEmptyList()
    {
        GeneratorOutcome outcome = GeneratorHarness.Run("namespace Empty { internal static class Nothing { } }");

        Assert.True(outcome.CompilationProblems.Count == 0, GeneratorOutcome.Describe(outcome.CompilationProblems));
        Assert.Equal(
            new[] { "Qcow2.Layout.Attributes.g.cs", "Qcow2.Layout.GeneratedLayouts.g.cs" },
            outcome.HintNames.OrderBy(n => n, StringComparer.Ordinal));
    }
}
