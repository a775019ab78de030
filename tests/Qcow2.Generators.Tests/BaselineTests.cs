namespace Qcow2.Generators.Tests;

/// <summary>
/// The generated text for small samples equals the checked-in files in Baselines/. When a change
/// to the emitter is intended, copy the actual text named in the failure over the baseline.
/// </summary>
public class BaselineTests
{
    private const string Sample = """
        using System;
        using Qcow2.Layout;

        namespace Sample;

        /// <summary>A small structure with one field of each shape.</summary>
        [OnDiskStruct(16, NaturalAlignment = true)]
        public readonly ref partial struct SampleView
        {
            [OnDiskField(0)] public partial uint Magic { get; set; }
            [OnDiskField(4)] public partial sbyte Delta { get; set; }
            [OnDiskField(5)] public partial byte Flags { get; private set; }
            [OnDiskField(6)] public partial short Count { get; set; }
            [OnDiskField(8, Length = 8)] public partial Span<byte> Name { get; }
        }
        """;

    [Theory]
    [InlineData("Sample.SampleView.g.cs", "SampleView.txt")]
    [InlineData("Qcow2.Layout.GeneratedLayouts.g.cs", "GeneratedLayouts.txt")]
    [InlineData("Qcow2.Layout.Attributes.g.cs", "Attributes.txt")]
    public void Generate_SampleStruct_MatchesBaseline(string hintName, string baselineFile)
    {
        GeneratorOutcome outcome = GeneratorHarness.Run(Sample);
        Assert.True(outcome.CompilationProblems.Count == 0, GeneratorOutcome.Describe(outcome.CompilationProblems));

        string actual = outcome.GeneratedText(hintName);
        string expected = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Baselines", baselineFile)).Replace("\r\n", "\n", StringComparison.Ordinal);

        if (actual != expected)
        {
            string actualPath = Path.Combine(Path.GetTempPath(), "qcow2-generator-" + baselineFile);
            File.WriteAllText(actualPath, actual);
            Assert.Fail($"{hintName} differs from tests/Qcow2.Generators.Tests/Baselines/{baselineFile} at {FirstDifference(expected, actual)}."
                + $" The actual text is in {actualPath}; if the change is intended, copy it over the baseline.");
        }
    }

    [Fact]
    public void Generate_TwoRuns_ProduceIdenticalText()
    {
        GeneratorOutcome first = GeneratorHarness.Run(GeneratorHarness.ReadRealDeclarations());
        GeneratorOutcome second = GeneratorHarness.Run(GeneratorHarness.ReadRealDeclarations());

        Assert.Equal(first.HintNames.OrderBy(n => n, StringComparer.Ordinal), second.HintNames.OrderBy(n => n, StringComparer.Ordinal));
        foreach (string hint in first.HintNames)
        {
            Assert.Equal(first.GeneratedText(hint), second.GeneratedText(hint));
        }
    }

    private static string FirstDifference(string expected, string actual)
    {
        string[] expectedLines = expected.Split('\n');
        string[] actualLines = actual.Split('\n');
        for (int i = 0; i < Math.Max(expectedLines.Length, actualLines.Length); i++)
        {
            string e = i < expectedLines.Length ? expectedLines[i] : "<end of file>";
            string a = i < actualLines.Length ? actualLines[i] : "<end of file>";
            if (e != a)
            {
                return $"line {i + 1}:\n  expected: {e}\n  actual:   {a}";
            }
        }

        return "the end of the text";
    }
}
