using Qcow2.Spans;
using Qcow2.Tests.Shared;

namespace Qcow2.Volume.Tests.Check;

/// <summary>
/// Headers qemu-img refuses to open: the check refuses them too (a typed error, never a clean
/// report), with qemu-img's reason, which the CLI prints after "Could not open '...':".
/// </summary>
public sealed class Qcow2CheckerHeaderTests
{
    /// <summary>Byte patches of a valid version 3 image (64 KiB clusters, feature name table present).</summary>
    public static TheoryData<string, long, string> Patches => new()
    {
        { "backing name too long", 8, "00000000000003e8ffffffff" },
        { "backing offset past the cluster", 8, "0000000000010010" + "00000004" },
        { "compression type 18, bit clear", 104, "12" },
        { "compression bit with zlib", 72, "0000000000000008" },
        { "zstd without its bit", 104, "01" },
        { "unknown incompatible bits 5 and 8", 72, "0000000000000120" },
        { "unknown incompatible bit 63", 72, "8000000000000000" },
        { "version 4", 4, "00000004" },
        { "cluster_bits 8", 20, "00000008" },
        { "cluster_bits 22", 20, "00000016" },
        { "header_length 96", 100, "00000060" },
        { "header_length past the cluster", 100, "00020000" },
        { "refcount_order 7", 96, "00000007" },
        { "crypt_method 3", 32, "00000003" },
        { "l1_size beyond the limit", 36, "02000001" },
        { "l1_size zero", 36, "00000000" },
        { "l1 table unaligned", 40, "0000000000030008" },
        { "refcount table unaligned", 48, "0000000000010008" },
        { "refcount table too large", 56, "00001000" },
        { "extension length past the cluster", 0x70, "00000000ffffffff" },
        { "data-file-raw without a data file", 95, "02" },
        { "not qcow2", 0, "58585858" },
    };

    [Theory]
    [MemberData(nameof(Patches))]
    public void Check_HeaderQemuRefuses_ThrowsWithQemuReason(string what, long offset, string hex)
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "h.qcow2", "cluster_size=65536", snapshot: false, compressed: false);
        Patch(path, offset, Convert.FromHexString(hex));
        AssertRefusedLikeQemu(path, what);
    }

    [Fact]
    public void Check_UnknownIncompatibleBitNamedInFeatureTable_NamesItAsQemuDoes()
    {
        using var dir = new TempDir();
        string path = CheckHarness.MakeImage(dir, "n.qcow2", "cluster_size=65536", snapshot: false, compressed: false);
        // Re-label a feature name table entry as incompatible bit 5, and set bits 5 and 8.
        int entry = FindFeatureEntry(path, bit: 2);
        Patch(path, entry + 1, new byte[] { 5 });
        Patch(path, 72, Convert.FromHexString("0000000000000120"));
        string reason = AssertRefusedLikeQemu(path, "named feature");
        Assert.Contains("external data file", reason);
        Assert.Contains("Unknown incompatible feature: 100", reason);
    }

    private static string AssertRefusedLikeQemu(string path, string what)
    {
        var qemu = QemuTools.Run(QemuTools.QemuImg, "check", "-f", "qcow2", path);
        Assert.Equal(1, qemu.ExitCode);
        Exception? e = Record.Exception(() => CheckHarness.OurCheck(path));
        Assert.True(e is Qcow2CorruptImageException or Qcow2UnsupportedImageException, $"{what}: {e?.GetType().Name ?? "no exception"}: {e?.Message}");
        string reason = e is Qcow2CorruptImageException c ? c.Reason : e!.Message;
        Assert.Equal($"qemu-img: Could not open '{path}': {reason}\n", qemu.StdErr);
        return reason;
    }

    private static void Patch(string path, long offset, byte[] bytes)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        f.Position = offset;
        f.Write(bytes);
    }

    /// <summary>The file offset of the feature name table entry for incompatible feature <paramref name="bit"/>.</summary>
    private static int FindFeatureEntry(string path, int bit)
    {
        var head = new byte[65536];
        using (var f = File.OpenRead(path)) f.ReadExactly(head);
        int pos = 112;
        while (pos + 8 <= head.Length)
        {
            uint type = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(pos));
            int len = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(pos + 4));
            Assert.NotEqual(0u, type);
            if (type == 0x6803f857)
            {
                for (int e = pos + 8; e + 48 <= pos + 8 + len; e += 48)
                    if (head[e] == 0 && head[e + 1] == bit) return e;
                Assert.Fail("no feature name table entry for the bit");
            }
            pos += 8 + ((len + 7) & ~7);
        }
        Assert.Fail("no feature name table");
        return -1;
    }
}
