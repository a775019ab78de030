using System.Collections.Immutable;
using System.Linq;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Text;
using Qcow2.Generators.Model;

namespace Qcow2.Generators;

/// <summary>
/// Implements the partial properties of <c>[OnDiskStruct]</c> declarations as big-endian views,
/// and adds their read-only twins, layout constants and field tables (docs/DESIGN.md,
/// "The generator contract").
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed class LayoutGenerator : IIncrementalGenerator
{
    /// <summary>Step names, for the incrementality tests.</summary>
    internal static class TrackingNames
    {
        public const string Parse = nameof(Parse);
        public const string Models = nameof(Models);
        public const string Diagnostics = nameof(Diagnostics);
        public const string Summaries = nameof(Summaries);
    }

    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        context.RegisterPostInitializationOutput(static post =>
            post.AddSource(PostInitialization.HintName, SourceText.From(PostInitialization.Source, Encoding.UTF8)));

        IncrementalValuesProvider<ParseResult> results = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                Parser.StructAttributeName,
                static (node, _) => node is TypeDeclarationSyntax,
                Parser.Parse)
            .WithTrackingName(TrackingNames.Parse);

        IncrementalValuesProvider<LayoutModel> models = results
            .Where(static result => result.Model is not null)
            .Select(static (result, _) => result.Model!)
            .WithTrackingName(TrackingNames.Models);

        IncrementalValuesProvider<DiagnosticInfo> diagnostics = results
            .SelectMany(static (result, _) => result.Diagnostics)
            .WithTrackingName(TrackingNames.Diagnostics);

        IncrementalValueProvider<EquatableArray<LayoutSummary>> summaries = models
            .Where(static model => model.ListedInAll)
            .Select(static (model, _) => new LayoutSummary(model.FullyQualifiedName))
            .Collect()
            .Select(static (items, _) => new EquatableArray<LayoutSummary>(items.OrderBy(item => item).ToArray()))
            .WithTrackingName(TrackingNames.Summaries);

        context.RegisterSourceOutput(models, static (output, model) =>
            output.AddSource(model.HintName, SourceText.From(Emitter.EmitView(model), Encoding.UTF8)));

        context.RegisterSourceOutput(diagnostics, static (output, diagnostic) =>
            output.ReportDiagnostic(diagnostic.ToDiagnostic()));

        context.RegisterSourceOutput(summaries, static (output, layouts) =>
            output.AddSource("Qcow2.Layout.GeneratedLayouts.g.cs", SourceText.From(Emitter.EmitAll(layouts), Encoding.UTF8)));
    }
}
