using System.Security.Cryptography;
using System.Text;
using BenchmarkDotNet.Attributes;
using Qcow2.Volume;
using Qcow2.Volume.Crypto;
using Qcow2.Volume.Storage;

namespace Qcow2.Benchmarks.Volume;

/// <summary>
/// The sector ciphers alone: 64 KiB (128 sectors) encrypted or decrypted in place, the unit of one
/// cluster read or write. Throughput is 64 KiB / mean. MemoryDiagnoser must show 0 B after warm-up.
/// </summary>
[MemoryDiagnoser]
public class SectorCipherBenchmarks
{
    private SectorCipher _cipher = null!;
    private byte[] _buffer = null!;
    private long _sector;

    [Params("aes-256-xts-plain64", "aes-256-cbc-essiv")]
    public string Cipher { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        var key = new byte[Cipher.Contains("xts") ? 64 : 32];
        new Random(3).NextBytes(key);
        if (Cipher.Contains("xts"))
        {
            _cipher = new XtsSectorCipher(key, IvGeneratorKind.Plain64, essiv: null);
        }
        else
        {
            // ESSIV: the IV key is the SHA-256 of the data key (LUKS's essiv:sha256).
            _cipher = new CbcSectorCipher(key, IvGeneratorKind.Essiv, new AesKeyPool(SHA256.HashData(key)));
        }
        _buffer = new byte[65536];
        new Random(4).NextBytes(_buffer);
    }

    [GlobalCleanup]
    public void Cleanup() => _cipher.Dispose();

    [Benchmark]
    public void Encrypt64K()
    {
        _cipher.Encrypt(_buffer, _sector);
        _sector = (_sector + 128) & 0xFFFFF;
    }

    [Benchmark]
    public void Decrypt64K()
    {
        _cipher.Decrypt(_buffer, _sector);
        _sector = (_sector + 128) & 0xFFFFF;
    }
}

/// <summary>
/// 64 KiB reads and in-place writes of allocated clusters through <see cref="Qcow2Image"/> (memory
/// storage) on a LUKS image (aes-256-xts-plain64, qemu-img's default) next to the same on a plain
/// image: the cost of encryption on the I/O path. Reads and in-place writes must allocate 0 B.
/// </summary>
[MemoryDiagnoser]
public class EncryptedImageBenchmarks
{
    private static readonly byte[] Secret = Encoding.UTF8.GetBytes("benchmark-secret");
    private MemoryStorage _storage = null!;
    private Qcow2Image _reader = null!;
    private Qcow2Image _writer = null!;
    private MemoryStorage _writeStorage = null!;
    private byte[] _buffer = null!;
    private int _next;

    [Params(false, true)]
    public bool Encrypted { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _storage = CreateFilled(Encrypted);
        _reader = Qcow2Image.Open(_storage, OpenOptions(readOnly: true));
        _writeStorage = CreateFilled(Encrypted);
        _writer = Qcow2Image.Open(_writeStorage, OpenOptions(readOnly: false));
        _buffer = new byte[65536];
        new Random(5).NextBytes(_buffer);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _reader.Dispose();
        _writer.Dispose();
        _storage.Dispose();
        _writeStorage.Dispose();
    }

    [Benchmark]
    public void Read64K()
    {
        _reader.Read((_next++ & 1023) * 65536L, _buffer);
    }

    [Benchmark]
    public void OverwriteAllocated64K()
    {
        _writer.Write((_next++ & 1023) * 65536L, _buffer);
    }

    [Benchmark]
    public ValueTask Read64KAsync()
    {
        return _reader.ReadAsync((_next++ & 1023) * 65536L, _buffer);
    }

    private Qcow2OpenOptions OpenOptions(bool readOnly) =>
        new() { ReadOnly = readOnly, EncryptionSecret = Encrypted ? Secret : null };

    /// <summary>A 64 MiB image, LUKS-encrypted (1000 PBKDF2 iterations: quick to open) or not, every cluster written.</summary>
    private static MemoryStorage CreateFilled(bool encrypted)
    {
        var storage = new MemoryStorage("bench");
        Qcow2Creator.Create(storage, new Qcow2CreateOptions { Size = ImageFixture.DiskSize });
        if (encrypted) Qcow2Encryption.AddLuksEncryption(storage, new LuksCreateOptions { Secret = Secret, Iterations = 1000 });
        using var image = Qcow2Image.Open(storage, new Qcow2OpenOptions { EncryptionSecret = encrypted ? Secret : null });
        var chunk = new byte[65536];
        for (long offset = 0; offset < ImageFixture.DiskSize; offset += chunk.Length)
        {
            for (int i = 0; i < chunk.Length; i += 512) chunk[i] = (byte)(offset >> 16);
            image.Write(offset, chunk);
        }
        image.Flush();
        return storage;
    }
}
