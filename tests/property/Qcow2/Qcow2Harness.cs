using System.Globalization;
using Qcow2.Property.Tests.Commands;
using Qcow2.Property.Tests.Model;
using Qcow2.Property.Tests.Runner;
using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume;
using Qcow2.Volume.Chain;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;

namespace Qcow2.Property.Tests.Qcow2;

/// <summary><see cref="IGuestDisk"/> over a <see cref="Qcow2Image"/>, through its synchronous or its asynchronous methods.</summary>
internal sealed class Qcow2GuestDisk(Qcow2Image image, bool useAsync = false) : IGuestDisk
{
    public Qcow2Image Image { get; } = image;

    public long Size => Image.Size;

    public void Read(long offset, Span<byte> destination)
    {
        if (!useAsync)
        {
            Image.Read(offset, destination);
            return;
        }
        var buffer = new byte[destination.Length];
        Image.ReadAsync(offset, buffer).AsTask().GetAwaiter().GetResult();
        buffer.CopyTo(destination);
    }

    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        if (useAsync) Image.WriteAsync(offset, source.ToArray()).AsTask().GetAwaiter().GetResult();
        else Image.Write(offset, source);
    }

    public void WriteZeroes(long offset, long length, bool unmap) => Image.WriteZeroes(offset, length, unmap);

    public void Discard(long offset, long length) => Image.Discard(offset, length);

    public void WriteCompressed(long offset, ReadOnlySpan<byte> source)
    {
        if (useAsync) Image.WriteCompressedAsync(offset, source.ToArray()).AsTask().GetAwaiter().GetResult();
        else Image.WriteCompressed(offset, source);
    }

    public void Flush()
    {
        if (useAsync) Image.FlushAsync().AsTask().GetAwaiter().GetResult();
        else Image.Flush();
    }

    public void Dispose()
    {
        if (useAsync) Image.DisposeAsync().AsTask().GetAwaiter().GetResult();
        else Image.Dispose();
    }
}

/// <summary>Maps a generated geometry to our create options.</summary>
internal static class GeometryMapping
{
    public static Qcow2CreateOptions CreateOptions(ImageGeometry g, string? backingFile = null, string? backingFormat = null, string? dataFile = null) => new()
    {
        Size = g.Size,
        ClusterSize = g.ClusterSize,
        RefcountBits = g.RefcountBits,
        Compat = g.Compat010 ? "0.10" : "1.1",
        ExtendedL2 = g.ExtendedL2,
        LazyRefcounts = g.LazyRefcounts,
        CompressionType = g.Compression == ModelCompression.Zstd ? CompressionType.Zstd : CompressionType.Zlib,
        BackingFile = backingFile,
        BackingFormat = backingFormat,
        DataFile = dataFile,
        DataFileRaw = g.DataFileRaw,
    };

    /// <summary>Runs our checker; throws unless it finds no corruption, no leak and no error.</summary>
    public static CheckResult CheckClean(IStorage storage, string when)
    {
        var result = Qcow2Checker.Check(storage, CheckOptions.ReadOnly);
        if (!result.IsClean)
        {
            throw new InvalidOperationException(
                $"{when}: our check found {result.Corruptions} corruptions, {result.Leaks} leaks, {result.CheckErrors} errors"
                + (result.FailureMessage is null ? "" : $" ({result.FailureMessage})") + Environment.NewLine
                + string.Join(Environment.NewLine, result.Findings.Take(20)));
        }
        return result;
    }
}

/// <summary>
/// The image in memory: no backing chain, only our own checker at the end. Cheap, so it runs many
/// cases. An external data file is a second <see cref="MemoryStorage"/>, handed to the image through
/// <see cref="Qcow2OpenOptions.DataFileStorage"/>.
/// </summary>
internal sealed class Qcow2MemoryHarness : IDiskHarness
{
    private readonly MemoryStorage _storage = new("property-test");
    private readonly MemoryStorage? _dataStorage;
    private readonly ImageGeometry _geometry;
    private readonly bool _useAsync;
    private readonly Qcow2OpenOptions _open;
    private bool _created;

    /// <summary>Caches of two entries each (512-byte L2 slices): every metadata access evicts and writes back.</summary>
    public static Qcow2OpenOptions TinyCaches { get; } = new() { L2CacheEntrySize = 512, L2CacheSize = 1, RefcountCacheSize = 1 };

    public Qcow2MemoryHarness(ImageGeometry g, bool useAsync = false, Qcow2OpenOptions? open = null)
    {
        _useAsync = useAsync;
        if (g.Backing.Count > 0) throw new ArgumentException("the memory harness has no files for a chain", nameof(g));
        _geometry = g;
        if (g.ExternalDataFile) _dataStorage = new MemoryStorage("property-test-data");
        _open = (open ?? Qcow2OpenOptions.Default) with { DataFileStorage = _dataStorage };
    }

    public IGuestDisk Open()
    {
        if (!_created)
        {
            _created = true;
            Qcow2Creator.Create(_storage, GeometryMapping.CreateOptions(_geometry, dataFile: _dataStorage is null ? null : "top.data"), _dataStorage);
        }
        return new Qcow2GuestDisk(Qcow2Image.Open(_storage, _open), _useAsync);
    }

    public void FinalChecks(ReferenceDisk model)
    {
        GeometryMapping.CheckClean(_storage, "after the script");
        if (_dataStorage is null || !_geometry.DataFileRaw) return;
        // data_file_raw promises the data file is itself the guest disk.
        var raw = new byte[model.Size];
        _dataStorage.Read(0, raw);
        var mismatch = model.Verify(0, raw);
        if (mismatch is not null) throw new InvalidOperationException("the raw data file differs from the model: " + mismatch);
    }

    public void Dispose()
    {
        _storage.Dispose();
        _dataStorage?.Dispose();
    }
}

/// <summary>
/// The image as files in a temporary directory: the backing chain written by qemu-img/qemu-io
/// (an independent writer), the top image created by <see cref="Qcow2Creator"/>, and at the end
/// our checker, <c>qemu-img check</c> and <c>qemu-img convert -O raw</c> against the model.
/// </summary>
internal sealed class Qcow2FileHarness : IDiskHarness
{
    private readonly TempDir _dir = new();
    private readonly ImageGeometry _geometry;
    private bool _created;

    public Qcow2FileHarness(ImageGeometry g)
    {
        _geometry = g;
        TopPath = _dir.File("top.qcow2");
    }

    public string TopPath { get; }

    public static string LayerName(ImageGeometry g, int index) => $"backing{index + 1}.{g.Backing[index].Format}";

    public IGuestDisk Open()
    {
        if (!_created)
        {
            _created = true;
            CreateBackingChain(_dir, _geometry);
            Qcow2Creator.Create(TopPath, GeometryMapping.CreateOptions(
                _geometry,
                _geometry.Backing.Count > 0 ? LayerName(_geometry, 0) : null,
                _geometry.Backing.Count > 0 ? _geometry.Backing[0].Format : null,
                _geometry.ExternalDataFile ? _dir.File("top.data") : null));
        }
        return new Qcow2GuestDisk(Qcow2Image.Open(TopPath, new Qcow2OpenOptions { ExternalFilePolicy = ExternalFilePolicy.AllowUnder(_dir.Path) }));
    }

    /// <summary>Creates the backing files of <paramref name="g"/> in <paramref name="dir"/> with qemu-img and fills them with qemu-io.</summary>
    public static void CreateBackingChain(TempDir dir, ImageGeometry g)
    {
        var _dir = dir;
        for (var i = g.Backing.Count - 1; i >= 0; i--)
        {
            var layer = g.Backing[i];
            var path = _dir.File(LayerName(g, i));
            var args = new List<string> { "create", "-q", "-f", layer.Format };
            if (layer.Format == "qcow2")
            {
                var options = "cluster_size=" + (1 << layer.ClusterBits).ToString(CultureInfo.InvariantCulture);
                if (i + 1 < g.Backing.Count)
                    options += $",backing_file={LayerName(g, i + 1)},backing_fmt={g.Backing[i + 1].Format}";
                args.Add("-o");
                args.Add(options);
            }
            args.Add(path);
            args.Add(layer.Size.ToString(CultureInfo.InvariantCulture));
            QemuTools.Img(args.ToArray());
            if (layer.Writes.Count == 0) continue;
            // Each write's exact bytes go through a pattern file (qemu-io's -s), so backing content
            // is written by QEMU, not by us.
            var commands = new List<string>();
            for (var w = 0; w < layer.Writes.Count; w++)
            {
                var write = layer.Writes[w];
                var source = _dir.File($"layer{i + 1}-write{w}.bin");
                File.WriteAllBytes(source, write.Pattern.Create(write.Offset, checked((int)write.Length)));
                commands.Add($"write -q -s {source} {write.Offset} {write.Length}");
            }
            QemuTools.Io(path, layer.Format, commands.ToArray());
        }
    }

    public void FinalChecks(ReferenceDisk model)
    {
        using (var storage = FileStorage.Open(TopPath, writable: false))
            GeometryMapping.CheckClean(storage, "after the script");

        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "check", "-f", "qcow2", TopPath);
        if (code != 0 || !stdout.Contains("No errors were found", StringComparison.Ordinal))
            throw new InvalidOperationException($"qemu-img check exited {code}:{Environment.NewLine}{stdout}{stderr}");

        var expected = new byte[model.Size];
        model.ReadExpected(0, expected);
        var raw = _dir.File("converted.raw");
        QemuTools.Img("convert", "-f", "qcow2", "-O", "raw", TopPath, raw);
        CompareFile(raw, expected, "qemu-img convert -O raw");
        if (_geometry.DataFileRaw)
        {
            // data_file_raw promises the data file is itself the guest disk.
            CompareFile(_dir.File("top.data"), expected, "the raw data file", shortReadsAsZero: true);
        }
    }

    private static void CompareFile(string path, byte[] expected, string what, bool shortReadsAsZero = false)
    {
        var actual = File.ReadAllBytes(path);
        if (shortReadsAsZero && actual.Length < expected.Length) Array.Resize(ref actual, expected.Length);
        if (actual.Length < expected.Length)
            throw new InvalidOperationException($"{what}: {actual.Length} bytes, the disk has {expected.Length}");
        for (var i = 0; i < expected.Length; i++)
        {
            if (actual[i] != expected[i])
                throw new InvalidOperationException($"{what} differs from the model at guest byte 0x{i:x}: model 0x{expected[i]:x2}, read 0x{actual[i]:x2}");
        }
    }

    public void Dispose() => _dir.Dispose();
}
