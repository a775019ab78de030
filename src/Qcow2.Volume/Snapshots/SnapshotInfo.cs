namespace Qcow2.Volume.Snapshots;

/// <summary>An internal snapshot as listed in the snapshot table.</summary>
/// <param name="Id">The unique id string.</param>
/// <param name="Name">The name.</param>
/// <param name="VirtualSize">The disk size at the time of the snapshot.</param>
/// <param name="VmStateSize">Size of the saved VM state.</param>
/// <param name="Date">The wall-clock time of creation.</param>
/// <param name="VmClockNanoseconds">The guest clock at creation.</param>
/// <param name="L1TableOffset">Host offset of the snapshot's L1 table.</param>
/// <param name="L1Size">Number of entries in that table.</param>
public sealed record SnapshotInfo(
    string Id, string Name, long VirtualSize, long VmStateSize, DateTimeOffset Date, ulong VmClockNanoseconds,
    long L1TableOffset, int L1Size);
