namespace Qcow2.Volume.Mapping;

/// <summary>
/// Bit layout of the first 64 bits of an L2 entry (spec "L2 table entry") and of the extended
/// subcluster bitmap (spec "Extended L2 Entries"), for the mapping hot path.
/// </summary>
internal static class L2Bits
{
    /// <summary>Bit 63: the cluster's refcount is exactly one (may be overwritten in place).</summary>
    public const ulong Copied = 1UL << 63;

    /// <summary>Bit 62: the descriptor is a compressed cluster descriptor.</summary>
    public const ulong Compressed = 1UL << 62;

    /// <summary>Bit 0 of a standard descriptor: the cluster reads as zeros (v3, standard L2 only).</summary>
    public const ulong ZeroFlag = 1UL;

    /// <summary>Bits 9-55: the host cluster offset of a standard descriptor.</summary>
    public const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;

    /// <summary>Bits 1-8 and 56-61 of a standard descriptor must be zero.</summary>
    public const ulong StandardReservedMask = 0x3f00_0000_0000_01feUL;

    /// <summary>Low half of the extended bitmap: subcluster allocated.</summary>
    public const ulong AllocMask = 0xffff_ffffUL;

    /// <summary>Number of bits to shift to reach the "reads as zeros" half of the bitmap.</summary>
    public const int ZeroShift = 32;
}
