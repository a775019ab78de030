using System.Runtime.CompilerServices;

namespace Qcow2.Volume.Check;

internal sealed partial class CheckRun
{
    /// <summary>A cluster whose stored refcount differs from the references counted.</summary>
    internal readonly record struct Mismatch(long Cluster, ulong Stored, ulong Counted);

    /// <summary>Refcount blocks whose table entry is unaligned: their refcounts cannot be read.</summary>
    private readonly HashSet<long> _errorBlocks = new();

    /// <summary>Reads stored refcount block <paramref name="blockIndex"/>; false when its entry is unusable.</summary>
    private bool ReadStoredBlock(long blockIndex, Span<byte> block)
    {
        if (blockIndex >= _refcountTable.Length)
        {
            block.Clear();
            return true;
        }
        ulong offset = _refcountTable[blockIndex] & RefcountTableOffsetMask;
        if (offset == 0)
        {
            block.Clear();
            return true;
        }
        if ((offset & (ulong)(ClusterSize - 1)) != 0 || offset > long.MaxValue / 2) return false;
        ReadZeroFilled((long)offset, block);
        return true;
    }

    /// <summary>
    /// Compares the counted references with the stored refcounts over every cluster of the file,
    /// block by block: an identical block costs one memory compare.
    /// </summary>
    private (List<Mismatch> Mismatches, long Highest) CompareRefcounts()
    {
        var mismatches = new List<Mismatch>();
        long highest = 0;
        int order = _img.RefcountOrder;
        int perBlockBits = _refs.EntriesPerBlockBits;
        long perBlock = 1L << perBlockBits;
        long blocks = (_nbClusters + perBlock - 1) >> perBlockBits;
        var stored = new byte[ClusterSize];
        for (long b = 0; b < blocks; b++)
        {
            long first = b << perBlockBits;
            int count = (int)Math.Min(perBlock, _nbClusters - first);
            var ours = _refs.Block(b);
            if (!ReadStoredBlock(b, stored))
            {
                _errorBlocks.Add(b);
                _res.CheckErrors += count;
                Report(CheckFindingKind.CheckError, _refcountTableOffset + b * 8,
                    $"Can't get refcount for clusters {first}..{first + count - 1}: refcount block {b} offset {Hex(_refcountTable[b] & RefcountTableOffsetMask)} is unaligned");
                continue;
            }
            if (count == perBlock && ours.SequenceEqual(stored))
            {
                int lastByte = ours.LastIndexOfAnyExcept((byte)0);
                if (lastByte >= 0)
                {
                    long index;
                    if (order >= 3) index = lastByte >> (order - 3);
                    else
                    {
                        int perByte = 8 >> order;
                        index = (long)lastByte * perByte;
                        for (int k = perByte - 1; k >= 0; k--)
                            if (_refs.Get(first + index + k) != 0) { index += k; break; }
                    }
                    highest = first + index;
                }
                continue;
            }
            for (int i = 0; i < count; i++)
            {
                ulong r1 = RefcountArray.GetFrom(stored, order, i);
                ulong r2 = _refs.Get(first + i);
                if (r1 == 0 && r2 == 0) continue;
                highest = first + i;
                if (r1 == r2) continue;
                long cluster = first + i;
                mismatches.Add(new Mismatch(cluster, r1, r2));
                if (r1 == 0) _rebuild = true;
                if (r1 < r2)
                {
                    _res.Corruptions++;
                    Report(CheckFindingKind.RefcountTooLow, cluster << ClusterBits, $"cluster {cluster} refcount={r1} reference={r2}");
                }
                else
                {
                    _res.Leaks++;
                    Report(CheckFindingKind.Leak, cluster << ClusterBits, $"Leaked cluster {cluster} refcount={r1} reference={r2}");
                }
            }
        }
        return (mismatches, highest);
    }

    /// <summary>
    /// Repairs the mismatches the mode allows, raising refcounts before lowering any (a crash in
    /// between leaves leaks, never a cluster in use with too low a count). Returns those left.
    /// </summary>
    private List<Mismatch> FixMismatches(List<Mismatch> mismatches)
    {
        var left = new List<Mismatch>();
        var raise = new List<Mismatch>();
        var lower = new List<Mismatch>();
        foreach (var m in mismatches)
        {
            bool tooLow = m.Stored < m.Counted;
            if (tooLow) _res.Corruptions--; else _res.Leaks--;
            if (m.Stored == 0) { _res.Corruptions++; left.Add(m); continue; } // needs a rebuild; not reached in practice
            if (tooLow && FixErrors) raise.Add(m);
            else if (!tooLow && FixLeaks) lower.Add(m);
            else
            {
                if (tooLow) _res.Corruptions++; else _res.Leaks++;
                left.Add(m);
            }
        }
        ApplyRefcounts(raise);
        ApplyRefcounts(lower);
        _res.CorruptionsFixed += raise.Count;
        _res.LeaksFixed += lower.Count;
        // As qemu-img's repairing comparison prints them: every mismatch again, in cluster order,
        // the repaired ones as such.
        var leftSet = new HashSet<long>();
        foreach (var m in left) leftSet.Add(m.Cluster);
        foreach (var m in mismatches)
        {
            bool tooLow = m.Stored < m.Counted;
            var kind = tooLow ? CheckFindingKind.RefcountTooLow : CheckFindingKind.Leak;
            if (!leftSet.Contains(m.Cluster))
                Report(kind, m.Cluster << ClusterBits, $"cluster {m.Cluster} refcount={m.Stored} reference={m.Counted}", repaired: true);
            else if (tooLow)
                Report(kind, m.Cluster << ClusterBits, $"cluster {m.Cluster} refcount={m.Stored} reference={m.Counted}");
            else
                Report(kind, m.Cluster << ClusterBits, $"Leaked cluster {m.Cluster} refcount={m.Stored} reference={m.Counted}");
        }
        return left;
    }

    /// <summary>Writes the counted refcount of each mismatch into its stored block (sorted by cluster).</summary>
    private void ApplyRefcounts(List<Mismatch> changes)
    {
        if (changes.Count == 0) return;
        int order = _img.RefcountOrder;
        int perBlockBits = _refs.EntriesPerBlockBits;
        var block = new byte[ClusterSize];
        int i = 0;
        while (i < changes.Count)
        {
            long b = changes[i].Cluster >> perBlockBits;
            ulong offset = _refcountTable[b] & RefcountTableOffsetMask;
            ReadZeroFilled((long)offset, block);
            while (i < changes.Count && (changes[i].Cluster >> perBlockBits) == b)
            {
                RefcountArray.SetIn(block, order, (int)(changes[i].Cluster & ((1L << perBlockBits) - 1)), changes[i].Counted);
                i++;
            }
            _storage.Write((long)offset, block);
        }
        _storage.Flush();
        _lastStoredBlock = -1;
    }

    /// <summary>The stored refcount of a cluster as known after comparison and repair; null when unreadable.</summary>
    private ulong? StoredRefcount(long cluster, List<Mismatch> mismatches)
    {
        if (cluster < _nbClusters && mismatches.Count == 0 && _errorBlocks.Count == 0) return _refs.Get(cluster);
        long block = cluster >> _refs.EntriesPerBlockBits;
        if (_errorBlocks.Contains(block)) return null;
        if (cluster < _nbClusters)
        {
            int idx = mismatches.BinarySearch(new Mismatch(cluster, 0, 0), MismatchComparer.Instance);
            return idx >= 0 ? mismatches[idx].Stored : _refs.Get(cluster);
        }
        // Beyond the compared range (an offset past the end of the file): read it from its block,
        // keeping the last block read (such offsets come in runs from one damaged table).
        if (_lastStoredBlock != block)
        {
            _lastStoredBlockData ??= new byte[ClusterSize];
            _lastStoredBlock = -1;
            if (!ReadStoredBlock(block, _lastStoredBlockData)) return null;
            _lastStoredBlock = block;
        }
        return RefcountArray.GetFrom(_lastStoredBlockData, _img.RefcountOrder, (int)(cluster & ((1L << _refs.EntriesPerBlockBits) - 1)));
    }

    private long _lastStoredBlock = -1;
    private byte[]? _lastStoredBlockData;

    private sealed class MismatchComparer : IComparer<Mismatch>
    {
        public static readonly MismatchComparer Instance = new();
        public int Compare(Mismatch x, Mismatch y) => x.Cluster.CompareTo(y.Cluster);
    }
}
