using System.Buffers.Binary;
using System.Text;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Check;
using Qcow2.Volume.Crypto;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Check;

/// <summary>
/// The LUKS region (full disk encryption header extension) under check and repair, from two fuzz
/// findings (fuzz/README.md): a region length that reaches far past the end of the file must not make
/// the repair grow the file to it, and an L1 entry pointing into the region must not make the repair
/// rewrite key material as an L2 table (qemu-img 7.2 does: the key is lost).
/// </summary>
public sealed class EncryptionRegionCheckTests
{
    private const ulong Copied = 1UL << 63;
    private const int ClusterSize = 4096;
    private const string SecretText = "check-secret";
    private static readonly byte[] Secret = Encoding.UTF8.GetBytes(SecretText);
    private const uint CryptoExtension = 0x0537be77;

    private static byte Pattern(long offset) => (byte)(offset * 7 + 3);

    /// <summary>
    /// The fuzz seed's shape: 4 MiB, 4 KiB clusters, LUKS aes-128-cbc-essiv:sha256 (sha1 PBKDF2),
    /// three clusters of data at guest 0 and 5000 bytes in the second half (another L2 table).
    /// </summary>
    private static byte[] MakeEncryptedImage()
    {
        var storage = new MemoryStorage("luks");
        Qcow2Creator.Create(storage, new Qcow2CreateOptions { Size = 4L << 20, ClusterSize = ClusterSize });
        Qcow2Encryption.AddLuksEncryption(storage, new LuksCreateOptions
        {
            Secret = Secret, Iterations = 1000, CipherAlg = "aes-128", CipherMode = "cbc", IvgenAlg = "essiv", IvgenHashAlg = "sha256", HashAlg = "sha1",
        });
        using (var image = Qcow2Image.Open(storage, new Qcow2OpenOptions { EncryptionSecret = Secret }))
        {
            var data = new byte[ClusterSize * 3];
            for (int i = 0; i < data.Length; i++) data[i] = Pattern(i);
            image.Write(0, data);
            image.Write(image.Size / 2 + 100, data.AsSpan(0, 5000));
            image.Flush();
        }
        return storage.ToArray();
    }

    /// <summary>Where the full disk encryption header extension's data (offset, length) lies in the header.</summary>
    private static int CryptoExtensionDataOffset(byte[] image)
    {
        int pos = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(100));   // header_length (version 3)
        while (pos + 8 <= ClusterSize)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(pos));
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(pos + 4));
            if (type == CryptoExtension) return pos + 8;
            if (type == 0) break;
            pos += 8 + ((length + 7) & ~7);
        }
        throw new InvalidOperationException("no full disk encryption header extension");
    }

    private static (long Offset, long Length) CryptoRegion(byte[] image)
    {
        int at = CryptoExtensionDataOffset(image);
        return ((long)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(at)), (long)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(at + 8)));
    }

    /// <summary>
    /// A cluster inside the key material of slot 0 (the active one): the LUKS1 slot's material offset
    /// (in sectors) and stripes, times the key bytes, say where it lies.
    /// </summary>
    private static long KeyMaterialCluster(byte[] image, long regionOffset)
    {
        var luks = image.AsSpan((int)regionOffset);
        long material = regionOffset + BinaryPrimitives.ReadUInt32BigEndian(luks[(208 + 40)..]) * 512L;
        long materialBytes = (long)BinaryPrimitives.ReadUInt32BigEndian(luks[(208 + 44)..]) * BinaryPrimitives.ReadUInt32BigEndian(luks[108..]);
        long target = (material + ClusterSize - 1) & ~(long)(ClusterSize - 1);
        Assert.True(target + ClusterSize <= material + materialBytes);
        return target;
    }

    /// <summary>Our guest read through the library with the secret (throws when it does not unlock).</summary>
    private static byte[] ReadWithSecret(string path, long offset, int length)
    {
        using var storage = FileStorage.Open(path, writable: false);
        using var image = Qcow2Image.Open(storage, new Qcow2OpenOptions { EncryptionSecret = Secret });
        var buffer = new byte[length];
        image.Read(offset, buffer);
        return buffer;
    }

    /// <summary>qemu-img check --output=json [-r mode] on the encrypted file opened with the secret (QEMU opens LUKS images only with it).</summary>
    private static (int ExitCode, long Corruptions, long Leaks, long CorruptionsFixed, string Output) QemuCheck(string path, RepairMode repair = RepairMode.None)
    {
        var args = new List<string> { "check", "--output=json" };
        if (repair != RepairMode.None) { args.Add("-r"); args.Add(repair == RepairMode.All ? "all" : "leaks"); }
        args.AddRange(QemuTools.EncryptedImageArgs(path, SecretText));
        var (code, stdout, stderr) = QemuTools.Run(QemuTools.QemuImg, args.ToArray());
        int json = stdout.IndexOf('{', StringComparison.Ordinal);
        if (json < 0) return (code, -1, -1, -1, stdout + stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(stdout[json..]);
        long Get(string name) => doc.RootElement.TryGetProperty(name, out var v) ? v.GetInt64() : 0;
        return (code, Get("corruptions"), Get("leaks"), Get("corruptions-fixed"), stdout + stderr);
    }

    private static void AssertPattern(byte[] data, long guestStart, long patternStart)
    {
        for (int i = 0; i < data.Length; i++)
            Assert.True(data[i] == Pattern(patternStart + i), $"guest byte {guestStart + i}: {data[i]} != {Pattern(patternStart + i)}");
    }

    [Fact]
    public void CheckRepairAll_EncryptionRegionFarPastEndOfFile_ReportedAndRepairBounded()
    {
        using var dir = new TempDir();
        var image = MakeEncryptedImage();
        var (regionOffset, regionLength) = CryptoRegion(image);
        int at = CryptoExtensionDataOffset(image);
        long hugeLength = regionLength + 0x8_0000_0000L;   // 32 GiB past the real region
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(at + 8), (ulong)hugeLength);
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(56), 0);   // refcount_table_clusters 1 -> 0
        string ours = dir.File("ours.qcow2"), theirs = dir.File("qemu.qcow2");
        File.WriteAllBytes(ours, image);
        File.WriteAllBytes(theirs, image);
        long originalLength = image.Length;

        var readOnly = CheckHarness.OurCheck(ours);
        var qemuReadOnly = QemuCheck(theirs);
        Assert.Equal(2, readOnly.ExitCode);
        Assert.Contains(readOnly.Findings, f => f.Kind == CheckFindingKind.PastEndOfFile && f.Offset == regionOffset);
        Assert.True(qemuReadOnly.ExitCode == readOnly.ExitCode && qemuReadOnly.Corruptions == readOnly.Corruptions,
            $"qemu-img: {qemuReadOnly.Output}\nours: {readOnly.Corruptions} corruptions\n{string.Join("\n", readOnly.Findings)}");

        var repaired = CheckHarness.OurCheck(ours, RepairMode.All);
        var qemuRepaired = QemuCheck(theirs, RepairMode.All);

        // Bounded: at most the real structures' worth of new clusters (a rebuilt refcount table and blocks).
        long after = new FileInfo(ours).Length;
        Assert.True(after <= originalLength + 16 * ClusterSize, $"the repair grew the file from {originalLength} to {after}");
        Assert.True(repaired.IsClean, string.Join("\n", repaired.Findings));
        Assert.True(CheckHarness.OurCheck(ours).IsClean);
        var qemuAfter = QemuCheck(ours);
        Assert.True(qemuAfter.ExitCode == 0, qemuAfter.Output);
        // qemu-img 7.2 leaves the image corrupt (it cannot rebuild without growing to the region's end).
        Assert.True(qemuRepaired.ExitCode != 0, qemuRepaired.Output);
        Assert.True(new FileInfo(theirs).Length <= originalLength + 16 * ClusterSize);

        // The region is the real one again, and the secret still unlocks the image and reads its data.
        var fixedImage = File.ReadAllBytes(ours);
        Assert.Equal((regionOffset, regionLength), CryptoRegion(fixedImage));
        AssertPattern(ReadWithSecret(ours, 0, ClusterSize * 3), 0, 0);
        AssertPattern(ReadWithSecret(ours, (2L << 20) + 100, 5000), (2L << 20) + 100, 0);
        var qemuData = QemuTools.ReadEncryptedWithQemu(ours, SecretText);
        AssertPattern(qemuData.AsSpan(0, ClusterSize * 3).ToArray(), 0, 0);
    }

    [Fact]
    public void CheckRepairAll_FarReachingRegionWithoutLuksHeader_LeftCorruptAndFileNotGrown()
    {
        using var dir = new TempDir();
        var image = MakeEncryptedImage();
        var (regionOffset, regionLength) = CryptoRegion(image);
        int at = CryptoExtensionDataOffset(image);
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(at + 8), (ulong)(regionLength + 0x8_0000_0000L));
        BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan(56), 0);   // refcount_table_clusters 1 -> 0
        image[regionOffset] ^= 0xff;                                   // no LUKS magic: the real length is unknown
        string ours = dir.File("ours.qcow2");
        File.WriteAllBytes(ours, image);

        var repaired = CheckHarness.OurCheck(ours, RepairMode.All);

        // As qemu-img 7.2 leaves it: the refcounts rebuilt, the region still one corruption, the file
        // no longer than the rebuilt structure needs (never grown towards the region's claimed end).
        Assert.True(new FileInfo(ours).Length <= image.Length + 16 * ClusterSize, $"grown to {new FileInfo(ours).Length}");
        Assert.True(repaired.RefcountStructureRebuilt);
        Assert.Equal(1, repaired.Corruptions);
        Assert.Equal(0, repaired.Leaks);
        var again = CheckHarness.OurCheck(ours);
        Assert.Equal(1, again.Corruptions);
        Assert.Contains(again.Findings, f => f.Kind == CheckFindingKind.PastEndOfFile && f.Offset == regionOffset);
        var stored = File.ReadAllBytes(ours);
        Assert.Equal(regionLength + 0x8_0000_0000L, CryptoRegion(stored).Length);
    }

    [Fact]
    public void CheckRepairAll_RegionLengthCoveringL2Tables_KeepsTablesAndData()
    {
        using var dir = new TempDir();
        var image = MakeEncryptedImage();
        var (regionOffset, _) = CryptoRegion(image);
        long l1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(40));
        var l1Before = image.AsSpan((int)l1Offset, 16).ToArray();
        int at = CryptoExtensionDataOffset(image);
        // The region now claims everything to the end of the file, L2 tables and data included: only
        // what the LUKS header uses is key material, so no L1 entry is dropped for lying in the rest.
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan(at + 8), (ulong)(image.Length - regionOffset));
        string ours = dir.File("ours.qcow2");
        File.WriteAllBytes(ours, image);

        var readOnly = CheckHarness.OurCheck(ours);
        var qemuReadOnly = QemuCheck(ours);
        Assert.True(readOnly.ExitCode == 2 && qemuReadOnly.ExitCode == 2 && qemuReadOnly.Corruptions == readOnly.Corruptions,
            $"qemu-img: {qemuReadOnly.Output}\nours: {readOnly.Corruptions}\n{string.Join("\n", readOnly.Findings.Take(40))}");
        Assert.DoesNotContain(readOnly.Findings, f => f.Kind == CheckFindingKind.L1Entry);

        CheckHarness.OurCheck(ours, RepairMode.All);

        var fixedImage = File.ReadAllBytes(ours);
        for (int e = 0; e < 2; e++)   // the same tables (the COPIED flag follows the raised refcounts)
            Assert.Equal(BinaryPrimitives.ReadUInt64BigEndian(l1Before.AsSpan(e * 8)) & ~Copied, BinaryPrimitives.ReadUInt64BigEndian(fixedImage.AsSpan((int)l1Offset + e * 8)) & ~Copied);
        AssertPattern(ReadWithSecret(ours, 0, ClusterSize * 3), 0, 0);
        AssertPattern(ReadWithSecret(ours, (2L << 20) + 100, 5000), (2L << 20) + 100, 0);
    }

    [Fact]
    public void CheckRepairAll_L1EntryIntoLuksRegion_DropsEntryAndKeepsKey()
    {
        using var dir = new TempDir();
        var image = MakeEncryptedImage();
        var (regionOffset, regionLength) = CryptoRegion(image);
        long l1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(40));
        long target = KeyMaterialCluster(image, regionOffset);
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan((int)l1Offset), Copied | (ulong)target);
        string ours = dir.File("ours.qcow2"), theirs = dir.File("qemu.qcow2");
        File.WriteAllBytes(ours, image);
        File.WriteAllBytes(theirs, image);
        var regionBefore = image.AsSpan((int)regionOffset, (int)regionLength).ToArray();

        var readOnly = CheckHarness.OurCheck(ours);
        var qemuReadOnly = QemuCheck(theirs);
        Assert.Equal(2, readOnly.ExitCode);
        Assert.Contains(readOnly.Findings, f => f.Kind == CheckFindingKind.L1Entry && f.Offset == l1Offset);
        // The same numbers as qemu-img: the key material cluster's double use, the "L2 table"'s
        // random entries, the real L2 table and its data clusters leaked.
        Assert.True(qemuReadOnly.ExitCode == readOnly.ExitCode && qemuReadOnly.Corruptions == readOnly.Corruptions && qemuReadOnly.Leaks == readOnly.Leaks,
            $"qemu-img: {qemuReadOnly.Output}\nours: {readOnly.Corruptions} corruptions {readOnly.Leaks} leaks\n{string.Join("\n", readOnly.Findings.Take(40))}");

        var repaired = CheckHarness.OurCheck(ours, RepairMode.All);

        Assert.Contains(repaired.Findings, f => f.Kind == CheckFindingKind.L1Entry && f.Offset == l1Offset && f.Repaired);
        Assert.True(repaired.IsClean, string.Join("\n", repaired.Findings));
        Assert.True(CheckHarness.OurCheck(ours).IsClean);
        var qemuAfter = QemuCheck(ours);
        Assert.True(qemuAfter.ExitCode == 0, qemuAfter.Output);
        var fixedImage = File.ReadAllBytes(ours);
        Assert.True(fixedImage.AsSpan((int)regionOffset, (int)regionLength).SequenceEqual(regionBefore), "the repair wrote into the LUKS region");
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64BigEndian(fixedImage.AsSpan((int)l1Offset)));

        // The first L2 table's range (guest 0..2 MiB) now reads zeros; the second half is untouched.
        Assert.All(ReadWithSecret(ours, 0, ClusterSize * 3), b => Assert.Equal(0, b));
        AssertPattern(ReadWithSecret(ours, (2L << 20) + 100, 5000), (2L << 20) + 100, 0);
        var qemuData = QemuTools.ReadEncryptedWithQemu(ours, SecretText);
        AssertPattern(qemuData.AsSpan((int)(2L << 20) + 100, 5000).ToArray(), (2L << 20) + 100, 0);

        // qemu-img 7.2 rewrites the key material as an L2 table: the region changes and the secret
        // no longer unlocks the image.
        var q = QemuCheck(theirs, RepairMode.All);
        var qemuFixed = File.ReadAllBytes(theirs);
        Assert.False(qemuFixed.AsSpan((int)regionOffset, (int)regionLength).SequenceEqual(regionBefore), q.Output);
        Assert.Throws<Qcow2KeyException>(() => ReadWithSecret(theirs, 0, 512));
    }

    [Fact]
    public void CheckRepairAll_SnapshotL1EntryIntoLuksRegion_DropsEntryAndKeepsKey()
    {
        using var dir = new TempDir();
        string ours = dir.File("ours.qcow2");
        File.WriteAllBytes(ours, MakeEncryptedImage());
        var snapshotArgs = new List<string> { "snapshot", "-c", "s1" };
        snapshotArgs.AddRange(QemuTools.EncryptedImageArgs(ours, SecretText));
        QemuTools.Img(snapshotArgs.ToArray());
        var image = File.ReadAllBytes(ours);
        var (regionOffset, regionLength) = CryptoRegion(image);
        long snapshotTable = (long)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan(64));
        long snapshotL1 = (long)BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan((int)snapshotTable));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(60)));
        BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan((int)snapshotL1), (ulong)KeyMaterialCluster(image, regionOffset));
        File.WriteAllBytes(ours, image);
        var regionBefore = image.AsSpan((int)regionOffset, (int)regionLength).ToArray();

        var readOnly = CheckHarness.OurCheck(ours);
        Assert.Equal(2, readOnly.ExitCode);
        Assert.Contains(readOnly.Findings, f => f.Kind == CheckFindingKind.L1Entry && f.Offset == snapshotL1);

        var repaired = CheckHarness.OurCheck(ours, RepairMode.All);

        Assert.Contains(repaired.Findings, f => f.Kind == CheckFindingKind.L1Entry && f.Offset == snapshotL1 && f.Repaired);
        Assert.True(repaired.IsClean, string.Join("\n", repaired.Findings));
        var qemuAfter = QemuCheck(ours);
        Assert.True(qemuAfter.ExitCode == 0, qemuAfter.Output);
        var fixedImage = File.ReadAllBytes(ours);
        Assert.True(fixedImage.AsSpan((int)regionOffset, (int)regionLength).SequenceEqual(regionBefore), "the repair wrote into the LUKS region");
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64BigEndian(fixedImage.AsSpan((int)snapshotL1)));
        // The active image is untouched and still unlocks.
        AssertPattern(ReadWithSecret(ours, 0, ClusterSize * 3), 0, 0);
        AssertPattern(ReadWithSecret(ours, (2L << 20) + 100, 5000), (2L << 20) + 100, 0);
    }
}
