using System.Buffers;
using System.Buffers.Binary;
using Qcow2.Spans;
using Qcow2.Volume.Crypto;
using Qcow2.Volume.Mapping;

namespace Qcow2.Volume;

// Giving a new image encryption (Qcow2Encryption.AddLuksEncryption / AddLegacyAesEncryption): the
// checks that the image holds nothing yet, making its preallocated clusters read as zeros once they
// are decrypted, and the legacy AES header change.
public sealed partial class Qcow2Image
{
    /// <summary>
    /// Throws unless this image may be given encryption: writable, not encrypted, no snapshots, no
    /// compressed clusters, and every allocated data cluster (preallocation, data_file_raw) still all
    /// zeros on the host, i.e. nothing a guest wrote.
    /// </summary>
    /// <exception cref="InvalidOperationException">The image is read-only, encrypted, or holds data or snapshots.</exception>
    internal void ThrowIfNotEncryptable()
    {
        ThrowIfNotWritable();
        if (_encryption != CryptMethod.None) throw new InvalidOperationException("The image is already encrypted.");
        if (_snapshots.Count > 0)
            throw new InvalidOperationException("Only a new image without data or snapshots can be given encryption.");
        byte[] buffer = ArrayPool<byte>.Shared.Rent(_clusterSize);
        try
        {
            foreach (var (guest, host, length, kind) in AllocatedExtentsForEncryption())
            {
                if (kind == ExtentKind.Compressed)
                    throw new InvalidOperationException($"Only a new image without data or snapshots can be given encryption (compressed data at guest offset 0x{guest:x}).");
                if (kind != ExtentKind.Data) continue;
                for (long done = 0; done < length;)
                {
                    int n = (int)Math.Min(_clusterSize, length - done);
                    var span = buffer.AsSpan(0, n);
                    int got = DataStorage.Read(host + done, span);
                    if (span[..Math.Max(got, 0)].ContainsAnyExcept((byte)0))
                        throw new InvalidOperationException($"Only a new image without data or snapshots can be given encryption (data at guest offset 0x{guest + done:x}).");
                    done += n;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Makes the allocated (preallocated) data clusters of this still-unencrypted image read as zeros once
    /// it is encrypted: QEMU leaves their host zeros in place, which decrypt to noise. Version 3 images
    /// without a raw data file get the zero flag on those clusters and keep their host clusters (no data is
    /// written, metadata preallocation stays sparse); version 2 images and raw data files, which cannot say
    /// "zero" in their metadata, get the zeros encrypted with <paramref name="cipher"/> written over them.
    /// </summary>
    internal void ZeroAllocatedDataForEncryption(ImageEncryption cipher)
    {
        bool metadataZero = _version >= 3 && !(_dataFile is not null && _dataFileRaw);
        var extents = new List<(long Guest, long Host, long Length, ExtentKind Kind)>(AllocatedExtentsForEncryption());
        if (extents.Count == 0) return;
        if (metadataZero)
        {
            foreach (var e in extents)
            {
                if (e.Kind == ExtentKind.Data) WriteZeroes(e.Guest, Math.Min(e.Length, Size - e.Guest), unmap: false);
            }
            Flush();
            return;
        }
        const int chunkMax = 1 << 20;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(chunkMax);
        try
        {
            foreach (var (guest, host, length, kind) in extents)
            {
                if (kind != ExtentKind.Data) continue;
                // Whole sectors: the extents are cluster (or subcluster) granular.
                long total = (length + CryptoSectorMask) & ~CryptoSectorMask;
                for (long done = 0; done < total;)
                {
                    int n = (int)Math.Min(chunkMax, total - done);
                    var span = buffer.AsSpan(0, n);
                    span.Clear();
                    cipher.Encrypt(span, host + done, guest + done);
                    DataStorage.Write(host + done, span);
                    done += n;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        DataStorage.Flush();
    }

    /// <summary>The extents of this image that have a host cluster or compressed data (not zero, not unallocated).</summary>
    private IEnumerable<(long Guest, long Host, long Length, ExtentKind Kind)> AllocatedExtentsForEncryption()
    {
        long size = Size;
        for (long offset = 0; offset < size;)
        {
            var ext = MapExtent(offset, size - offset, forStatus: true);
            if (ext.Length <= 0) yield break;
            if (ext.Kind is ExtentKind.Data or ExtentKind.Compressed)
                yield return (offset, ext.HostOffset, ext.Length, ext.Kind);
            offset += ext.Length;
        }
    }

    /// <summary>
    /// Makes this new image legacy-AES encrypted (crypt_method 1): the only change qemu-img makes for
    /// <c>encrypt.format=aes</c>, as the key is the secret itself and nothing else is stored.
    /// </summary>
    internal void InstallLegacyAes()
    {
        ThrowIfNotWritable();
        if (_encryption != CryptMethod.None) throw new InvalidOperationException("The image is already encrypted.");
        Span<byte> method = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(method, Qcow2Constants.CryptAes);
        lock (_meta)
        {
            FlushMetadataLocked();
            _file.Write(CryptMethodOffset, method);
            _file.Flush();
            method.CopyTo(_headerBuffer.AsSpan(CryptMethodOffset));
        }
    }
}

public sealed partial class Qcow2Image
{
    /// <summary>
    /// True for an encrypted image opened without its secret (see <see cref="Qcow2OpenOptions.EncryptionSecret"/>
    /// and <see cref="Qcow2OpenOptions.BackingSecretResolver"/>): its metadata is readable, its data is not.
    /// False for unencrypted images and unlocked ones.
    /// </summary>
    public bool IsLocked => _encryption != CryptMethod.None && _crypto is null;
}
