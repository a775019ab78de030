using System.Text;
using System.Text.Json;
using FsCheck.Fluent;
using Qcow2.Spans.Layout;
using Qcow2.Tests.Shared;

namespace Qcow2.Spans.Tests;

public class SnapshotAndBitmapTests
{
    [Fact]
    public void SnapshotEntries_FromQemuImg_MatchQemuImgInfo()
    {
        using var dir = new TempDir();
        string path = dir.File("snap.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", path, "8M");
        QemuTools.Img("snapshot", "-c", "first", path);
        QemuTools.Io(path, "qcow2", "write 0 64k");
        QemuTools.Img("snapshot", "-c", "a much longer snapshot name", path);
        QemuTools.Img("snapshot", "-c", "x", path);
        byte[] file = File.ReadAllBytes(path);
        var h = Qcow2Header.Parse(file);
        using var info = JsonDocument.Parse(QemuTools.Img("info", "--output=json", path));
        var snaps = info.RootElement.GetProperty("snapshots").EnumerateArray().ToArray();
        Assert.Equal(snaps.Length, (int)h.SnapshotCount);
        var table = file.AsSpan(checked((int)h.SnapshotsOffset));
        int offset = 0;
        for (int i = 0; i < snaps.Length; i++)
        {
            Assert.Equal(SnapshotEntryStatus.Ok, SnapshotEntryReader.Read(table, offset, out var e, out int len));
            Assert.Equal(snaps[i].GetProperty("id").GetString(), Encoding.UTF8.GetString(e.Id));
            Assert.Equal(snaps[i].GetProperty("name").GetString(), Encoding.UTF8.GetString(e.Name));
            Assert.Equal(snaps[i].GetProperty("date-sec").GetUInt32(), e.DateSeconds);
            Assert.Equal(snaps[i].GetProperty("date-nsec").GetUInt32(), e.DateNanoseconds);
            Assert.Equal(snaps[i].GetProperty("vm-state-size").GetUInt64(), e.VmStateSize);
            Assert.True(e.HasDiskSize);
            Assert.Equal(h.Size, e.DiskSize);
            Assert.Equal(h.L1Size, e.L1Size);
            Assert.Equal(SnapshotEntryStatus.Ok, SnapshotEntryReader.Validate(e, ClusterGeometry.Create((int)h.ClusterBits), h.Version));
            Assert.Equal(0, len % 8);
            Assert.Equal(SnapshotEntryReader.EntryLength((int)e.ExtraDataSize, e.Id.Length, e.Name.Length), len);
            offset += len;
        }
    }

    [Fact]
    public void SnapshotWrite_ThenRead_RoundTripsEveryField()
    {
        var data = new SnapshotEntryData
        {
            L1TableOffset = 0x50000, L1Size = 16, DateSeconds = 1234, DateNanoseconds = 5678,
            VmClockNanoseconds = 99, VmStateSize = 1UL << 33, DiskSize = 1 << 30, Icount = ulong.MaxValue,
        };
        var buffer = new byte[256];
        buffer.AsSpan().Fill(0xFF);
        int len = SnapshotEntryReader.Write(buffer, data, "7"u8, "name"u8);
        Assert.Equal(SnapshotEntryReader.EntryLength(24, 1, 4), len);
        Assert.Equal(SnapshotEntryStatus.Ok, SnapshotEntryReader.Read(buffer, 0, out var e, out int len2));
        Assert.Equal(len, len2);
        Assert.Equal(data.L1TableOffset, e.L1TableOffset);
        Assert.Equal(1UL << 33, e.VmStateSize);
        Assert.Equal(0u, e.VmStateSize32);
        Assert.Equal(data.DiskSize, e.DiskSize);
        Assert.True(e.HasIcount);
        Assert.Equal("7", Encoding.ASCII.GetString(e.Id));
        Assert.Equal("name", Encoding.ASCII.GetString(e.Name));
        Assert.Equal(0, buffer[len - 1]); // padding is cleared
    }

    [Fact]
    public void SnapshotRead_BadLengths_ReportTypedStatus()
    {
        var b = new byte[128];
        var v = SnapshotTableEntryView.Create(b);
        v.ExtraDataSize = 1025;
        Assert.Equal(SnapshotEntryStatus.ExtraDataTooLarge, SnapshotEntryReader.Read(b, 0, out _, out _));
        v.ExtraDataSize = 16;
        v.IdStringSize = 60;
        v.NameSize = 13;
        Assert.Equal(SnapshotEntryStatus.Truncated, SnapshotEntryReader.Read(b, 0, out _, out _));
        v.NameSize = 12; // 40 + 16 + 60 + 12 = 128 exactly
        Assert.Equal(SnapshotEntryStatus.Ok, SnapshotEntryReader.Read(b, 0, out var e, out _));
        Assert.False(e.HasIcount);
        Assert.Equal(SnapshotEntryStatus.Truncated, SnapshotEntryReader.Read(b, 96, out _, out _));
        Assert.Equal(SnapshotEntryStatus.InvalidOffset, SnapshotEntryReader.Read(b, 4, out _, out _));
        Assert.Equal(SnapshotEntryStatus.Truncated, SnapshotEntryReader.Read(b, 1 << 20, out _, out _));
    }

    [Fact]
    public void SnapshotValidate_EachRule_Reported()
    {
        var g = ClusterGeometry.Create(16);
        SnapshotEntryStatus Check(ulong l1Offset, uint l1Size, int extra, uint version)
        {
            var b = new byte[256];
            var v = SnapshotTableEntryView.Create(b);
            v.L1TableOffset = l1Offset;
            v.L1Size = l1Size;
            v.ExtraDataSize = (uint)extra;
            Assert.Equal(SnapshotEntryStatus.Ok, SnapshotEntryReader.Read(b, 0, out var e, out _));
            return SnapshotEntryReader.Validate(e, g, version);
        }
        Assert.Equal(SnapshotEntryStatus.Ok, Check(0x50000, 16, 16, 3));
        Assert.Equal(SnapshotEntryStatus.Ok, Check(0x50000, 16, 0, 2));
        Assert.Equal(SnapshotEntryStatus.ExtraDataTooSmall, Check(0x50000, 16, 8, 3));
        Assert.Equal(SnapshotEntryStatus.L1TableMisaligned, Check(0x50200, 16, 16, 3));
        Assert.Equal(SnapshotEntryStatus.L1TableMisaligned, Check(0, 16, 16, 3));
        Assert.Equal(SnapshotEntryStatus.L1TableTooLarge, Check(0x50000, 4 * 1024 * 1024 + 1, 16, 3));
    }

    [Fact]
    public void BitmapValidate_MisalignedTable_Reported()
    {
        var b = new byte[64];
        BitmapDirectoryReader.Write(b, 0x10200, 1, 0, 16, "a"u8);
        Assert.Equal(BitmapEntryStatus.Ok, BitmapDirectoryReader.Read(b, 0, out var e, out _));
        Assert.Equal(BitmapEntryStatus.TableOffsetMisaligned, BitmapDirectoryReader.Validate(e, ClusterGeometry.Create(16), 1 << 20));
        BitmapDirectoryReader.Write(b, 0x10000, 1, 0, 16, "a"u8);
        Assert.Equal(BitmapEntryStatus.Ok, BitmapDirectoryReader.Read(b, 0, out e, out _));
        // 1 MiB at 64 KiB granularity: 16 bits, 2 bytes, one cluster of bitmap data.
        Assert.Equal(BitmapEntryStatus.Ok, BitmapDirectoryReader.Validate(e, ClusterGeometry.Create(16), 1 << 20));
    }

    [Fact]
    public void BitmapDirectory_FromQemuImg_MatchesQemuImgInfo()
    {
        using var dir = new TempDir();
        string path = dir.File("bm.qcow2");
        QemuTools.Img("create", "-q", "-f", "qcow2", path, "64M");
        QemuTools.Img("bitmap", "--add", "-g", "65536", path, "one");
        QemuTools.Img("bitmap", "--add", "-g", "512", "--disable", path, "second-bitmap");
        byte[] file = File.ReadAllBytes(path);
        var h = Qcow2Header.Parse(file);
        Assert.True(HeaderExtensionEnumerator.TryFind(file.AsSpan(0, h.ClusterSize), h.ExtensionsStart, Qcow2Constants.ExtensionBitmaps, out var ext, out _));
        var bx = BitmapsExtensionReadOnlyView.Create(ext);
        using var info = JsonDocument.Parse(QemuTools.Img("info", "--output=json", path));
        var bitmaps = info.RootElement.GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps").EnumerateArray().ToArray();
        Assert.Equal(bitmaps.Length, (int)bx.NbBitmaps);
        var directory = file.AsSpan(checked((int)bx.BitmapDirectoryOffset), checked((int)bx.BitmapDirectorySize));
        int offset = 0;
        for (int i = 0; i < bitmaps.Length; i++)
        {
            Assert.Equal(BitmapEntryStatus.Ok, BitmapDirectoryReader.Read(directory, offset, out var e, out int len));
            Assert.Equal(bitmaps[i].GetProperty("name").GetString(), Encoding.UTF8.GetString(e.Name));
            Assert.Equal(bitmaps[i].GetProperty("granularity").GetInt64(), 1L << e.GranularityBits);
            var flags = bitmaps[i].GetProperty("flags").EnumerateArray().Select(f => f.GetString()).ToArray();
            Assert.Equal(flags.Contains("auto"), e.Auto);
            Assert.Equal(flags.Contains("in-use"), e.InUse);
            Assert.Equal(BitmapDirectoryReader.TableEntriesFor((long)h.Size, e.GranularityBits, (int)h.ClusterBits), e.BitmapTableSize);
            Assert.Equal(BitmapEntryStatus.Ok, BitmapDirectoryReader.Validate(e, ClusterGeometry.Create((int)h.ClusterBits), (long)h.Size));
            Assert.Equal(BitmapEntryStatus.TableSizeMismatch, BitmapDirectoryReader.Validate(e, ClusterGeometry.Create((int)h.ClusterBits), (long)h.Size * 1024));
            var table = file.AsSpan(checked((int)e.BitmapTableOffset), (int)e.BitmapTableSize * 8);
            var g = ClusterGeometry.Create((int)h.ClusterBits);
            for (int j = 0; j < e.BitmapTableSize; j++)
                Assert.Equal(TableEntryStatus.Valid, BitmapTableEntry.Read(table, j).Validate(g));
            offset += len;
        }
        Assert.Equal(directory.Length, offset);
    }

    [Fact]
    public void BitmapRead_EachRule_ReportsTypedStatus()
    {
        byte[] Entry(Action<BitmapDirectoryEntryView> patch, int nameLength = 3, int extra = 0)
        {
            var b = new byte[4096];
            BitmapDirectoryReader.Write(b, 0x10000, 4, Qcow2Constants.BitmapFlagAuto, 16, Encoding.ASCII.GetBytes(new string('n', nameLength)),
                new byte[extra]);
            patch(BitmapDirectoryEntryView.Create(b));
            return b;
        }
        BitmapEntryStatus Read(byte[] b) => BitmapDirectoryReader.Read(b, 0, out _, out _);
        Assert.Equal(BitmapEntryStatus.Ok, Read(Entry(_ => { })));
        Assert.Equal(BitmapEntryStatus.NameEmpty, Read(Entry(v => v.NameSize = 0)));
        Assert.Equal(BitmapEntryStatus.NameTooLong, Read(Entry(v => v.NameSize = 1024, nameLength: 1023)));
        Assert.Equal(BitmapEntryStatus.ReservedFlagsSet, Read(Entry(v => v.Flags = 8)));
        Assert.Equal(BitmapEntryStatus.InvalidType, Read(Entry(v => v.Type = 2)));
        Assert.Equal(BitmapEntryStatus.GranularityOutOfRange, Read(Entry(v => v.GranularityBits = 8)));
        Assert.Equal(BitmapEntryStatus.GranularityOutOfRange, Read(Entry(v => v.GranularityBits = 32)));
        Assert.Equal(BitmapEntryStatus.TableTooLarge, Read(Entry(v => v.BitmapTableSize = 0x8000001)));
        var padded = Entry(_ => { });
        padded[24 + 3] = 1;
        Assert.Equal(BitmapEntryStatus.PaddingNotZero, Read(padded));
        Assert.Equal(BitmapEntryStatus.DirectoryTooLarge, Read(Entry(v => v.ExtraDataSize = uint.MaxValue)));
        Assert.Equal(BitmapEntryStatus.Truncated, Read(Entry(v => v.ExtraDataSize = 5000)));
        Assert.Equal(BitmapEntryStatus.Truncated, BitmapDirectoryReader.Read(new byte[20], 0, out _, out _));
        var withExtra = Entry(_ => { }, extra: 5);
        Assert.Equal(BitmapEntryStatus.Ok, BitmapDirectoryReader.Read(withExtra, 0, out var info, out _));
        Assert.False(info.IsUsable);
        Assert.Equal(5, info.ExtraData.Length);
    }

    [Fact]
    public void Readers_RandomTables_NeverSliceOutside()
    {
        Props.Check(Props.Bytes(0, 2000), bytes =>
        {
            for (int off = 0, i = 0; i < 64; i++)
            {
                if (SnapshotEntryReader.Read(bytes, off, out var e, out int len) != SnapshotEntryStatus.Ok) break;
                Assert.True(e.Id.Length + e.Name.Length + e.ExtraData.Length + 40 <= bytes.Length - off);
                off += len;
            }
            for (int off = 0, i = 0; i < 64; i++)
            {
                var st = BitmapDirectoryReader.Read(bytes, off, out var e, out int len);
                if (len == 0) break;
                Assert.True(e.Name.Length + e.ExtraData.Length + 24 <= bytes.Length - off);
                off += len;
            }
        }, cases: 500);
    }
}
