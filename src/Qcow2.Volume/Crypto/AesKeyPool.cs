using System.Security.Cryptography;

namespace Qcow2.Volume.Crypto;

/// <summary>
/// One AES key and a small pool of <see cref="Aes"/> instances holding it. An instance is not safe
/// for concurrent use, so each caller rents its own for the duration of one call; the pool keeps a
/// few for reuse so steady-state I/O creates none.
/// </summary>
internal sealed class AesKeyPool : IDisposable
{
    private readonly byte[] _key;
    private readonly Stack<Aes> _free = new();
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
            if (_free.TryPop(out var aes)) return new Lease(this, aes);
        }
        var created = Aes.Create();
        created.Key = _key;
        return new Lease(this, created);
    }

    private void Return(Aes aes)
    {
        lock (_free)
        {
            if (!_disposed && _free.Count < _maxPooled)
            {
                _free.Push(aes);
                return;
            }
        }
        aes.Dispose();
    }

    public void Dispose()
    {
        lock (_free)
        {
            if (_disposed) return;
            _disposed = true;
            while (_free.TryPop(out var aes)) aes.Dispose();
        }
        CryptographicOperations.ZeroMemory(_key);
    }

    /// <summary>A rented instance; dispose to give it back.</summary>
    public readonly struct Lease : IDisposable
    {
        private readonly AesKeyPool _owner;

        public Lease(AesKeyPool owner, Aes aes)
        {
            _owner = owner;
            Aes = aes;
        }

        public Aes Aes { get; }

        public void Dispose() => _owner.Return(Aes);
    }
}
