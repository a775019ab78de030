using Qcow2.Volume.Crypto;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>
/// Random scripts of writes, zero writes and discards on encrypted images (made by this library, in
/// memory) against a plain byte-array model: what reads back must be what was written, also after
/// reopening. The qemu round trips live in <see cref="EncryptedImageInteropTests"/>.
/// </summary>
public sealed class EncryptedImageModelTests
{
    private const int Seed = 20261121;
    private const long DiskSize = 3 << 20;
    private static readonly byte[] Secret = "model"u8.ToArray();

    private static MemoryStorage NewImage(string kind, int clusterSize)
    {
        var storage = new MemoryStorage("model.qcow2");
        Qcow2Creator.Create(storage, new Qcow2CreateOptions { Size = DiskSize, ClusterSize = clusterSize, Compat = kind == "aes" ? "0.10" : "1.1" });
        if (kind == "aes")
        {
            // Legacy AES has no header region: the method is the only mark (as qemu-img writes it).
            Span<byte> method = [0, 0, 0, 1];
            storage.Write(32, method);
        }
        else
        {
            Qcow2Encryption.AddLuksEncryption(storage, new LuksCreateOptions
            {
                Secret = Secret, Iterations = 1000, CipherMode = kind, IvgenAlg = kind == "cbc" ? "essiv" : "plain64",
            });
        }
        return storage;
    }

    [Theory]
    [InlineData("xts", 65536)]
    [InlineData("cbc", 4096)]
    [InlineData("aes", 65536)]
    [InlineData("xts", 512)]
    public void RandomScript_ReadsBackTheModel(string kind, int clusterSize)
    {
        var storage = NewImage(kind, clusterSize);
        var rng = new Random(Seed);
        byte[] model = new byte[DiskSize];
        var options = new Qcow2OpenOptions { EncryptionSecret = Secret };
        using (var img = Qcow2Image.Open(storage, options))
        {
            for (int step = 0; step < 150; step++)
            {
                long offset = rng.NextInt64(DiskSize);
                int length = (int)Math.Min(DiskSize - offset, rng.Next(4) == 0 ? rng.Next(1, 300_000) : rng.Next(1, 5000));
                switch (rng.Next(10))
                {
                    case < 7:
                        byte[] data = new byte[length];
                        rng.NextBytes(data);
                        img.Write(offset, data);
                        data.CopyTo(model, offset);
                        break;
                    case < 9:
                        img.WriteZeroes(offset, length, unmap: rng.Next(2) == 0);
                        Array.Clear(model, (int)offset, length);
                        break;
                    default:
                        img.Discard(offset, length);
                        // Whole clusters are released and then read as zeros (v3 without backing, and v2 without backing).
                        long start = (offset + clusterSize - 1) / clusterSize * clusterSize;
                        long end = offset + length == DiskSize ? DiskSize : (offset + length) / clusterSize * clusterSize;
                        if (end > start) Array.Clear(model, (int)start, (int)(end - start));
                        break;
                }
                if (step % 25 == 0)
                {
                    long at = rng.NextInt64(DiskSize - 70_000);
                    byte[] part = new byte[70_000];
                    img.Read(at, part);
                    Assert.True(part.AsSpan().SequenceEqual(model.AsSpan((int)at, part.Length)), $"step {step}, read at {at}");
                }
            }
            byte[] all = new byte[DiskSize];
            img.Read(0, all);
            Assert.Equal(model, all);
        }
        using (var again = Qcow2Image.Open(storage, options with { ReadOnly = true }))
        {
            byte[] all = new byte[DiskSize];
            again.Read(0, all);
            Assert.Equal(model, all);
        }
        // The bytes on the host are not the guest's: a distinctive write is not found in the file.
        using (var img = Qcow2Image.Open(storage, options))
            img.Write(0, "plaintext-marker-0123456789"u8);
        Assert.Equal(-1, storage.ToArray().AsSpan().IndexOf("plaintext-marker-0123456789"u8));
    }
}
