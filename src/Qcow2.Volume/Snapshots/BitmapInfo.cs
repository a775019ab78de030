namespace Qcow2.Volume.Snapshots;

/// <summary>A persistent dirty bitmap as listed in the bitmap directory.</summary>
/// <param name="Name">The bitmap's name.</param>
/// <param name="Granularity">Bytes of guest disk per bit.</param>
/// <param name="Flags">The raw flags (bit 0 in_use, bit 1 auto).</param>
/// <param name="TableOffset">Host offset of its bitmap table.</param>
/// <param name="TableSize">Entries in that table.</param>
public sealed record BitmapInfo(string Name, long Granularity, uint Flags, long TableOffset, int TableSize)
{
    /// <summary>The bitmap is not in sync with the disk content (flag in_use).</summary>
    public bool InUse => (Flags & Qcow2.Spans.Qcow2Constants.BitmapFlagInUse) != 0;

    /// <summary>The bitmap tracks writes (flag auto).</summary>
    public bool Auto => (Flags & Qcow2.Spans.Qcow2Constants.BitmapFlagAuto) != 0;
}
