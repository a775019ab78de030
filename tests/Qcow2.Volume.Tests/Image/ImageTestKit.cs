using System.Globalization;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Chain;

namespace Qcow2.Volume.Tests.Image;

/// <summary>Helpers shared by the image tests: qemu-img as the oracle, whole-disk reads, byte comparison.</summary>
internal static class ImageTestKit
{
    public const int Seed = 20261121;

    public static readonly Qcow2OpenOptions Trusted = new() { ExternalFilePolicy = ExternalFilePolicy.AllowAll };

    public static readonly Qcow2OpenOptions TrustedReadOnly = Trusted with { ReadOnly = true };

    public static string Inv(long v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>What qemu-img reads: <c>qemu-img convert -O raw</c> (optionally of a snapshot).</summary>
    public static byte[] QemuRaw(TempDir dir, string image, string format = "qcow2", string? snapshot = null)
    {
        string raw = dir.File("oracle-" + Guid.NewGuid().ToString("N")[..8] + ".raw");
        var args = new List<string> { "convert", "-f", format };
        if (snapshot is not null) { args.Add("-l"); args.Add("snapshot.name=" + snapshot); }
        args.AddRange(["-O", "raw", image, raw]);
        QemuTools.Img(args.ToArray());
        var bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }

    /// <summary>Reads the whole disk in chunks of varying size, alternating the sync and async paths.</summary>
    public static byte[] ReadAll(IDiskImage image, int seed = Seed)
    {
        var result = new byte[image.Size];
        var rng = new Random(seed);
        long pos = 0;
        bool async = false;
        while (pos < result.Length)
        {
            int n = (int)Math.Min(result.Length - pos, rng.Next(1, 300_000));
            if (async) image.ReadAsync(pos, result.AsMemory((int)pos, n)).AsTask().GetAwaiter().GetResult();
            else image.Read(pos, result.AsSpan((int)pos, n));
            async = !async;
            pos += n;
        }
        return result;
    }

    public static void AssertSameBytes(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        int i = expected.SequenceEqual(actual) ? -1 : FirstDifference(expected, actual);
        Assert.True(i < 0, $"{what}: first difference at offset 0x{i:x} (expected 0x{(i < 0 ? 0 : expected[i]):x2}, got 0x{(i < 0 ? 0 : actual[i]):x2})");
    }

    private static int FirstDifference(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        for (int i = 0; i < a.Length; i++) if (a[i] != b[i]) return i;
        return -1;
    }

    /// <summary>Runs <c>qemu-img check</c> and asserts it reports neither corruption nor leaks.</summary>
    public static void AssertQemuCheckClean(string image)
    {
        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "check", image);
        Assert.True(code == 0, $"qemu-img check exited {code}:\n{stdout}{stderr}");
        Assert.Contains("No errors were found", stdout);
        Assert.DoesNotContain("leaked", stdout);
    }

    /// <summary>Asserts <c>qemu-img compare</c> finds the image identical to raw content.</summary>
    public static void AssertQemuCompareEqual(TempDir dir, string image, byte[] expected)
    {
        string raw = dir.File("expected-" + Guid.NewGuid().ToString("N")[..8] + ".raw");
        File.WriteAllBytes(raw, expected);
        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, "compare", "-f", "raw", "-F", "qcow2", raw, image);
        File.Delete(raw);
        Assert.True(code == 0, $"qemu-img compare exited {code}:\n{stdout}{stderr}");
    }
}
