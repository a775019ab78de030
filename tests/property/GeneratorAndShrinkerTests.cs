using Xunit.Abstractions;
using FsCheck;
using FsCheck.Fluent;
using Qcow2.Property.Tests.Commands;
using Qcow2.Property.Tests.Harness;
using Qcow2.Property.Tests.Runner;

namespace Qcow2.Property.Tests;

/// <summary>The generators, the shrinker and the runner, tested on a plain array disk.</summary>
public class GeneratorAndShrinkerTests(ITestOutputHelper output)
{
    private static readonly GeometryOptions Options = new() { MaxSize = 1 << 20 };

    private static T[] Sample<T>(Gen<T> gen, int count, int size = 30) =>
        gen.Sample(count, new Rnd(PropertySettings.DefaultSeed), size);

    [Fact]
    public void Geometry_Generated_IsValidWithinTheSizeLimitAndCoversTheOptions()
    {
        var all = Sample(ScriptGenerators.Geometry(Options), 600);
        Assert.All(all, g =>
        {
            Assert.True(g.IsValid, g.Describe());
            Assert.InRange(g.Size, 2L * g.ClusterSize - g.ClusterSize + 512, Math.Max(Options.MaxSize, 2L * g.ClusterSize));
        });
        // Every dimension is explored, not just the defaults.
        Assert.Equal(Enumerable.Range(9, 13), all.Select(g => g.ClusterBits).Distinct().Order());
        Assert.Equal(7, all.Select(g => g.RefcountOrder).Distinct().Count());
        Assert.Contains(all, g => g.Compat010);
        Assert.Contains(all, g => g.ExtendedL2);
        Assert.Contains(all, g => g.LazyRefcounts);
        Assert.Contains(all, g => g.Compression == ModelCompression.Zstd);
        Assert.Contains(all, g => g.ExternalDataFile && g.DataFileRaw);
        Assert.Contains(all, g => g.ExternalDataFile && g.Backing.Count > 0);
        Assert.Contains(all, g => g.Backing.Count == 2);
        Assert.Contains(all, g => g.Backing.Count > 0 && g.Backing[^1].Format == "raw");
        Assert.Contains(all, g => g.Size % g.ClusterSize != 0);
    }

    [Fact]
    public void Geometry_RequireDataFile_AlwaysHasOneRawOrNotAcrossClusterSizes()
    {
        // What the data-file power-cut property draws from.
        var all = Sample(ScriptGenerators.Geometry(new GeometryOptions { MaxSize = 1 << 20, MaxClusterBits = 16, RequireDataFile = true }), 300);
        Assert.All(all, g =>
        {
            Assert.True(g.IsValid, g.Describe());
            Assert.True(g.ExternalDataFile, g.Describe());
            Assert.False(g.Compat010, g.Describe());
        });
        Assert.Contains(all, g => g.DataFileRaw);
        Assert.Contains(all, g => !g.DataFileRaw && g.Backing.Count > 0);
        Assert.Contains(all, g => g.ExtendedL2);
        Assert.Contains(all, g => g.LazyRefcounts);
        Assert.Equal(Enumerable.Range(9, 8), all.Select(g => g.ClusterBits).Distinct().Order());
        Assert.All(Sample(ScriptGenerators.Script(new GeometryOptions { MaxSize = 1 << 20, RequireDataFile = true }, 30), 100),
            s => Assert.DoesNotContain(s.Commands, c => c is CompressedWriteCommand));
    }

    [Fact]
    public void Commands_Generated_StayWithinTheDiskAndHitEveryKindOfBoundary()
    {
        var scripts = Sample(ScriptGenerators.Script(Options, 30), 300);
        var commands = scripts.SelectMany(s => s.Commands.Select(c => (s.Geometry, Command: c))).ToArray();
        Assert.All(scripts, s => Assert.True(s.IsValid, s.ToString()));
        foreach (var (g, c) in commands)
        {
            if (c.Range is { } r)
            {
                Assert.InRange(r.Offset, 0, g.Size - 1);
                Assert.InRange(r.Length, 1, g.Size - r.Offset);
            }
            if (c is CompressedWriteCommand cw)
            {
                Assert.True(g.AllowsCompression);
                Assert.Equal(0, cw.Offset % g.ClusterSize);
                Assert.True(cw.Length % g.ClusterSize == 0 || cw.Offset + cw.Length == g.Size);
            }
        }
        var writes = commands.Where(x => x.Command is WriteCommand).Select(x => (x.Geometry, W: (WriteCommand)x.Command)).ToArray();
        void Covered(string what, Func<(ImageGeometry Geometry, WriteCommand W), bool> predicate) =>
            Assert.True(writes.Any(predicate), "no generated write " + what);
        Covered("at an unaligned offset", x => x.W.Offset % 512 != 0);
        Covered("at a cluster-aligned offset", x => x.W.Offset % x.Geometry.ClusterSize == 0);
        Covered("of one byte", x => x.W.Length == 1);
        Covered("crossing a cluster boundary", x => x.W.Offset / x.Geometry.ClusterSize != (x.W.Offset + x.W.Length - 1) / x.Geometry.ClusterSize);
        Covered("crossing a subcluster boundary inside a cluster", x => x.Geometry.ExtendedL2
            && x.W.Offset / x.Geometry.SubclusterSize != (x.W.Offset + x.W.Length - 1) / x.Geometry.SubclusterSize
            && x.W.Offset / x.Geometry.ClusterSize == (x.W.Offset + x.W.Length - 1) / x.Geometry.ClusterSize);
        Covered("ending at the end of the disk", x => x.W.Offset + x.W.Length == x.Geometry.Size);
        Covered("with a random pattern", x => x.W.Pattern.Ramp);
        Covered("with a fill pattern", x => !x.W.Pattern.Ramp);
        foreach (var kind in new[] { typeof(WriteZeroesCommand), typeof(DiscardCommand), typeof(CompressedWriteCommand), typeof(ReadCommand), typeof(FlushCommand), typeof(ReopenCommand) })
            Assert.Contains(commands, x => x.Command.GetType() == kind);
        Assert.Contains(commands, x => x.Command is WriteZeroesCommand { Unmap: true });
        Assert.Contains(commands, x => x.Command is CompressedWriteCommand c && c.Length % x.Geometry.ClusterSize != 0);
    }

    [Fact]
    public void Commands_Generated_HaveDistinctPatternsWithinAScript()
    {
        foreach (var s in Sample(ScriptGenerators.Script(Options, 30), 100))
        {
            var seeds = s.Commands.Select(c => c switch
            {
                WriteCommand w => (int?)w.Pattern.Seed,
                CompressedWriteCommand cw => cw.Pattern.Seed,
                _ => null,
            }).OfType<int>().ToArray();
            Assert.Equal(seeds.Length, seeds.Distinct().Count());
            Assert.DoesNotContain(0, seeds);
        }
    }

    [Fact]
    public void Commands_ToString_ReadsAsAScriptLine()
    {
        Assert.Equal("write -P 0x5a 0x10200 0x3000", new WriteCommand(0x10200, 0x3000, DataPattern.Fill(0x5a)).ToString());
        Assert.Equal("write -R 0x07 0x0 0x1", new WriteCommand(0, 1, DataPattern.Random(7)).ToString());
        Assert.Equal("write -z -u 0x200 0x400", new WriteZeroesCommand(0x200, 0x400, true).ToString());
        Assert.Equal("write -z 0x200 0x400", new WriteZeroesCommand(0x200, 0x400, false).ToString());
        Assert.Equal("write -c -P 0x11 0x10000 0x10000", new CompressedWriteCommand(0x10000, 0x10000, DataPattern.Fill(0x11)).ToString());
        Assert.Equal("discard 0x0 0x10000", new DiscardCommand(0, 0x10000).ToString());
        Assert.Equal("read 0x1 0x2", new ReadCommand(1, 2).ToString());
        Assert.Equal("flush", new FlushCommand().ToString());
        Assert.Equal("reopen", new ReopenCommand().ToString());
    }

    [Fact]
    public void DataPattern_Random_DiffersAtNeighbouringOffsetsSectorsAndClusters()
    {
        var p = DataPattern.Random(0x33);
        var block = p.Create(0x10000, 0x20000);
        Assert.NotEqual(block.AsSpan(0, 512).ToArray(), block.AsSpan(1, 512).ToArray());
        Assert.NotEqual(block.AsSpan(0, 512).ToArray(), block.AsSpan(512, 512).ToArray());
        Assert.NotEqual(block.AsSpan(0, 512).ToArray(), block.AsSpan(0x10000, 512).ToArray());
        Assert.NotEqual(block.AsSpan(0, 64).ToArray(), DataPattern.Random(0x34).Create(0x10000, 64));
        Assert.Equal(p.Create(0x10100, 16), block.AsSpan(0x100, 16).ToArray());
    }

    [Fact]
    public void Shrink_EveryCandidate_IsValidAndStrictlyLighter()
    {
        var checkedCandidates = 0;
        foreach (var s in Sample(ScriptGenerators.Script(Options, 12), 60))
        {
            foreach (var candidate in ScriptGenerators.Shrink(s))
            {
                Assert.True(candidate.IsValid, candidate.ToString());
                Assert.True(candidate.Weight < s.Weight, $"not lighter:{s}=>{candidate}");
                checkedCandidates++;
            }
        }
        Assert.True(checkedCandidates > 1000, $"only {checkedCandidates} candidates");
    }

    [Fact]
    public void Shrink_FirstCandidates_RemoveCommandsBeforeSimplifyingThem()
    {
        var s = Sample(ScriptGenerators.Script(Options, 30), 1, size: 30)[0];
        var first = ScriptGenerators.Shrink(s).First();
        Assert.True(first.Commands.Count < s.Commands.Count || s.Commands.Count == 0);
    }

    [Fact]
    public void Runner_CorrectDisk_PassesEveryScript()
    {
        var settings = PropertySettings.FromEnvironment() with { Cases = null };
        var runs = 0;
        settings.Check(nameof(Runner_CorrectDisk_PassesEveryScript), ScriptGenerators.ScriptArbitrary(Options, 30), s =>
        {
            runs++;
            ModelRunner.Run(s, g => new FlatDiskHarness(g));
        }, ciCases: 60, output);
        Assert.Equal(settings.CasesOr(60), runs);
    }

    [Fact]
    public void Runner_DiskThatLosesTheLastByteOfClusterCrossingWrites_FailsWithAOneCommandScript()
    {
        var settings = new PropertySettings();
        TestScript? lastFailing = null;
        var e = Assert.Throws<PropertyFailedException>(() => settings.Check("buggy", ScriptGenerators.ScriptArbitrary(Options, 30), s =>
        {
            try
            {
                ModelRunner.Run(s, g => new FlatDiskHarness(g,
                    (offset, length) => offset / g.ClusterSize != (offset + length - 1) / g.ClusterSize));
            }
            catch (ModelMismatchException)
            {
                lastFailing = s;
                throw;
            }
        }, ciCases: 200, output));
        output.WriteLine(e.Message);
        Assert.NotNull(lastFailing);
        Assert.Contains("QCOW2_PROP_SEED=0x", e.Message);
        Assert.Contains(lastFailing.Commands[0].ToString()!, e.Message);
        var only = Assert.Single(lastFailing.Commands);
        var w = Assert.IsType<WriteCommand>(only);
        var c = lastFailing.Geometry.ClusterSize;
        // Minimal: crosses one boundary by one byte each side, no backing, plain options.
        Assert.Equal(2, w.Length);
        Assert.Equal(c - 1, w.Offset % c);
        Assert.False(w.Pattern.Ramp);
        Assert.Empty(lastFailing.Geometry.Backing);
        Assert.False(lastFailing.Geometry.ExternalDataFile);
    }

    [Fact]
    public void Runner_DiskThatIgnoresWrites_FailsAtTheFirstCommand()
    {
        var g = new ImageGeometry { ClusterBits = 12, Size = 1 << 14 };
        var script = new TestScript(g, [new WriteCommand(100, 10, DataPattern.Fill(1))]);
        var e = Assert.Throws<ModelMismatchException>(() => ModelRunner.Run(script, geo => new FlatDiskHarness(geo, (_, _) => true)));
        Assert.Contains("[#1 write -P 0x01 0x64 0xa]", e.Message);
        Assert.Contains("guest byte 0x6d", e.Message);
    }

    [Fact]
    public void Runner_Reopen_OpensTheDiskAgain()
    {
        var g = new ImageGeometry { ClusterBits = 12, Size = 1 << 14 };
        var script = new TestScript(g, [new ReopenCommand(), new FlushCommand(), new ReopenCommand()]);
        FlatDiskHarness? h = null;
        ModelRunner.Run(script, geo => h = new FlatDiskHarness(geo));
        Assert.Equal(3, h!.Opens);
    }
}
