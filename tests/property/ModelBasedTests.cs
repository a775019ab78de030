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
        var options = new GeometryOptions { MaxSize = _settings.MaxSize, AllowBacking = false, AllowDataFile = false };
        _settings.Check(nameof(Qcow2Image_RandomScriptsInMemory_ReadAsTheModelAndCheckClean),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands),
            script => ModelRunner.Run(script, g => new Qcow2MemoryHarness(g)),
            ciCases: 200, output);
    }

    [Fact]
    public void Qcow2Image_RandomScriptsInMemoryThroughTheAsyncMethods_ReadAsTheModelAndCheckClean()
    {
        var options = new GeometryOptions { MaxSize = _settings.MaxSize, AllowBacking = false, AllowDataFile = false };
        _settings.Check(nameof(Qcow2Image_RandomScriptsInMemoryThroughTheAsyncMethods_ReadAsTheModelAndCheckClean),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands),
            script => ModelRunner.Run(script, g => new Qcow2MemoryHarness(g, useAsync: true)),
            ciCases: 60, output);
    }

    [Fact]
    public void Qcow2Image_RandomScriptsOnFilesWithChainsAndDataFiles_ReadAsTheModelAndQemuAgrees()
    {
        var options = new GeometryOptions { MaxSize = _settings.MaxSize };
        _settings.Check(nameof(Qcow2Image_RandomScriptsOnFilesWithChainsAndDataFiles_ReadAsTheModelAndQemuAgrees),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands),
            script => ModelRunner.Run(script, g => new Qcow2FileHarness(g)),
            ciCases: 30, output);
    }
}
