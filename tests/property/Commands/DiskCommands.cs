using Qcow2.Property.Tests.Model;
using Qcow2.Property.Tests.Runner;

namespace Qcow2.Property.Tests.Commands;

/// <summary>
/// One guest operation of a generated script. Each prints as a <c>qcow2 io</c> / qemu-io script line,
/// applies itself to the reference model and to the disk under test, and proposes simpler versions of
/// itself for shrinking (each strictly lighter by <see cref="Weight"/>).
/// </summary>
internal abstract class DiskCommand
{
    /// <summary>Whether the command can change what the guest reads.</summary>
    public virtual bool Mutates => true;

    /// <summary>The guest range the command touches, when it has one.</summary>
    public virtual (long Offset, long Length)? Range => null;

    /// <summary>Complexity: shrinking strictly lowers it, so shrinking ends.</summary>
    public abstract long Weight { get; }

    public abstract bool IsValidFor(ImageGeometry geometry);

    public abstract void Apply(ReferenceDisk model);

    public abstract void Execute(IGuestDisk disk);

    public abstract IEnumerable<DiskCommand> Shrink(ImageGeometry geometry);

    /// <summary>Smaller ranges for a range command: shorter, then further left and better aligned.</summary>
    /// <remarks>
    /// Keeping the first, last or middle part lets a range that must cross one boundary close in on
    /// it, halving each time. Every candidate lowers <c>2 * length + offset</c>.
    /// </remarks>
    protected static IEnumerable<(long Offset, long Length)> ShrinkRange(long offset, long length, long minLength)
    {
        if (length > minLength)
        {
            yield return (offset, minLength);
            yield return (offset + length - minLength, minLength);
            var half = Math.Max(minLength, length / 2);
            if (half < length)
            {
                yield return (offset, half);
                yield return (offset + length - half, half);
                yield return (offset + (length - half) / 2, half);
            }
            if (length % 512 != 0 && length > 512) yield return (offset, length / 512 * 512);
            yield return (offset, length - 1);
            yield return (offset + 1, length - 1);
        }
        if (offset > 0)
        {
            yield return (0, length);
            if (offset % 512 != 0) yield return (offset / 512 * 512, length);
            if (offset > 1) yield return (offset / 2, length);
        }
    }

    protected static bool InDisk(ImageGeometry g, long offset, long length) =>
        offset >= 0 && length > 0 && offset < g.Size && length <= g.Size - offset;
}

/// <summary><c>write -P 0x5a 0x10200 0x3000</c>: a guest write of a data pattern.</summary>
internal sealed class WriteCommand(long offset, long length, DataPattern pattern) : DiskCommand
{
    public long Offset { get; } = offset;
    public long Length { get; } = length;
    public DataPattern Pattern { get; } = pattern;

    public override (long Offset, long Length)? Range => (Offset, Length);
    public override long Weight => 10 + Offset + 2 * Length + (Pattern.Ramp ? 1 : 0);

    public override bool IsValidFor(ImageGeometry g) => InDisk(g, Offset, Length);

    public override void Apply(ReferenceDisk model) => model.Write(Offset, Pattern.Create(Offset, checked((int)Length)));

    public override void Execute(IGuestDisk disk) => disk.Write(Offset, Pattern.Create(Offset, checked((int)Length)));

    public override IEnumerable<DiskCommand> Shrink(ImageGeometry g)
    {
        if (Pattern.Ramp) yield return new WriteCommand(Offset, Length, DataPattern.Fill(Pattern.Seed));
        foreach (var (o, l) in ShrinkRange(Offset, Length, 1))
            yield return new WriteCommand(o, l, Pattern);
    }

    public override string ToString() => $"write {Pattern} {Hex.Of(Offset)} {Hex.Of(Length)}";
}

/// <summary><c>write -z [-u] off len</c>: write-zeroes, optionally allowing the clusters to be unmapped.</summary>
internal sealed class WriteZeroesCommand(long offset, long length, bool unmap) : DiskCommand
{
    public long Offset { get; } = offset;
    public long Length { get; } = length;
    public bool Unmap { get; } = unmap;

    public override (long Offset, long Length)? Range => (Offset, Length);
    public override long Weight => 10 + Offset + 2 * Length + (Unmap ? 1 : 0);

    public override bool IsValidFor(ImageGeometry g) => InDisk(g, Offset, Length);

    public override void Apply(ReferenceDisk model) => model.WriteZeroes(Offset, Length);

    public override void Execute(IGuestDisk disk) => disk.WriteZeroes(Offset, Length, Unmap);

    public override IEnumerable<DiskCommand> Shrink(ImageGeometry g)
    {
        if (Unmap) yield return new WriteZeroesCommand(Offset, Length, false);
        foreach (var (o, l) in ShrinkRange(Offset, Length, 1))
            yield return new WriteZeroesCommand(o, l, Unmap);
    }

    public override string ToString() => $"write -z{(Unmap ? " -u" : "")} {Hex.Of(Offset)} {Hex.Of(Length)}";
}

/// <summary><c>discard off len</c>: the guest no longer needs the range.</summary>
internal sealed class DiscardCommand(long offset, long length) : DiskCommand
{
    public long Offset { get; } = offset;
    public long Length { get; } = length;

    public override (long Offset, long Length)? Range => (Offset, Length);
    public override long Weight => 10 + Offset + 2 * Length;

    public override bool IsValidFor(ImageGeometry g) => InDisk(g, Offset, Length);

    public override void Apply(ReferenceDisk model) => model.Discard(Offset, Length);

    public override void Execute(IGuestDisk disk) => disk.Discard(Offset, Length);

    public override IEnumerable<DiskCommand> Shrink(ImageGeometry g)
    {
        foreach (var (o, l) in ShrinkRange(Offset, Length, 1))
            yield return new DiscardCommand(o, l);
    }

    public override string ToString() => $"discard {Hex.Of(Offset)} {Hex.Of(Length)}";
}

/// <summary><c>write -c -P 0x5a off len</c>: a compressed write of whole, aligned clusters (the disk's last cluster may be short).</summary>
internal sealed class CompressedWriteCommand(long offset, long length, DataPattern pattern) : DiskCommand
{
    public long Offset { get; } = offset;
    public long Length { get; } = length;
    public DataPattern Pattern { get; } = pattern;

    public override (long Offset, long Length)? Range => (Offset, Length);
    public override long Weight => 12 + Offset + 2 * Length + (Pattern.Ramp ? 1 : 0);

    public override bool IsValidFor(ImageGeometry g) =>
        g.AllowsCompression && InDisk(g, Offset, Length)
        && Offset % g.ClusterSize == 0 && (Length % g.ClusterSize == 0 || Offset + Length == g.Size);

    public override void Apply(ReferenceDisk model) => model.Write(Offset, Pattern.Create(Offset, checked((int)Length)));

    public override void Execute(IGuestDisk disk) => disk.WriteCompressed(Offset, Pattern.Create(Offset, checked((int)Length)));

    public override IEnumerable<DiskCommand> Shrink(ImageGeometry g)
    {
        // A plain write of the same bytes is simpler than a compressed one.
        yield return new WriteCommand(Offset, Length, Pattern);
        if (Pattern.Ramp) yield return new CompressedWriteCommand(Offset, Length, DataPattern.Fill(Pattern.Seed));
        if (Length > g.ClusterSize) yield return new CompressedWriteCommand(Offset, g.ClusterSize, Pattern);
        if (Length < g.ClusterSize && Offset >= g.ClusterSize) yield return new CompressedWriteCommand(Offset - g.ClusterSize, g.ClusterSize, Pattern);
        if (Offset > 0) yield return new CompressedWriteCommand(0, Length, Pattern);
        if (Offset > g.ClusterSize) yield return new CompressedWriteCommand(Offset / 2 / g.ClusterSize * g.ClusterSize, Length, Pattern);
    }

    public override string ToString() => $"write -c {Pattern} {Hex.Of(Offset)} {Hex.Of(Length)}";
}

/// <summary><c>read off len</c>: reads the range and compares it with the model.</summary>
internal sealed class ReadCommand(long offset, long length) : DiskCommand
{
    public long Offset { get; } = offset;
    public long Length { get; } = length;

    public override bool Mutates => false;
    public override (long Offset, long Length)? Range => (Offset, Length);
    public override long Weight => 10 + Offset + 2 * Length;

    public override bool IsValidFor(ImageGeometry g) => InDisk(g, Offset, Length);

    public override void Apply(ReferenceDisk model)
    {
    }

    public override void Execute(IGuestDisk disk)
    {
        // The runner reads and verifies every command's range; a read command has nothing else to do.
    }

    public override IEnumerable<DiskCommand> Shrink(ImageGeometry g)
    {
        foreach (var (o, l) in ShrinkRange(Offset, Length, 1))
            yield return new ReadCommand(o, l);
    }

    public override string ToString() => $"read {Hex.Of(Offset)} {Hex.Of(Length)}";
}

/// <summary><c>flush</c>.</summary>
internal sealed class FlushCommand : DiskCommand
{
    public override bool Mutates => false;
    public override long Weight => 2;

    public override bool IsValidFor(ImageGeometry g) => true;

    public override void Apply(ReferenceDisk model)
    {
    }

    public override void Execute(IGuestDisk disk) => disk.Flush();

    public override IEnumerable<DiskCommand> Shrink(ImageGeometry g) => Array.Empty<DiskCommand>();

    public override string ToString() => "flush";
}

/// <summary><c>reopen</c>: closes the image and opens it again (the runner then compares the whole disk).</summary>
internal sealed class ReopenCommand : DiskCommand
{
    public override bool Mutates => false;
    public override long Weight => 3;

    public override bool IsValidFor(ImageGeometry g) => true;

    public override void Apply(ReferenceDisk model)
    {
    }

    public override void Execute(IGuestDisk disk) =>
        throw new InvalidOperationException("the runner performs reopen itself");

    public override IEnumerable<DiskCommand> Shrink(ImageGeometry g)
    {
        yield return new FlushCommand();
    }

    public override string ToString() => "reopen";
}
