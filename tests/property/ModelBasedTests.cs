using Qcow2.Property.Tests.Commands;
using Qcow2.Property.Tests.Qcow2;
using Qcow2.Property.Tests.Runner;
using Xunit.Abstractions;

namespace Qcow2.Property.Tests;

/// <summary>
/// Random command scripts against Qcow2Image and the reference model: after every command the
/// image reads as the model says; at the end the checks are clean. Seed, case count and sizes come
/// from the environment (see README.md); a failure prints the seed and the shrunk script.
/// </summary>
public class ModelBasedTests(ITestOutputHelper output)
{
    private readonly PropertySettings _settings = PropertySettings.FromEnvironment();

    [Fact]
    public void Qcow2Image_RandomScriptsInMemory_ReadAsTheModelAndCheckClean()
    {
        var options = new GeometryOptions { MaxSize = _settings.MaxSize, AllowBacking = false };
        _settings.Check(nameof(Qcow2Image_RandomScriptsInMemory_ReadAsTheModelAndCheckClean),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands),
            script => ModelRunner.Run(script, g => new Qcow2MemoryHarness(g)),
            ciCases: 200, output);
    }

    [Fact]
    public void Qcow2Image_RandomScriptsInMemoryThroughTheAsyncMethods_ReadAsTheModelAndCheckClean()
    {
        var options = new GeometryOptions { MaxSize = _settings.MaxSize, AllowBacking = false };
        _settings.Check(nameof(Qcow2Image_RandomScriptsInMemoryThroughTheAsyncMethods_ReadAsTheModelAndCheckClean),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands),
            script => ModelRunner.Run(script, g => new Qcow2MemoryHarness(g, useAsync: true)),
            ciCases: 60, output);
    }

    [Fact]
    public void Qcow2Image_RandomScriptsInMemoryWithTinyMetadataCaches_ReadAsTheModelAndCheckClean()
    {
        var options = new GeometryOptions { MaxSize = _settings.MaxSize, AllowBacking = false };
        _settings.Check(nameof(Qcow2Image_RandomScriptsInMemoryWithTinyMetadataCaches_ReadAsTheModelAndCheckClean),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands),
            script => ModelRunner.Run(script, g => new Qcow2MemoryHarness(g, open: Qcow2MemoryHarness.TinyCaches)),
            ciCases: 60, output);
    }

    [Fact]
    public void Qcow2Image_RandomScriptsOnFilesWithChainsAndDataFiles_ReadAsTheModelAndQemuAgrees()
    {
        var options = new GeometryOptions { MaxSize = _settings.MaxSize };
        _settings.Check(nameof(Qcow2Image_RandomScriptsOnFilesWithChainsAndDataFiles_ReadAsTheModelAndQemuAgrees),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands, shrinkBudget: 400),
            // Each run starts qemu-img processes: bound the shrinking.
            script => ModelRunner.Run(script, g => new Qcow2FileHarness(g)),
            ciCases: 30, output);
    }

    [Fact]
    public void Qcow2Image_CompressedWriteAfterItsHostClusterWasFreedAndReused_StaysConsistent()
    {
        // The sequence that makes QEMU 7.2 corrupt its own image (found by the oracle test): a
        // compressed cluster is discarded, its host cluster reused by a normal write, then another
        // compressed write. Our image must stay consistent for our check and for qemu-img check.
        var g = new ImageGeometry { ClusterBits = 16, Size = 0x3a200 };
        var script = new TestScript(g,
        [
            new CompressedWriteCommand(0x10000, 0x10000, DataPattern.Fill(0xf3)),
            new DiscardCommand(0xc8f3, 0x1370d),
            new WriteCommand(0xfd55, 0x1200, DataPattern.Random(0xf4)),
            new CompressedWriteCommand(0x20000, 0x10000, DataPattern.Random(0xf6)),
            new ReopenCommand(),
        ]);
        ModelRunner.Run(script, geometry => new Qcow2FileHarness(geometry));
    }
}
