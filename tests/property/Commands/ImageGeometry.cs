using System.Text;

namespace Qcow2.Property.Tests.Commands;

/// <summary>Compression type of a generated image (mirrors the header's compression_type).</summary>
internal enum ModelCompression
{
    Zlib,
    Zstd,
}

/// <summary>
/// The shape of an image under test: what <c>qemu-img create -f qcow2 -o ...</c> would be given,
/// plus the backing chain beneath it (nearest first).
/// </summary>
internal sealed record ImageGeometry
{
    public required int ClusterBits { get; init; }
    public int RefcountOrder { get; init; } = 4;
    public bool Compat010 { get; init; }
    public bool ExtendedL2 { get; init; }
    public bool LazyRefcounts { get; init; }
    public ModelCompression Compression { get; init; }
    public required long Size { get; init; }
    public bool ExternalDataFile { get; init; }
    public bool DataFileRaw { get; init; }
    public IReadOnlyList<BackingLayer> Backing { get; init; } = Array.Empty<BackingLayer>();

    public int ClusterSize => 1 << ClusterBits;
    public int RefcountBits => 1 << RefcountOrder;
    public int SubclusterSize => ExtendedL2 ? ClusterSize / 32 : ClusterSize;

    /// <summary>Whether compressed writes are possible (the spec forbids them with an external data file).</summary>
    public bool AllowsCompression => !ExternalDataFile;

    /// <summary>The rules QEMU enforces at create time; generators and shrinkers only produce valid geometries.</summary>
    public bool IsValid
    {
        get
        {
            if (ClusterBits is < 9 or > 21 || RefcountOrder is < 0 or > 6) return false;
            if (Size <= 0 || Size % 512 != 0) return false;
            if (ExtendedL2 && (ClusterBits < 14 || Compat010)) return false;
            if (LazyRefcounts && Compat010) return false;
            if (Compat010 && (RefcountOrder != 4 || Compression != ModelCompression.Zlib || ExternalDataFile)) return false;
            if (DataFileRaw && (!ExternalDataFile || Backing.Count > 0)) return false;
            for (var i = 0; i + 1 < Backing.Count; i++)
                if (Backing[i].Format != "qcow2") return false; // a raw image has no backing file of its own
            return Backing.All(b => b.IsValid);
        }
    }

    /// <summary>A complexity measure: every shrink step lowers it.</summary>
    public long Weight =>
        Backing.Sum(b => 1_000_000 + b.Weight)
        + (ExternalDataFile ? 1000 : 0) + (DataFileRaw ? 1000 : 0) + (ExtendedL2 ? 1000 : 0) + (LazyRefcounts ? 1000 : 0)
        + (Compat010 ? 1000 : 0) + Math.Abs(RefcountOrder - 4) * 100 + (Compression == ModelCompression.Zstd ? 100 : 0);

    public string Describe()
    {
        var sb = new StringBuilder();
        sb.Append("# create -f qcow2 -o cluster_size=").Append(ClusterSize)
          .Append(",refcount_bits=").Append(RefcountBits)
          .Append(",compat=").Append(Compat010 ? "0.10" : "1.1")
          .Append(",extended_l2=").Append(ExtendedL2 ? "on" : "off");
        if (LazyRefcounts) sb.Append(",lazy_refcounts=on");
        if (!Compat010) sb.Append(",compression_type=").Append(Compression == ModelCompression.Zstd ? "zstd" : "zlib");
        if (ExternalDataFile) sb.Append(",data_file=top.data,data_file_raw=").Append(DataFileRaw ? "on" : "off");
        if (Backing.Count > 0) sb.Append(",backing_file=backing1");
        sb.Append(' ').Append(Hex.Of(Size));
        for (var i = 0; i < Backing.Count; i++)
        {
            sb.AppendLine().Append("# backing").Append(i + 1).Append(": ").Append(Backing[i].Describe());
            if (i + 1 < Backing.Count) sb.Append(" backing_file=backing").Append(i + 2);
        }
        return sb.ToString();
    }

    public override string ToString() => Describe();
}

/// <summary>One image of the backing chain and the writes that give it its content.</summary>
internal sealed record BackingLayer
{
    /// <summary>"qcow2" or "raw" (raw only at the bottom of the chain).</summary>
    public required string Format { get; init; }
    public int ClusterBits { get; init; } = 16;
    public required long Size { get; init; }
    public IReadOnlyList<WriteCommand> Writes { get; init; } = Array.Empty<WriteCommand>();

    public bool IsValid =>
        Format is "qcow2" or "raw" && ClusterBits is >= 9 and <= 21 && Size > 0 && Size % 512 == 0
        && Writes.All(w => w.Offset >= 0 && w.Length > 0 && w.Offset + w.Length <= Size);

    public long Weight => Writes.Sum(w => 1000 + w.Weight) + (Format == "raw" ? 0 : 10);

    public string Describe() =>
        $"-f {Format}{(Format == "qcow2" ? $" -o cluster_size={1 << ClusterBits}" : "")} {Hex.Of(Size)}"
        + (Writes.Count == 0 ? "" : "; " + string.Join("; ", Writes.Select(w => w.ToString())));
}
