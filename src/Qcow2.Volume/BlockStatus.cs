namespace Qcow2.Volume;

/// <summary>What an extent of a disk holds.</summary>
[Flags]
public enum BlockStatusFlags
{
    /// <summary>Unallocated in the whole chain (reads as zeros).</summary>
    None = 0,

    /// <summary>Reads come from host data.</summary>
    Data = 1,

    /// <summary>Reads as zeros.</summary>
    Zero = 2,

    /// <summary>Allocated in the image at <see cref="BlockStatus.Depth"/> (host space exists or a zero flag is set there).</summary>
    Allocated = 4,

    /// <summary>Stored compressed.</summary>
    Compressed = 8,
}

/// <summary>One extent of a disk with uniform status.</summary>
/// <param name="Offset">Guest offset of the extent.</param>
/// <param name="Length">Its length in bytes.</param>
/// <param name="Flags">What it holds.</param>
/// <param name="Depth">0 = this image, 1 = its backing file, ...; the chain length when no layer holds it.</param>
/// <param name="HostOffset">Host offset of the data in <paramref name="HostFile"/>, or -1 when none.</param>
/// <param name="HostFile">The file holding the data (image or external data file), or null.</param>
public readonly record struct BlockStatus(long Offset, long Length, BlockStatusFlags Flags, int Depth, long HostOffset, string? HostFile);
