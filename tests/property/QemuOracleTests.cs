using System.Globalization;
using Qcow2.Property.Tests.Commands;
using Qcow2.Property.Tests.Qcow2;
using Qcow2.Property.Tests.Runner;
using Qcow2.Tests.Shared;
using Qcow2.Volume;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Storage;
using Xunit.Abstractions;

namespace Qcow2.Property.Tests;

/// <summary>
/// The same generated scripts run by QEMU itself (qemu-io on a qemu-img-created image). The model
/// must accept what QEMU produced (so the model is not stricter than the oracle), and our reader
/// and checker must agree with QEMU on the images QEMU wrote.
/// </summary>
public class QemuOracleTests(ITestOutputHelper output)
{
    private readonly PropertySettings _settings = PropertySettings.FromEnvironment();

    [Fact]
    public void QemuIo_RandomScripts_AgreeWithTheModelAndOurReader()
    {
        var options = new GeometryOptions { MaxSize = Math.Min(_settings.MaxSize, 2 << 20), AllowReopen = false };
        _settings.Check(nameof(QemuIo_RandomScripts_AgreeWithTheModelAndOurReader),
            ScriptGenerators.ScriptArbitrary(options, _settings.MaxCommands, shrinkBudget: 400),
            RunWithQemu, ciCases: 25, output);
    }

    private static void RunWithQemu(TestScript script)
    {
        var g = script.Geometry;
        using var dir = new TempDir();
        Qcow2FileHarness.CreateBackingChain(dir, g);
        var top = dir.File("top.qcow2");
        var create = new List<string>
        {
            "create", "-q", "-f", "qcow2", "-o",
            string.Join(',', CreateOptions(g, dir)),
            top, g.Size.ToString(CultureInfo.InvariantCulture),
        };
        QemuTools.Img(create.ToArray());

        var model = ModelRunner.BuildModel(g);
        var io = new List<string> { "-f", "qcow2", "-d", "unmap" };
        for (var i = 0; i < script.Commands.Count; i++)
        {
            var c = script.Commands[i];
            c.Apply(model);
            var line = c switch
            {
                WriteCommand w => $"write -q -s {PatternFile(dir, i, w.Offset, w.Length, w.Pattern)} {w.Offset} {w.Length}",
                // QEMU 7.2 can corrupt its own images when compressed writes follow frees (it packs the
                // next compressed cluster into a host cluster freed and reused meanwhile: "OFLAG_COPIED
                // data cluster ... refcount=2"), and compresses only into unallocated clusters. So QEMU
                // gets a plain write of the same bytes; the model is the same.
                CompressedWriteCommand cw => $"write -q -s {PatternFile(dir, i, cw.Offset, cw.Length, cw.Pattern)} {cw.Offset} {cw.Length}",
                WriteZeroesCommand z => $"write -q -z{(z.Unmap ? " -u" : "")} {z.Offset} {z.Length}",
                DiscardCommand d => $"discard -q {d.Offset} {d.Length}",
                FlushCommand => "flush",
                _ => null,
            };
            if (line is null) continue;
            foreach (var part in line.Split('\u0000'))
            {
                io.Add("-c");
                io.Add(part);
            }
        }
        io.Add(top);
        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuIo, io.ToArray());
        if (code != 0 || stdout.Contains("failed", StringComparison.OrdinalIgnoreCase) || stderr.Length > 0)
            throw new InvalidOperationException($"qemu-io exited {code}: {stdout}{stderr}");

        var check = QemuTools.Run(QemuTools.QemuImg, "check", "-f", "qcow2", top);
        if (check.ExitCode != 0) throw new InvalidOperationException($"qemu-img check of QEMU's own image exited {check.ExitCode}: {check.StdOut}{check.StdErr}");

        var raw = dir.File("qemu.raw");
        QemuTools.Img("convert", "-f", "qcow2", "-O", "raw", top, raw);
        if (model.Verify(0, File.ReadAllBytes(raw)) is { } modelMismatch)
            throw new InvalidOperationException("the model rejects what QEMU wrote: " + modelMismatch);

        // The model is now settled to QEMU's content: our reader must see exactly that.
        using (var image = Qcow2Image.Open(top, new Qcow2OpenOptions { ReadOnly = true, ExternalFilePolicy = ExternalFilePolicy.AllowUnder(dir.Path) }))
        {
            var ours = new byte[g.Size];
            image.Read(0, ours);
            if (model.Verify(0, ours) is { } readMismatch)
                throw new InvalidOperationException("our reader disagrees with QEMU: " + readMismatch);
        }
        using (var storage = FileStorage.Open(top, writable: false))
            GeometryMapping.CheckClean(storage, "our check of QEMU's image");
    }

    private static IEnumerable<string> CreateOptions(ImageGeometry g, TempDir dir)
    {
        yield return "cluster_size=" + g.ClusterSize.ToString(CultureInfo.InvariantCulture);
        yield return "refcount_bits=" + g.RefcountBits.ToString(CultureInfo.InvariantCulture);
        yield return "compat=" + (g.Compat010 ? "0.10" : "1.1");
        if (g.ExtendedL2) yield return "extended_l2=on";
        if (g.LazyRefcounts) yield return "lazy_refcounts=on";
        if (!g.Compat010) yield return "compression_type=" + (g.Compression == ModelCompression.Zstd ? "zstd" : "zlib");
        if (g.ExternalDataFile)
        {
            yield return "data_file=" + dir.File("top.data");
            if (g.DataFileRaw) yield return "data_file_raw=on";
        }
        if (g.Backing.Count > 0)
        {
            yield return "backing_file=" + Qcow2FileHarness.LayerName(g, 0);
            yield return "backing_fmt=" + g.Backing[0].Format;
        }
    }

    private static string PatternFile(TempDir dir, int index, long offset, long length, DataPattern pattern)
    {
        var path = dir.File($"cmd{index}.bin");
        File.WriteAllBytes(path, pattern.Create(offset, checked((int)length)));
        return path;
    }
}
