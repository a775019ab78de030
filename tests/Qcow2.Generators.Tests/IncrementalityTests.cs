using System.Collections;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;
using Qcow2.Generators;

namespace Qcow2.Generators.Tests;

/// <summary>The pipeline caches: edits that do not touch a declaration leave the outputs alone.</summary>
public class IncrementalityTests
{
    private const string Declarations = """
        using System;
        using Qcow2.Layout;

        namespace Sample;

        [OnDiskStruct(16, NaturalAlignment = true)]
        public readonly ref partial struct PairView
        {
            [OnDiskField(0)] public partial ulong First { get; set; }
            [OnDiskField(8)] public partial uint Second { get; set; }
            [OnDiskField(12, Length = 4)] public partial Span<byte> Rest { get; }
        }

        [OnDiskStruct(8)]
        public readonly ref partial struct BrokenView
        {
            [OnDiskField(6)] public partial uint PastTheEnd { get; set; }
        }
        """;

    private const string OtherCode = """
        namespace Sample;

        internal static class Unrelated
        {
            public static int Compute() => 1;
        }
        """;

    private static readonly string[] s_modelSteps =
    {
        LayoutGenerator.TrackingNames.Models, LayoutGenerator.TrackingNames.Diagnostics, LayoutGenerator.TrackingNames.Summaries,
    };

    private static (GeneratorDriver Driver, CSharpCompilation Compilation) RunFirst()
    {
        CSharpCompilation compilation = GeneratorHarness.CreateCompilation(Declarations, OtherCode);
        GeneratorDriver driver = GeneratorHarness.CreateDriver(trackSteps: true).RunGenerators(compilation);
        GeneratorRunResult first = driver.GetRunResult().Results.Single();
        Assert.Contains(first.GeneratedSources, s => s.HintName == "Sample.PairView.g.cs");
        Assert.Contains(first.Diagnostics, d => d.Id == "QCG003");
        return (driver, compilation);
    }

    private static void AssertNothingRegenerated(GeneratorRunResult result)
    {
        foreach (string step in s_modelSteps)
        {
            Assert.True(result.TrackedSteps.ContainsKey(step), $"step {step} was not tracked");
            foreach (IncrementalGeneratorRunStep run in result.TrackedSteps[step])
            {
                foreach ((object _, IncrementalStepRunReason reason) in run.Outputs)
                {
                    Assert.True(reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"step {step}: {reason}");
                }
            }
        }

        Assert.NotEmpty(result.TrackedOutputSteps);
        foreach (KeyValuePair<string, System.Collections.Immutable.ImmutableArray<IncrementalGeneratorRunStep>> output in result.TrackedOutputSteps)
        {
            foreach (IncrementalGeneratorRunStep run in output.Value)
            {
                foreach ((object _, IncrementalStepRunReason reason) in run.Outputs)
                {
                    Assert.True(reason == IncrementalStepRunReason.Cached, $"output {output.Key}: {reason}");
                }
            }
        }

        // The diagnostics survive a cached run.
        Assert.Contains(result.Diagnostics, d => d.Id == "QCG003");
    }

    [Fact]
    public void RunGenerators_UnrelatedFileAdded_OutputsCached()
    {
        (GeneratorDriver driver, CSharpCompilation compilation) = RunFirst();

        CSharpCompilation edited = compilation.AddSyntaxTrees(
            CSharpSyntaxTree.ParseText("namespace Sample; internal sealed class Added { }", GeneratorHarness.ParseOptions, "Added.cs"));
        driver = driver.RunGenerators(edited);

        AssertNothingRegenerated(driver.GetRunResult().Results.Single());
    }

    [Fact]
    public void RunGenerators_MethodBodyChangedElsewhere_OutputsCached()
    {
        (GeneratorDriver driver, CSharpCompilation compilation) = RunFirst();

        SyntaxTree old = compilation.SyntaxTrees.Single(t => t.ToString().Contains("Compute", StringComparison.Ordinal));
        SyntaxTree changed = old.WithChangedText(SourceText.From(OtherCode.Replace("=> 1;", "=> 2 + 40;", StringComparison.Ordinal)));
        driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(old, changed));

        AssertNothingRegenerated(driver.GetRunResult().Results.Single());
    }

    [Fact]
    public void RunGenerators_CommentAddedInsideDeclaration_OutputsCached()
    {
        (GeneratorDriver driver, CSharpCompilation compilation) = RunFirst();

        SyntaxTree old = compilation.SyntaxTrees.Single(t => t.ToString().Contains("PairView", StringComparison.Ordinal));
        string text = Declarations.Replace("[OnDiskField(8)]", "// the second field\n    [OnDiskField(8)]", StringComparison.Ordinal);
        driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(old, old.WithChangedText(SourceText.From(text))));

        // The diagnostic moved a line down, so only its step may change; the views stay cached.
        GeneratorRunResult result = driver.GetRunResult().Results.Single();
        foreach (IncrementalGeneratorRunStep run in result.TrackedSteps[LayoutGenerator.TrackingNames.Models])
        {
            Assert.All(run.Outputs, o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, o.Reason.ToString()));
        }
    }

    [Fact]
    public void RunGenerators_FieldOffsetChanged_RegeneratesTheView()
    {
        // The control for the tests above: a real change must show as Modified, or they prove nothing.
        (GeneratorDriver driver, CSharpCompilation compilation) = RunFirst();

        SyntaxTree old = compilation.SyntaxTrees.Single(t => t.ToString().Contains("PairView", StringComparison.Ordinal));
        string text = Declarations.Replace("[OnDiskField(12, Length = 4)]", "[OnDiskField(12, Length = 3)]", StringComparison.Ordinal);
        driver = driver.RunGenerators(compilation.ReplaceSyntaxTree(old, old.WithChangedText(SourceText.From(text))));

        GeneratorRunResult result = driver.GetRunResult().Results.Single();
        Assert.Contains(result.TrackedSteps[LayoutGenerator.TrackingNames.Models].SelectMany(r => r.Outputs),
            o => o.Reason == IncrementalStepRunReason.Modified);
        Assert.Contains("public const int RestWidth = 3;", result.GeneratedSources.Single(s => s.HintName == "Sample.PairView.g.cs").SourceText.ToString());
    }

    [Fact]
    public void Parse_Results_HoldNoSymbolsSyntaxOrArrays()
    {
        (GeneratorDriver driver, CSharpCompilation _) = RunFirst();

        GeneratorRunResult result = driver.GetRunResult().Results.Single();
        int seen = 0;
        foreach (string step in new[] { LayoutGenerator.TrackingNames.Parse }.Concat(s_modelSteps))
        {
            foreach (IncrementalGeneratorRunStep run in result.TrackedSteps[step])
            {
                foreach ((object value, IncrementalStepRunReason _) in run.Outputs)
                {
                    AssertPlainData(value, step);
                    seen++;
                }
            }
        }

        Assert.True(seen >= 4, $"only {seen} step outputs inspected");
    }

    private static void AssertPlainData(object? value, string path)
    {
        if (value is null or string or Enum || value.GetType().IsPrimitive
            || value is TextSpan or LinePositionSpan or DiagnosticDescriptor)
        {
            return;
        }

        Assert.False(value is ISymbol or SyntaxNode or SyntaxTree or Compilation or SemanticModel or Location or AttributeData,
            $"{path} holds a {value.GetType().Name}");
        Assert.False(value is Array, $"{path} holds a plain array ({value.GetType().Name})");

        if (value is IEnumerable items)
        {
            int index = 0;
            foreach (object? item in items)
            {
                AssertPlainData(item, $"{path}[{index++}]");
            }

            return;
        }

        foreach (PropertyInfo property in value.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetIndexParameters().Length == 0)
            {
                AssertPlainData(property.GetValue(value), path + "." + property.Name);
            }
        }
    }
}
