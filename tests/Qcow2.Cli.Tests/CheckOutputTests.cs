using System.Buffers.Binary;
using Qcow2.Tests.Shared;

namespace Qcow2.Cli.Tests;

/// <summary>
/// The whole output of <c>qcow2 check</c> (stdout, stderr, exit code) against <c>qemu-img check</c>
/// on damaged images, with and without repair. Only the file name and the program name
/// ("qcow2" for "qemu-img") are normalised.
/// </summary>
public sealed class CheckOutputTests
{
    /// <summary>Where a patch goes: relative to a structure of the image, found through its header.</summary>
    public enum At { Header, L1, L2, RefcountTable, RefcountBlock }

    private const string None = "", Leaks = "leaks", All = "all";

    /// <summary>
    /// Damaged images (a 64 MiB image, 64 KiB clusters, the first 1 MiB written by qemu-io; with
    /// extended L2 entries also a compressed cluster at 20 MiB; or with 1-bit refcounts) and the
    /// repair modes compared. Left out on purpose, where we differ from qemu-img 7.2 by design:
    /// -r all on L1/L2 entries past the end of the file (we drop them; qemu leaves the image
    /// corrupt), -r all on a refcount block past the end of the file (qemu grows the file to reach
    /// it; we rebuild the structure), on an unaligned refcount table entry (qemu's repair fails with
    /// an I/O error; ours succeeds), on a snapshot table with too much extra data, and on invalid
    /// subcluster bitmaps and compressed clusters past the end (we repair them; qemu does not).
    /// </summary>
    public static TheoryData<string, At, long, string, string> Cases => new()
    {
        // Extended L2 entries (16 bytes: entry, subcluster bitmap); guest cluster 320 is compressed
        { "extended L2: subcluster both allocated and zero", At.L2, 8, "00000001ffffffff", None + "," + Leaks },
        { "extended L2: unallocated cluster with a bitmap", At.L2, 100 * 16 + 8, "0000000000000001", None + "," + Leaks },
        { "extended L2: compressed cluster with a bitmap", At.L2, 320 * 16 + 8, "0000000000000001", None + "," + Leaks },
        // One-bit refcounts: a second reference to a data cluster overflows
        { "1-bit refcounts: refcount overflow", At.L2, 8, "8000000000050000", None + "," + Leaks + "," + All },
        // L2 entries
        { "unaligned data cluster", At.L2, 8, "8000000000060200", None + "," + Leaks },
        { "L2 entry with reserved bits", At.L2, 8, "8010000000060000", None + "," + Leaks },
        { "data cluster past the end", At.L2, 16, "800000ff00070000", None + "," + Leaks },
        { "COPIED flag missing", At.L2, 0, "0000000000050000", None + "," + Leaks + "," + All },
        // L1 entries
        { "unaligned L2 table", At.L1, 0, "8000000000040100", None + "," + Leaks + "," + All },
        { "L2 table past the end", At.L1, 0, "8000ff0000030000", None + "," + Leaks },
        // Refcounts
        { "data cluster refcount zero", At.RefcountBlock, 2 * 5, "0000", None + "," + Leaks + "," + All },
        { "L2 table refcount zero", At.RefcountBlock, 2 * 4, "0000", None + "," + Leaks + "," + All },
        { "data cluster refcount two", At.RefcountBlock, 2 * 5, "0002", None + "," + Leaks + "," + All },
        { "refcount past the end of the file", At.RefcountBlock, 2 * 48, "0001", None + "," + Leaks + "," + All },
        { "unaligned refcount block", At.RefcountTable, 0, "0000000000020010", None + "," + Leaks },
        { "refcount block past the end", At.RefcountTable, 8, "000000ff00020000", None + "," + Leaks },
        { "refcount table of zero clusters", At.Header, 56, "00000000", None + "," + Leaks + "," + All },
        { "refcount table past the end", At.Header, 48, "0000001000010000", None + "," + Leaks + "," + All },
        // Snapshot table (header fields nb_snapshots, snapshots_offset)
        { "snapshot count over the limit", At.Header, 60, "000100010000000000030000", None + "," + Leaks },
        { "snapshot entries over the L1 table", At.Header, 60, "0000ffff0000000000030000", None + "," + Leaks },
        { "snapshot table unaligned", At.Header, 60, "000000010000000000030008", None + "," + Leaks },
        { "snapshot table past the end", At.Header, 60, "00000001000000f000030000", None + "," + Leaks },
        // Headers qemu-img refuses to open
        { "backing name too long", At.Header, 8, "00000000000003e8ffffffff", None + "," + All },
        { "compression type 18", At.Header, 104, "12", None },
        { "unknown incompatible bits", At.Header, 72, "0000000000000120", None + "," + Leaks },
        { "refcount order 7", At.Header, 96, "00000007", None },
        { "header extension too large", At.Header, 0x70, "00000000ffffffff", None },
        { "dirty bit", At.Header, 72, "0000000000000001", None + "," + Leaks },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Check_DamagedImage_WholeOutputEqualsQemuImg(string what, At at, long offset, string hex, string modes)
    {
        using var dir = new TempDir();
        string options = what.StartsWith("extended L2", StringComparison.Ordinal) ? "extended_l2=on"
            : what.StartsWith("1-bit", StringComparison.Ordinal) ? "refcount_bits=1" : "cluster_size=65536";
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "-o", options, "base.qcow2", "64M");
        Cli.QemuIo(dir.Path, "base.qcow2", "write -P 1 0 1M");
        if (options == "extended_l2=on") Cli.QemuIo(dir.Path, "base.qcow2", "write -c -P 3 20M 64k");
        Patch(dir.File("base.qcow2"), at, offset, Convert.FromHexString(hex));
        foreach (string mode in modes.Split(','))
        {
            File.Copy(dir.File("base.qcow2"), dir.File("ours.qcow2"), overwrite: true);
            File.Copy(dir.File("base.qcow2"), dir.File("qemu.qcow2"), overwrite: true);
            string[] repair = mode.Length == 0 ? Array.Empty<string>() : new[] { "-r", mode };
            var ours = Cli.Run(dir.Path, new[] { "check" }.Concat(repair).Append("ours.qcow2").ToArray());
            var qemu = Cli.Qemu(dir.Path, new[] { "check" }.Concat(repair).Append("qemu.qcow2").ToArray());
            string label = $"{what}, -r '{mode}'";
            // Every case is damage qemu-img sees, except the two it ignores by design.
            if (mode == None && what is not ("refcount past the end of the file" or "dirty bit"))
                Assert.True(qemu.Code != 0, label + ": qemu-img found nothing wrong");
            Assert.Equal((label, qemu.Code), (label, ours.Code));
            Assert.Equal((label, qemu.Out.Replace("qemu.qcow2", "IMG")), (label, Normalise(ours.Out)));
            Assert.Equal((label, qemu.Err.Replace("qemu.qcow2", "IMG")), (label, Normalise(ours.Err)));
        }
    }

    private static string Normalise(string text)
    {
        var lines = text.Replace("ours.qcow2", "IMG").Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].StartsWith("qcow2: ", StringComparison.Ordinal)) lines[i] = "qemu-img: " + lines[i]["qcow2: ".Length..];
            lines[i] = lines[i].Replace("with qcow2 check -r", "with qemu-img check -r", StringComparison.Ordinal);
        }
        return string.Join('\n', lines);
    }

    private static void Patch(string path, At at, long offset, byte[] bytes)
    {
        var head = new byte[112];
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        f.ReadExactly(head);
        long U64(long pos)
        {
            var b = new byte[8];
            f.Position = pos;
            f.ReadExactly(b);
            return (long)BinaryPrimitives.ReadUInt64BigEndian(b);
        }
        const long OffsetMask = 0x00ff_ffff_ffff_fe00;
        long l1 = (long)BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(40));
        long table = (long)BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(48));
        long baseOffset = at switch
        {
            At.Header => 0,
            At.L1 => l1,
            At.L2 => U64(l1) & OffsetMask,
            At.RefcountTable => table,
            _ => U64(table) & OffsetMask,
        };
        Assert.True(at == At.Header || baseOffset > 0, "structure not found");
        f.Position = baseOffset + offset;
        f.Write(bytes);
    }
}
