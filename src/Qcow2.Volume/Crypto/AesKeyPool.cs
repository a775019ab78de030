using System.Security.Cryptography;

namespace Qcow2.Volume.Crypto;

/// <summary>
/// One AES key and a small pool of <see cref="Aes"/> instances holding it. An instance is not safe
/// for concurrent use, so each caller rents its own for the duration of one call; the pool keeps a
/// few for reuse so steady-state I/O creates none. Each pooled instance also keeps its ECB encryptor and
/// decryptor transforms: the one-shot <c>Aes.EncryptEcb</c>/<c>DecryptEcb</c> build a native cipher
/// context (and a managed wrapper) per call, the cached transforms reuse theirs, so the sector ciphers'
/// hot path allocates nothing.
/// </summary>
internal sealed class AesKeyPool : IDisposable
{
    private readonly byte[] _key;
    private readonly Stack<Entry> _free = new();
    private readonly int _maxPooled = Math.Max(4, Environment.ProcessorCount * 2);
    private bool _disposed;

    public AesKeyPool(ReadOnlySpan<byte> key)
    {
        if (key.Length is not (16 or 24 or 32))
            throw new ArgumentException($"AES keys are 16, 24 or 32 bytes, not {key.Length}.", nameof(key));
        _key = key.ToArray();
    }

    /// <summary>The key length in bytes.</summary>
    public int KeyBytes => _key.Length;

    public Lease Rent()
    {
        lock (_free)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.TryPop(out var entry)) return new Lease(this, entry);
        }
        var created = Aes.Create();
        created.Key = _key;
        return new Lease(this, new Entry(created));
    }

    private void Return(Entry entry)
    {
        lock (_free)
        {
            if (!_disposed && _free.Count < _maxPooled)
            {
                _free.Push(entry);
                return;
            }
        }
        entry.Dispose();
    }

    public void Dispose()
    {
        lock (_free)
        {
            if (_disposed) return;
            _disposed = true;
            while (_free.TryPop(out var entry)) entry.Dispose();
        }
        CryptographicOperations.ZeroMemory(_key);
    }

    /// <summary>A pooled instance and its lazily made ECB transforms (no padding).</summary>
    internal sealed class Entry(Aes aes) : IDisposable
    {
        private ICryptoTransform? _encryptor;
        private ICryptoTransform? _decryptor;

        public Aes Aes { get; } = aes;

        public ICryptoTransform Encryptor => _encryptor ??= CreateEcb(encrypt: true);

        public ICryptoTransform Decryptor => _decryptor ??= CreateEcb(encrypt: false);

        private ICryptoTransform CreateEcb(bool encrypt)
        {
            Aes.Mode = CipherMode.ECB;
            Aes.Padding = PaddingMode.None;
            return encrypt ? Aes.CreateEncryptor() : Aes.CreateDecryptor();
        }

        public void Dispose()
        {
            _encryptor?.Dispose();
            _decryptor?.Dispose();
            Aes.Dispose();
        }
    }

    /// <summary>A rented instance; dispose to give it back.</summary>
    public readonly struct Lease : IDisposable
    {
        private readonly AesKeyPool _owner;
        private readonly Entry _entry;

        internal Lease(AesKeyPool owner, Entry entry)
        {
            _owner = owner;
            _entry = entry;
        }

        /// <summary>The instance, for the one-shot APIs (which allocate per call: not for hot paths).</summary>
        public Aes Aes => _entry.Aes;

        /// <summary>
        /// Encrypts (ECB, no padding) <paramref name="count"/> bytes, a multiple of 16, of
        /// <paramref name="input"/> from <paramref name="inputOffset"/> into <paramref name="output"/> at
        /// <paramref name="outputOffset"/> (may be the same place). Allocates nothing once the transform exists.
        /// </summary>
        public void EncryptEcb(byte[] input, int inputOffset, int count, byte[] output, int outputOffset) =>
            Transform(_entry.Encryptor, input, inputOffset, count, output, outputOffset);

        /// <summary>Decrypts (ECB, no padding), as <see cref="EncryptEcb"/> encrypts.</summary>
        public void DecryptEcb(byte[] input, int inputOffset, int count, byte[] output, int outputOffset) =>
            Transform(_entry.Decryptor, input, inputOffset, count, output, outputOffset);

        private static void Transform(ICryptoTransform transform, byte[] input, int inputOffset, int count, byte[] output, int outputOffset)
        {
            if (count == 0) return;
            int done = transform.TransformBlock(input, inputOffset, count, output, outputOffset);
            if (done != count) throw new CryptographicException($"The AES transform processed {done} of {count} bytes.");
        }

        public void Dispose() => _owner.Return(_entry);
    }
}
