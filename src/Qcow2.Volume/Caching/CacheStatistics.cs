namespace Qcow2.Volume.Caching;

/// <summary>A snapshot of a metadata cache's counters, for tuning cache sizes.</summary>
/// <param name="Hits">Lookups served from memory.</param>
/// <param name="Misses">Lookups that read from storage.</param>
/// <param name="Evictions">Entries dropped to make room.</param>
/// <param name="CapacityBytes">The configured capacity.</param>
/// <param name="UsedBytes">Bytes currently held.</param>
public readonly record struct CacheStatistics(long Hits, long Misses, long Evictions, long CapacityBytes, long UsedBytes);
