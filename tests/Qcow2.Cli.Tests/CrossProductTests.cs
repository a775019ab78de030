using Qcow2.Tests.Shared;

namespace Qcow2.Cli.Tests;

/// <summary>
/// For images qemu-img creates with each layout option, and qemu-io fills, our info, map, measure
/// and check JSON (and the human map) must equal qemu-img's byte for byte.
/// </summary>
public sealed class CrossProductTests
{
    public static IEnumerable<object[]> Layouts() => new[]
    {
        new object[] { "cluster_size=512" },
        new object[] { "cluster_size=2M" },
        new object[] { "cluster_size=16k,extended_l2=on" },
        new object[] { "refcount_bits=1" },
        new object[] { "refcount_bits=64,lazy_refcounts=on" },
        new object[] { "compat=0.10" },
        new object[] { "compression_type=zstd" },
        new object[] { "preallocation=metadata" },
    };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void InfoMapMeasureCheck_Json_EqualQemuImg(string options)
    {
        using var dir = new TempDir();
        Cli.QemuOk(dir.Path, "create", "-q", "-f", "qcow2", "-o", options, "x.qcow2", "24M");
        Cli.QemuIo(dir.Path, "x.qcow2", "write -P 0x61 0 70k", "write -P 0x62 5M 1M", "write -z 8M 128k", "write -P 0x63 20M 512");
        string[][] commands =
        {
            new[] { "info", "--output=json", "x.qcow2" },
            new[] { "map", "--output=json", "x.qcow2" },
            new[] { "map", "x.qcow2" },
            new[] { "measure", "--output=json", "-O", "qcow2", "-o", options.Replace("preallocation=metadata", "cluster_size=64k", StringComparison.Ordinal), "x.qcow2" },
            new[] { "check", "--output=json", "x.qcow2" },
        };
        foreach (var args in commands)
        {
            var ours = Cli.Run(dir.Path, args);
            var qemu = Cli.Qemu(dir.Path, args);
            Assert.True(qemu.Out == ours.Out, $"{string.Join(' ', args)} [{options}]\n--- qemu-img:\n{qemu.Out}\n--- qcow2:\n{ours.Out}{ours.Err}");
            Assert.Equal(qemu.Code, ours.Code);
        }
    }
}
