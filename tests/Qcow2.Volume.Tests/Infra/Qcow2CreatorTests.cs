using System.Buffers.Binary;
using System.Text.Json.Nodes;
using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Infra;

/// <summary>
/// Images from <see cref="Qcow2Creator"/> against images from <c>qemu-img create</c> with the same
/// options: qemu-img check is clean, qemu-img info agrees, and where QEMU's layout is ours the
/// files are identical byte for byte.
/// </summary>
public sealed class Qcow2CreatorTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>(qemu-img -o options, size, whole file identical to qemu-img's).</summary>
    public static TheoryData<string, long, bool> Matrix => new()
    {
        { "", 100 << 20, true },
        { "compat=0.10", 100 << 20, true },
        { "cluster_size=512", 100 << 20, false },
        { "cluster_size=512", 1 << 20, true },
        { "cluster_size=4096", 100 << 20, true },
        { "cluster_size=2M", 10L << 30, true },
        { "refcount_bits=1", 100 << 20, true },
        { "refcount_bits=8", 100 << 20, true },
        { "refcount_bits=64", 100 << 20, true },
        { "lazy_refcounts=on", 100 << 20, true },
        { "extended_l2=on", 100 << 20, true },
        { "extended_l2=on,cluster_size=16K", 100 << 20, true },
        { "compression_type=zstd", 100 << 20, true },
        { "backing_file=base.raw,backing_fmt=raw", 100 << 20, true },
        { "backing_file=base.raw,backing_fmt=raw,compat=0.10", 100 << 20, true },
        { "backing_file=base.raw,backing_fmt=raw,cluster_size=512", 1 << 20, true },
        { "backing_file=base.raw,backing_fmt=raw,extended_l2=on,preallocation=metadata", 10 << 20, true },
        { "data_file=data.raw", 100 << 20, true },
        { "data_file=data.raw,data_file_raw=on", 100 << 20, true },
        { "data_file=data.raw,preallocation=full", 10 << 20, true },
        { "preallocation=metadata", 100 << 20, true },
        { "preallocation=metadata,cluster_size=4096", 10 << 20, false },
        { "preallocation=metadata,extended_l2=on", 10 << 20, true },
        { "preallocation=falloc", 10 << 20, false },
        { "preallocation=full", 10 << 20, false },
        { "lazy_refcounts=on,extended_l2=on,compression_type=zstd,refcount_bits=4,cluster_size=32K", 1L << 30, true },
        { "extended_l2=on,data_file=data.raw,data_file_raw=on", 50 << 20, true },
        { "extended_l2=on,preallocation=full", 10 << 20, false },
        { "preallocation=metadata,compat=0.10", 50 << 20, true },
        { "lazy_refcounts=on,preallocation=metadata,cluster_size=2M", 1L << 30, true },
        { "data_file=data.raw,preallocation=falloc,cluster_size=4096", 4 << 20, false },
        { "", 0, true },
        { "", 1000, true },
    };

    [Theory]
    [MemberData(nameof(Matrix))]
    public void Create_SameOptionsAsQemuImg_CheckCleanInfoEqualLayoutAsExpected(string qemuOptions, long size, bool identical)
    {
        var ours = Directory.CreateDirectory(Path.Combine(_dir.Path, "ours")).FullName;
        var theirs = Directory.CreateDirectory(Path.Combine(_dir.Path, "theirs")).FullName;
        foreach (var d in new[] { ours, theirs })
        {
            using var f = File.Create(Path.Combine(d, "base.raw"));
            f.SetLength(1 << 20);
        }

        var options = Parse(qemuOptions, size);
        // A relative data file name is created from the given directory, as qemu-img run there does.
        Qcow2Creator.Create(Path.Combine(ours, "img.qcow2"), options, dataFileDirectory: ours);
        var args = new List<string> { "create", "-q", "-f", "qcow2" };
        if (qemuOptions.Length > 0) { args.Add("-o"); args.Add(qemuOptions); }
        args.Add("img.qcow2");
        args.Add(size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        // In the image's directory: qemu-img creates a relative data file name in its working directory.
        QemuToolsInDir(theirs, args.ToArray());

        // From the image's directory: QEMU opens a relative data file name from its working directory.
        Assert.Contains("No errors were found on the image.", QemuToolsInDir(ours, "check", "img.qcow2"));

        Assert.Equal(Info(theirs), Info(ours));

        var a = File.ReadAllBytes(Path.Combine(ours, "img.qcow2"));
        var b = File.ReadAllBytes(Path.Combine(theirs, "img.qcow2"));
        int cs = options.ClusterSize;
        // The header cluster is ours to match whatever the layout (the table offsets aside).
        Assert.Equal(Normalize(b, cs), Normalize(a, cs));
        if (identical)
            Assert.True(a.AsSpan().SequenceEqual(b), $"files differ (ours {a.Length} bytes, qemu-img's {b.Length})");

        if (options.DataFile is not null)
            Assert.Equal(new FileInfo(Path.Combine(theirs, "data.raw")).Length, new FileInfo(Path.Combine(ours, "data.raw")).Length);
    }

    [Fact]
    public void Create_QemuIoWritesThenReads_ImageStaysClean()
    {
        var path = _dir.File("rw.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 64 << 20, ClusterSize = 4096, RefcountBits = 2 });
        QemuTools.Io(path, "qcow2", "write -P 0x5a 0 3M", "write -P 0x33 40M 1M", "write -z 50M 64k");
        QemuTools.Io(path, "qcow2", "read -P 0x5a 0 3M", "read -P 0x33 40M 1M", "read -P 0 50M 64k");
        var (code, stdout, _) = QemuTools.Run(QemuTools.QemuImg, "check", path);
        Assert.Equal(0, code);
        Assert.Contains("No errors were found on the image.", stdout);
    }

    /// <summary>Layouts with multi-cluster L1 and refcount tables and many refcount blocks.</summary>
    public static TheoryData<long, int, int, bool, Preallocation> BigLayouts => new()
    {
        { 16 << 20, 512, 16, false, Preallocation.Metadata },
        { 8 << 20, 512, 1, false, Preallocation.Full },
        { 1L << 40, 4096, 64, false, Preallocation.Off },
        { 1L << 30, 16384, 2, true, Preallocation.Metadata },
    };

    [Theory]
    [MemberData(nameof(BigLayouts))]
    public void Create_BigMetadataLayouts_CleanBeforeAndAfterQemuIoWrites(long size, int clusterSize, int refcountBits, bool extendedL2, Preallocation prealloc)
    {
        var path = _dir.File("big.qcow2");
        Qcow2Creator.Create(path, new Qcow2CreateOptions
        {
            Size = size, ClusterSize = clusterSize, RefcountBits = refcountBits, ExtendedL2 = extendedL2, Preallocation = prealloc,
        });
        Assert.Contains("No errors were found on the image.", QemuTools.Img("check", path));
        QemuTools.Io(path, "qcow2", "write -P 3 1M 64k", "read -P 3 1M 64k");
        Assert.Contains("No errors were found on the image.", QemuTools.Img("check", path));
    }

    [Fact]
    public void Create_OnMemoryStorage_WritesTheSameBytesAsOnAFile()
    {
        var o = new Qcow2CreateOptions { Size = 5 << 20, Preallocation = Preallocation.Metadata, ClusterSize = 8192 };
        var path = _dir.File("m.qcow2");
        Qcow2Creator.Create(path, o);
        var mem = new MemoryStorage();
        mem.Write(0, new byte[] { 1, 2, 3 }); // previous contents are discarded
        Qcow2Creator.Create(mem, o);
        Assert.Equal(File.ReadAllBytes(path), mem.ToArray());
    }

    [Fact]
    public void Create_DataFileStorageWithoutDataFileOption_ThrowsArgument()
    {
        Assert.Throws<ArgumentException>(() => Qcow2Creator.Create(new MemoryStorage(), new Qcow2CreateOptions { Size = 1 << 20 }, new MemoryStorage()));
    }

    [Fact]
    public void Create_RefusedOptions_CreateNoFile()
    {
        var path = _dir.File("no.qcow2");
        Assert.Throws<ArgumentException>(() => Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1L << 40, ClusterSize = 512 }));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Create_DataFileNamedLikeTheImage_ThrowsArgumentAndLeavesNoFile()
    {
        var path = _dir.File("same.qcow2");
        Assert.Throws<ArgumentException>(() => Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20, DataFile = "same.qcow2" }, _dir.Path));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Create_BackingNameThatDoesNotFitTheHeaderCluster_ThrowsArgument()
    {
        var o = new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = 512, BackingFile = new string('b', 500), BackingFormat = "raw" };
        Assert.Throws<ArgumentException>(() => Qcow2Creator.Create(new MemoryStorage(), o));
    }

    /// <summary>Each refusal with qemu-img's message for the same options.</summary>
    public static TheoryData<string> Refusals => new()
    {
        "cluster_size=1000",
        "cluster_size=256",
        "cluster_size=4M",
        "refcount_bits=3",
        "refcount_bits=128",
        "compat=0.10,refcount_bits=8",
        "compat=0.10,lazy_refcounts=on",
        "compat=0.10,extended_l2=on",
        "extended_l2=on,cluster_size=8K",
        "compat=0.10,data_file=dd.raw",
        "data_file_raw=on",
        "data_file=dd.raw,data_file_raw=on,backing_file=base.raw,backing_fmt=raw",
        "preallocation=metadata,backing_file=base.raw,backing_fmt=raw",
        "compat=0.10,compression_type=zstd",
        "backing_fmt=raw",
        "compat=1.0",
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void Validate_OptionsQemuImgRefuses_ThrowsWithQemuImgsMessage(string qemuOptions)
    {
        using (var f = File.Create(_dir.File("base.raw"))) f.SetLength(1 << 20);
        var (code, _, stderr) = QemuTools.Run(QemuTools.QemuImg, "create", "-q", "-f", "qcow2", "-o", qemuOptions, _dir.File("x.qcow2"), "1M");
        Assert.NotEqual(0, code);
        var e = Assert.Throws<ArgumentException>(() => Parse(qemuOptions, 1 << 20).Validate());
        string qemuMessage = stderr.Trim();
        qemuMessage = qemuMessage[(qemuMessage.LastIndexOf(": ", StringComparison.Ordinal) + 2)..];
        Assert.StartsWith(qemuMessage, e.Message);
    }

    [Theory]
    [InlineData(1L << 40, 512)]
    [InlineData((128L << 30) + 512, 512)]
    [InlineData(4L << 30, 512)]
    public void ComputeLayout_SizeAtOrBeyondTheL1Limit_MatchesQemuImg(long size, int clusterSize)
    {
        var (code, _, _) = QemuTools.Run(QemuTools.QemuImg, "create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", _dir.File("l.qcow2"), size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var o = new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize };
        if (code == 0) _ = Qcow2Creator.ComputeLayout(o);
        else Assert.Throws<ArgumentException>(() => Qcow2Creator.ComputeLayout(o));
    }

    private static string Info(string dir)
    {
        var json = JsonNode.Parse(QemuToolsInDir(dir, "info", "--output=json", "img.qcow2"))!;
        json.AsObject().Remove("actual-size");
        return json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
    }

    private static string QemuToolsInDir(string dir, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(QemuTools.QemuImg)
        {
            WorkingDirectory = dir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, err);
        return output;
    }

    /// <summary>The header cluster with the table offsets and sizes zeroed (they depend on the layout).</summary>
    private static byte[] Normalize(byte[] file, int clusterSize)
    {
        var c = file.AsSpan(0, Math.Min(clusterSize, file.Length)).ToArray();
        c.AsSpan(36, 4).Clear();  // l1_size is layout-independent, but keep the rest in step
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(36), BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(36)));
        c.AsSpan(40, 8).Clear();  // l1_table_offset
        c.AsSpan(48, 12).Clear(); // refcount_table_offset, refcount_table_clusters
        return c;
    }

    internal static Qcow2CreateOptions Parse(string qemuOptions, long size)
    {
        var o = new Qcow2CreateOptions { Size = size };
        foreach (var kv in qemuOptions.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = kv.Split('=', 2);
            string k = parts[0], v = parts[1];
            o = k switch
            {
                "compat" => o with { Compat = v },
                "cluster_size" => o with { ClusterSize = (int)ParseSize(v) },
                "refcount_bits" => o with { RefcountBits = int.Parse(v, System.Globalization.CultureInfo.InvariantCulture) },
                "lazy_refcounts" => o with { LazyRefcounts = v == "on" },
                "extended_l2" => o with { ExtendedL2 = v == "on" },
                "compression_type" => o with { CompressionType = v == "zstd" ? CompressionType.Zstd : CompressionType.Zlib },
                "backing_file" => o with { BackingFile = v },
                "backing_fmt" => o with { BackingFormat = v },
                "data_file" => o with { DataFile = v },
                "data_file_raw" => o with { DataFileRaw = v == "on" },
                "preallocation" => o with { Preallocation = Enum.Parse<Preallocation>(v, ignoreCase: true) },
                _ => throw new ArgumentException(k),
            };
        }
        return o;
    }

    private static long ParseSize(string v) => char.ToUpperInvariant(v[^1]) switch
    {
        'K' => long.Parse(v[..^1], System.Globalization.CultureInfo.InvariantCulture) << 10,
        'M' => long.Parse(v[..^1], System.Globalization.CultureInfo.InvariantCulture) << 20,
        _ => long.Parse(v, System.Globalization.CultureInfo.InvariantCulture),
    };
}
