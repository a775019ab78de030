using FsCheck;
using FsCheck.Fluent;

namespace Qcow2.Property.Tests.Commands;

/// <summary>What a property wants from generated geometries.</summary>
internal sealed record GeometryOptions
{
    public long MaxSize { get; init; } = 4 << 20;
    public int MinClusterBits { get; init; } = 9;
    public int MaxClusterBits { get; init; } = 21;
    public bool AllowBacking { get; init; } = true;
    public bool AllowDataFile { get; init; } = true;
    /// <summary>Every geometry has an external data file (raw or not); implies v3.</summary>
    public bool RequireDataFile { get; init; }
    public bool AllowCompat010 { get; init; } = true;
    public bool AllowReopen { get; init; } = true;
}

/// <summary>
/// FsCheck generators for geometries and command scripts, and the script shrinker. Offsets and
/// lengths are drawn to hit the interesting places: any byte, sector-, subcluster- and
/// cluster-aligned, just before a cluster boundary, and lengths from one byte to several clusters.
/// </summary>
internal static class ScriptGenerators
{
    // Small clusters dominate (many tables, many boundaries), but 2 MiB appears too.
    private static readonly (int Weight, int Bits)[] ClusterBitWeights =
    [
        (3, 9), (1, 10), (1, 11), (2, 12), (1, 13), (3, 14), (1, 15), (3, 16), (1, 17), (1, 18), (1, 19), (1, 20), (1, 21),
    ];

    public static Gen<ImageGeometry> Geometry(GeometryOptions o)
    {
        var bits = Gen.Frequency(ClusterBitWeights
            .Where(w => w.Bits >= o.MinClusterBits && w.Bits <= o.MaxClusterBits)
            .Select(w => (w.Weight, Gen.Constant(w.Bits))));
        return
            from clusterBits in bits
            from size in DiskSize(clusterBits, o.MaxSize)
            from compat010 in o.AllowCompat010 && !o.RequireDataFile ? Gen.Frequency((1, Gen.Constant(true)), (5, Gen.Constant(false))) : Gen.Constant(false)
            from refcountOrder in compat010 ? Gen.Constant(4) : Gen.Choose(0, 6)
            from extendedL2 in !compat010 && clusterBits >= 14 ? Gen.Frequency((1, Gen.Constant(true)), (2, Gen.Constant(false))) : Gen.Constant(false)
            from lazy in compat010 ? Gen.Constant(false) : Gen.Frequency((1, Gen.Constant(true)), (4, Gen.Constant(false)))
            from zstd in compat010 ? Gen.Constant(false) : Gen.Frequency((1, Gen.Constant(true)), (2, Gen.Constant(false)))
            from dataFile in o.RequireDataFile ? Gen.Constant(true)
                : !compat010 && o.AllowDataFile ? Gen.Frequency((1, Gen.Constant(true)), (5, Gen.Constant(false))) : Gen.Constant(false)
            from depth in o.AllowBacking ? Gen.Frequency((5, Gen.Constant(0)), (3, Gen.Constant(1)), (1, Gen.Constant(2))) : Gen.Constant(0)
            from backing in BackingChain(depth, size, clusterBits)
            from dataFileRaw in dataFile && depth == 0 ? Gen.Elements(true, false) : Gen.Constant(false)
            select new ImageGeometry
            {
                ClusterBits = clusterBits,
                Size = size,
                Compat010 = compat010,
                RefcountOrder = refcountOrder,
                ExtendedL2 = extendedL2,
                LazyRefcounts = lazy,
                Compression = zstd ? ModelCompression.Zstd : ModelCompression.Zlib,
                ExternalDataFile = dataFile,
                DataFileRaw = dataFileRaw,
                Backing = backing,
            };
    }

    /// <summary>A size of at least two clusters, within the limit when the cluster size allows, sometimes with a partial last cluster.</summary>
    public static Gen<long> DiskSize(int clusterBits, long maxSize)
    {
        var cluster = 1L << clusterBits;
        var maxClusters = (int)Math.Clamp(maxSize / cluster, 2, 256);
        var sectorsPerCluster = (int)(cluster / 512);
        return
            from clusters in Gen.Choose(2, maxClusters)
            from tailSectors in sectorsPerCluster > 1
                ? Gen.Frequency((3, Gen.Constant(0)), (1, Gen.Choose(1, sectorsPerCluster - 1)))
                : Gen.Constant(0)
            select clusters * cluster - (tailSectors > 0 ? cluster - tailSectors * 512L : 0);
    }

    private static Gen<IReadOnlyList<BackingLayer>> BackingChain(int depth, long topSize, int topClusterBits)
    {
        if (depth == 0) return Gen.Constant<IReadOnlyList<BackingLayer>>(Array.Empty<BackingLayer>());
        return Gen.CollectToArray(Enumerable.Range(0, depth).Select(i => BackingLayerGen(topSize, bottom: i == depth - 1)))
            .Select(layers => (IReadOnlyList<BackingLayer>)layers);
    }

    private static Gen<BackingLayer> BackingLayerGen(long topSize, bool bottom)
    {
        var sizes = Gen.Frequency(
            (3, Gen.Constant(topSize)),
            (2, Gen.Choose(1, (int)(topSize / 512)).Select(s => s * 512L)),
            (1, Gen.Choose(1, 64).Select(s => topSize + s * 512L)));
        return
            from format in bottom ? Gen.Frequency((3, Gen.Constant("qcow2")), (1, Gen.Constant("raw"))) : Gen.Constant("qcow2")
            from clusterBits in Gen.Choose(9, 16)
            from size in sizes
            from writes in Gen.Choose(1, 4).SelectMany(n => Gen.ArrayOf(Write(size, 1L << clusterBits, 1L << clusterBits), n))
            select new BackingLayer { Format = format, ClusterBits = clusterBits, Size = size, Writes = writes };
    }

    /// <summary>An offset and a length inside a disk of <paramref name="size"/> bytes.</summary>
    public static Gen<(long Offset, long Length)> Range(long size, long clusterSize, long subclusterSize)
    {
        var clusters = Math.Max(1, (size + clusterSize - 1) / clusterSize);
        Gen<long> Below(long limit) => Gen.Choose(0, (int)Math.Min(int.MaxValue, limit - 1)).Select(v => (long)v);
        var offset = Gen.Frequency(
            (3, Below(size)),
            (3, Below(size).Select(v => v / 512 * 512)),
            (2, Below(size).Select(v => v / subclusterSize * subclusterSize)),
            (2, Below(size).Select(v => v / clusterSize * clusterSize)),
            (2, from c in Gen.Choose(1, (int)Math.Min(int.MaxValue, clusters)) from back in Gen.Choose(1, 1024)
                select Math.Clamp(c * clusterSize - back, 0, size - 1)));
        var length = Gen.Frequency(
            (3, Gen.Choose(1, 600).Select(v => (long)v)),
            (3, Gen.Choose(1, 16).Select(v => v * 512L)),
            (2, Gen.Choose(1, (int)Math.Min(int.MaxValue, 2 * clusterSize)).Select(v => (long)v)),
            (2, Gen.Choose(1, 4).Select(v => v * clusterSize)),
            (1, Gen.Choose(1, (int)Math.Min(int.MaxValue, 4 * clusterSize)).Select(v => (long)v)));
        return
            from o in offset
            from l in length
            select (o, Math.Max(1, Math.Min(l, size - o)));
    }

    private static Gen<DataPattern> Pattern =>
        from seed in Gen.Choose(1, 255)
        from ramp in Gen.Elements(true, false)
        select new DataPattern((byte)seed, ramp);

    private static Gen<WriteCommand> Write(long size, long clusterSize, long subclusterSize) =>
        from r in Range(size, clusterSize, subclusterSize)
        from p in Pattern
        select new WriteCommand(r.Offset, r.Length, p);

    /// <summary>One command valid for <paramref name="g"/>.</summary>
    public static Gen<DiskCommand> Command(ImageGeometry g, bool allowReopen = true)
    {
        var range = Range(g.Size, g.ClusterSize, g.SubclusterSize);
        var clusters = (g.Size + g.ClusterSize - 1) / g.ClusterSize;
        var choices = new List<(int, Gen<DiskCommand>)>
        {
            (30, Write(g.Size, g.ClusterSize, g.SubclusterSize).Select(c => (DiskCommand)c)),
            (8, range.Select(r => (DiskCommand)new WriteZeroesCommand(r.Offset, r.Length, false))),
            (6, range.Select(r => (DiskCommand)new WriteZeroesCommand(r.Offset, r.Length, true))),
            (8, range.Select(r => (DiskCommand)new DiscardCommand(r.Offset, r.Length))),
            (8, range.Select(r => (DiskCommand)new ReadCommand(r.Offset, r.Length))),
            (5, Gen.Constant((DiskCommand)new FlushCommand())),
        };
        if (allowReopen) choices.Add((3, Gen.Constant((DiskCommand)new ReopenCommand())));
        if (g.AllowsCompression)
        {
            // Whole clusters; a write reaching the end of the disk may end with its short last cluster.
            choices.Add((6,
                from first in Gen.Choose(0, (int)clusters - 1)
                from count in Gen.Frequency((4, Gen.Constant(1)), (1, Gen.Choose(1, (int)Math.Min(3, clusters - first))))
                from p in Pattern
                let offset = first * (long)g.ClusterSize
                select (DiskCommand)new CompressedWriteCommand(offset, Math.Min(count * (long)g.ClusterSize, g.Size - offset), p)));
        }
        return Gen.Frequency(choices);
    }

    /// <summary>A script on <paramref name="g"/>: up to the FsCheck size (capped by <paramref name="maxCommands"/>) commands, patterns all distinct.</summary>
    public static Gen<IReadOnlyList<DiskCommand>> Commands(ImageGeometry g, int maxCommands, bool allowReopen = true) =>
        Gen.Sized(size =>
            from count in Gen.Choose(1, Math.Clamp(size, 1, maxCommands))
            from commands in Gen.ArrayOf(Command(g, allowReopen), count)
            from firstSeed in Gen.Choose(1, 255)
            select DistinctPatterns(commands, firstSeed));

    public static Gen<TestScript> Script(GeometryOptions o, int maxCommands) =>
        from g in Geometry(o)
        from commands in Commands(g, maxCommands, o.AllowReopen)
        select new TestScript(g, commands);

    /// <summary>
    /// Scripts with shrinking. <paramref name="shrinkBudget"/> caps the shrink candidates tried in one
    /// property check, for properties whose every run starts processes (a failure then still reports
    /// a partly shrunk script in bounded time).
    /// </summary>
    public static Arbitrary<TestScript> ScriptArbitrary(GeometryOptions o, int maxCommands, int shrinkBudget = int.MaxValue)
    {
        var left = shrinkBudget;
        return Arb.From(Script(o, maxCommands), script => Budgeted(Shrink(script)));

        IEnumerable<TestScript> Budgeted(IEnumerable<TestScript> candidates)
        {
            foreach (var c in candidates)
            {
                if (Interlocked.Decrement(ref left) < 0) yield break;
                yield return c;
            }
        }
    }

    /// <summary>Gives each data-writing command its own pattern byte so that misplaced data names its source.</summary>
    private static IReadOnlyList<DiskCommand> DistinctPatterns(DiskCommand[] commands, int firstSeed)
    {
        var seed = firstSeed;
        var result = new DiskCommand[commands.Length];
        for (var i = 0; i < commands.Length; i++)
        {
            result[i] = commands[i] switch
            {
                WriteCommand w => new WriteCommand(w.Offset, w.Length, w.Pattern with { Seed = NextSeed(ref seed) }),
                CompressedWriteCommand c => new CompressedWriteCommand(c.Offset, c.Length, c.Pattern with { Seed = NextSeed(ref seed) }),
                var other => other,
            };
        }
        return result;

        static byte NextSeed(ref int s)
        {
            var value = (byte)s;
            s = s % 255 + 1; // 1..255, never zero (zero would look like write-zeroes)
            return value;
        }
    }

    /// <summary>
    /// Simpler scripts that may still fail, simplest first: fewer commands (halves, then quarters,
    /// down to single commands), a simpler geometry, then each command made simpler. Every candidate
    /// is valid and strictly lighter by <see cref="TestScript.Weight"/>.
    /// </summary>
    public static IEnumerable<TestScript> Shrink(TestScript script)
    {
        var commands = script.Commands;
        for (var chunk = commands.Count; chunk >= 1; chunk /= 2)
        {
            for (var start = 0; start + chunk <= commands.Count; start += chunk)
            {
                var fewer = commands.Take(start).Concat(commands.Skip(start + chunk)).ToArray();
                yield return script.With(fewer);
            }
        }

        foreach (var g in ShrinkGeometry(script.Geometry))
        {
            var candidate = script.With(g);
            if (candidate.IsValid) yield return candidate;
        }

        for (var i = 0; i < commands.Count; i++)
        {
            foreach (var simpler in commands[i].Shrink(script.Geometry))
            {
                if (!simpler.IsValidFor(script.Geometry)) continue;
                var copy = commands.ToArray();
                copy[i] = simpler;
                yield return script.With(copy);
            }
        }
    }

    private static IEnumerable<ImageGeometry> ShrinkGeometry(ImageGeometry g)
    {
        if (g.Backing.Count > 0)
        {
            yield return g with { Backing = Array.Empty<BackingLayer>() };
            if (g.Backing.Count > 1) yield return g with { Backing = g.Backing.Take(g.Backing.Count - 1).ToArray() };
        }
        if (g.DataFileRaw) yield return g with { DataFileRaw = false };
        if (g.ExternalDataFile) yield return g with { ExternalDataFile = false, DataFileRaw = false };
        if (g.ExtendedL2) yield return g with { ExtendedL2 = false };
        if (g.LazyRefcounts) yield return g with { LazyRefcounts = false };
        if (g.Compat010) yield return g with { Compat010 = false };
        if (g.RefcountOrder != 4) yield return g with { RefcountOrder = 4 };
        if (g.Compression == ModelCompression.Zstd) yield return g with { Compression = ModelCompression.Zlib };
        for (var l = 0; l < g.Backing.Count; l++)
        {
            var layer = g.Backing[l];
            for (var w = 0; w < layer.Writes.Count; w++)
            {
                var layers = g.Backing.ToArray();
                layers[l] = layer with { Writes = layer.Writes.Where((_, j) => j != w).ToArray() };
                yield return g with { Backing = layers };
            }
        }
    }
}
