using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using Qcow2.Tests.Shared;

namespace Qcow2.Spans.Tests;

/// <summary>
/// L1/L2 entries of images written by qemu-io, decoded with our entry types, compared with
/// <c>qemu-img map --output=json</c> subcluster by subcluster; compressed clusters are inflated
/// from the host range their descriptor gives.
/// </summary>
public class L2RealImageTests
{
    [Theory]
    [InlineData(9, false)]
    [InlineData(12, false)]
    [InlineData(16, false)]
    [InlineData(21, false)]
    [InlineData(14, true)]
    [InlineData(16, true)]
    [InlineData(21, true)]
    public void Entries_QemuWrittenImage_AgreeWithQemuImgMap(int bits, bool extended)
    {
        using var dir = new TempDir();
        string path = dir.File("img.qcow2");
        long cs = 1L << bits;
        long size = cs * 64;
        QemuTools.Img("create", "-q", "-f", "qcow2", "-o",
            string.Create(CultureInfo.InvariantCulture, $"cluster_size={cs},extended_l2={(extended ? "on" : "off")}"), path,
            size.ToString(CultureInfo.InvariantCulture));
        string S(long v) => v.ToString(CultureInfo.InvariantCulture);
        long sub = extended ? cs / 32 : cs;
        QemuTools.Io(path, "qcow2",
            $"write -P 1 0 {S(cs)}",                      // cluster 0: data
            $"write -c -P 2 {S(cs)} {S(cs)}",             // cluster 1: compressed
            $"write -z {S(2 * cs)} {S(cs)}",              // cluster 2: zeros
            $"write -P 3 {S(3 * cs + sub)} {S(sub)}",     // cluster 3: one subcluster (the whole cluster when standard)
            $"write -P 4 {S(40 * cs)} {S(3 * cs)}",       // clusters 40-42: data in another part of the table
            $"write -z {S(41 * cs + sub)} {S(sub)}");     // a zero subcluster inside allocated data

        byte[] file = File.ReadAllBytes(path);
        var h = Qcow2Header.Parse(file);
        Assert.True(h.TryGetClusterGeometry(out var g));
        Assert.Equal(extended, g.ExtendedL2);
        var l1 = file.AsSpan(checked((int)h.L1TableOffset), (int)h.L1Size * 8);

        // Our view of every subcluster: (kind, host offset or -1, compressed).
        int subs = g.SubclustersPerCluster;
        var ours = new (SubclusterKind Kind, long Host, bool Compressed)[size / g.SubclusterSize];
        for (long c = 0; c < size / cs; c++)
        {
            long guest = c * cs;
            var l1e = L1Entry.Read(l1, checked((int)g.L1Index(guest)));
            Assert.Equal(TableEntryStatus.Valid, l1e.Validate(g));
            var entry = l1e.IsUnallocated
                ? (extended ? L2Entry.UnallocatedExtended : L2Entry.Unallocated)
                : L2Entry.Read(file.AsSpan(checked((int)l1e.L2Offset), g.ClusterSize), g.L2Index(guest), extended);
            Assert.Equal(L2EntryStatus.Valid, entry.Validate(g));
            for (int s = 0; s < subs; s++)
            {
                var kind = entry.GetSubcluster(s);
                long host = kind == SubclusterKind.Allocated && entry.Kind == ClusterKind.Normal ? entry.HostOffset + s * (long)g.SubclusterSize : -1;
                ours[c * subs + s] = (kind, host, entry.Kind == ClusterKind.Compressed);
            }
            if (entry.Kind == ClusterKind.Compressed)
            {
                var d = entry.GetCompressedDescriptor(g.ClusterBits);
                int end = (int)Math.Min(d.HostEnd, file.Length);
                using var inflate = new DeflateStream(new MemoryStream(file, (int)d.HostStart, end - (int)d.HostStart), CompressionMode.Decompress);
                var plain = new byte[g.ClusterSize];
                inflate.ReadExactly(plain);
                Assert.All(plain, b => Assert.Equal(2, b));
            }
        }
        Assert.True(ours[1 * subs].Compressed);
        Assert.Equal(SubclusterKind.Zero, ours[2 * subs].Kind);

        using var map = JsonDocument.Parse(QemuTools.Img("map", "--output=json", path));
        foreach (var ext in map.RootElement.EnumerateArray())
        {
            long start = ext.GetProperty("start").GetInt64(), length = ext.GetProperty("length").GetInt64();
            bool present = ext.GetProperty("present").GetBoolean(), zero = ext.GetProperty("zero").GetBoolean(), data = ext.GetProperty("data").GetBoolean();
            long? offset = ext.TryGetProperty("offset", out var o) ? o.GetInt64() : null;
            for (long pos = start; pos < start + length; pos += g.SubclusterSize)
            {
                var (kind, host, compressed) = ours[pos / g.SubclusterSize];
                string at = $"guest 0x{pos:x}: ours {kind} host 0x{host:x}; map present={present} zero={zero} data={data} offset={offset}";
                if (!present) Assert.True(kind == SubclusterKind.Unallocated, at);
                else if (zero) Assert.True(kind == SubclusterKind.Zero, at);
                else
                {
                    Assert.True(kind == SubclusterKind.Allocated && data, at);
                    if (compressed) Assert.True(offset is null, at);
                    else Assert.True(offset + (pos - start) == host, at);
                }
            }
        }
    }
}
