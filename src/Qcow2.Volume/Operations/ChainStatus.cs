using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Operations;

/// <summary>One extent of a disk described the way QEMU's block layer describes it to qemu-img.</summary>
/// <param name="Offset">Guest offset.</param>
/// <param name="Length">Length in bytes.</param>
/// <param name="Data">Reads come from stored data.</param>
/// <param name="Zero">Reads as zeros (zero flag, unallocated without a backing layer, past a backing file's end, or a hole in the host file).</param>
/// <param name="Allocated">Some layer of the chain holds it ("present").</param>
/// <param name="Compressed">Stored compressed (no host offset then).</param>
/// <param name="Depth">The layer that answered, QEMU's way: for an extent no layer holds, the layer where the chain stops (no backing file, or a backing file too short).</param>
/// <param name="HostOffset">Offset in <paramref name="HostFile"/>, or -1.</param>
/// <param name="HostFile">The file holding the data, or null.</param>
internal readonly record struct ChainExtent(long Offset, long Length, bool Data, bool Zero, bool Allocated, bool Compressed,
    int Depth, long HostOffset, string? HostFile);

/// <summary>
/// Turns <see cref="IDiskImage.GetBlockStatus"/> into QEMU's view (what <c>qemu-img map</c> and
/// <c>compare</c> see): extents nobody holds are zero at the depth where the chain ends, and data
/// extents in a host file are split at the file's holes, which read as zero (QEMU asks the file
/// layer for SEEK_DATA/SEEK_HOLE). Not thread-safe; one per operation.
/// </summary>
internal sealed class ChainStatus : IDisposable
{
    private readonly IDiskImage _image;
    private readonly long[] _layerSizes;
    private readonly IDiskImage[] _layers;
    private readonly bool _probeHoles;
    private readonly Dictionary<string, FileStorage?> _hostFiles = new(StringComparer.Ordinal);
    private readonly Dictionary<string, bool> _preallocated = new(StringComparer.Ordinal);

    public ChainStatus(IDiskImage image, bool probeHoles = true)
    {
        _image = image;
        _probeHoles = probeHoles;
        var layers = new List<IDiskImage>();
        for (IDiskImage? layer = image; layer is not null; layer = (layer as Qcow2Image)?.Backing)
        {
            layers.Add(layer);
            if (layers.Count > 4096) break; // the image bounded its own chain; this only guards the walk
        }
        _layers = [.. layers];
        _layerSizes = [.. layers.Select(l => l.Size)];
    }

    /// <summary>The extent starting at <paramref name="offset"/>, at most <paramref name="maxLength"/> long (and inside the image).</summary>
    public ChainExtent Get(long offset, long maxLength)
    {
        long limit = Math.Min(maxLength, _image.Size - offset);
        var s = _image.GetBlockStatus(offset, limit);
        long length = Math.Clamp(s.Length, 1, limit);
        bool data = (s.Flags & BlockStatusFlags.Data) != 0;
        bool zero = (s.Flags & BlockStatusFlags.Zero) != 0;
        bool allocated = (s.Flags & BlockStatusFlags.Allocated) != 0;
        bool compressed = (s.Flags & BlockStatusFlags.Compressed) != 0;

        if (!allocated && !data && !zero)
        {
            // Unallocated everywhere: QEMU walks down while the next layer covers the offset.
            int depth = 0;
            while (depth + 1 < _layerSizes.Length && offset < _layerSizes[depth + 1])
            {
                depth++;
                length = Math.Min(length, _layerSizes[depth] - offset);
            }
            // An unallocated subcluster of an allocated cluster keeps its host offset (top layer only).
            long unallocatedHost = depth == 0 ? s.HostOffset : -1;
            return new ChainExtent(offset, length, false, true, false, false, depth, unallocatedHost,
                unallocatedHost >= 0 ? s.HostFile : null);
        }

        long host = compressed ? -1 : s.HostOffset;
        if (_probeHoles && data && !zero && host >= 0 && s.HostFile is { } file && ShouldProbe(s.Depth, file) is { } storage)
        {
            bool raw = s.Depth < _layers.Length && _layers[s.Depth].Format == "raw";
            long fileLength = storage.Length;
            if (host >= fileLength)
            {
                zero = true;
                if (raw) data = false;
            }
            else if (RawImage.TryProbeHoles(storage, host, fileLength, out bool isData, out long runEnd))
            {
                length = Math.Min(length, Math.Max(1, runEnd - host));
                if (!isData)
                {
                    zero = true;
                    // A raw layer is its file: a hole is zero and not data. A qcow2 data cluster in a
                    // hole stays data (QEMU adds the zero flag to it).
                    if (raw) data = false;
                }
            }
        }
        return new ChainExtent(offset, length, data, zero, allocated, compressed, s.Depth, host, s.HostFile);
    }

    /// <summary>
    /// The host file to ask about holes, when QEMU would ask: always for a raw layer (its driver
    /// forwards block status to the file), for a qcow2 layer only when the image looks
    /// metadata-preallocated (QEMU's heuristic: clearly more clusters in use than the file occupies
    /// on disk), and never for an external data file.
    /// </summary>
    private FileStorage? ShouldProbe(int depth, string file)
    {
        if (depth >= _layers.Length) return null;
        var layer = _layers[depth];
        if (layer.Format == "raw") return Probe(file);
        // A qcow2 view we cannot inspect (e.g. a snapshot) is not probed.
        if (layer is not Qcow2Image q) return null;
        if (q.Info.DataFile is not null) return null;
        var storage = Probe(file);
        if (storage is null) return null;
        if (!_preallocated.TryGetValue(file, out bool pre))
        {
            pre = MetadataPreallocation.Detect(storage);
            _preallocated[file] = pre;
        }
        return pre ? storage : null;
    }

    private FileStorage? Probe(string path)
    {
        if (_hostFiles.TryGetValue(path, out var storage)) return storage;
        storage = null;
        try
        {
            if (Path.IsPathRooted(path) && File.Exists(path)) storage = FileStorage.Open(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        _hostFiles[path] = storage;
        return storage;
    }

    public void Dispose()
    {
        foreach (var s in _hostFiles.Values) s?.Dispose();
        _hostFiles.Clear();
    }
}
