using System.Buffers;
using System.Buffers.Binary;
using Qcow2.Spans;
using Qcow2.Volume.Crypto;

namespace Qcow2.Volume;

// Encrypted data (crypt_method 1 and 2) once unlocked with Qcow2OpenOptions.EncryptionSecret. The
// read and write paths call in here only when _crypto is set: data clusters are decrypted after they
// are read and encrypted into a pooled buffer before they are written; the rest of the image (metadata,
// zero clusters, discard, COW through ReadCoreAsync) works on plaintext as for any image.
public sealed partial class Qcow2Image
{
    /// <summary>The unlocked cipher; null for unencrypted images and for encrypted ones opened without a secret.</summary>
    private ImageEncryption? _crypto;

    /// <summary>Serialises overlapping writes of an unlocked image (read-modify-write of partial sectors).</summary>
    private SectorRangeLock? _cryptoWriteRanges;

    private const int CryptoSector = 512;
    private const long CryptoSectorMask = CryptoSector - 1;

    /// <summary>Unlocks the image's data with the secret given at open (constructor helper).</summary>
    private void UnlockEncryption(byte[] secret)
    {
        _crypto = _encryption == CryptMethod.Luks
            ? ImageEncryption.OpenLuks(_file, _cryptHeaderOffset, _cryptHeaderLength, secret,
                _options.MaxKeyDerivationWork > 0 ? _options.MaxKeyDerivationWork : LuksKeyStore.DefaultUnlockWork)
            : ImageEncryption.OpenLegacyAes(secret);
        _cryptoWriteRanges = new SectorRangeLock();
        // The LUKS region is metadata: the pre-write overlap check keeps data out of it (bounded by the file).
        if (_encryption == CryptMethod.Luks)
            AddMetadataRange(_cryptHeaderOffset, Math.Min(_cryptHeaderLength, Math.Max(0, _file.Length - _cryptHeaderOffset)));
    }

    /// <summary>Reads host data at <paramref name="host"/> (guest offset <paramref name="guest"/>) and decrypts it into <paramref name="destination"/>.</summary>
    private async ValueTask ReadDecryptedAsync<TIo>(long host, long guest, Memory<byte> destination, CancellationToken ct)
        where TIo : IIoAdapter
    {
        var crypto = _crypto!;
        int lead = (int)(host & CryptoSectorMask);
        if (lead == 0 && (destination.Length & CryptoSectorMask) == 0)
        {
            int got = await TIo.ReadAsync(DataStorage, host, destination, ct).ConfigureAwait(false);
            if (got < destination.Length) destination.Span[Math.Max(got, 0)..].Clear();
            crypto.Decrypt(destination.Span, host, guest);
            return;
        }
        // Partial sectors: whole sectors go through a bounce buffer, a chunk at a time.
        const int chunkMax = 64 * 1024;
        long alignedLength = (lead + destination.Length + CryptoSectorMask) & ~CryptoSectorMask;
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(chunkMax, alignedLength));
        try
        {
            long h = host - lead;
            long g = guest - lead;
            int skip = lead;
            while (!destination.IsEmpty)
            {
                int chunk = (int)Math.Min(chunkMax, (skip + destination.Length + CryptoSectorMask) & ~CryptoSectorMask);
                var span = buffer.AsMemory(0, chunk);
                int got = await TIo.ReadAsync(DataStorage, h, span, ct).ConfigureAwait(false);
                if (got < chunk) span.Span[Math.Max(got, 0)..].Clear();
                crypto.Decrypt(span.Span, h, g);
                int take = Math.Min(chunk - skip, destination.Length);
                span.Span.Slice(skip, take).CopyTo(destination.Span);
                destination = destination[take..];
                h += chunk;
                g += chunk;
                skip = 0;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Writes guest data to its host location, encrypted when the image is.</summary>
    private ValueTask WriteDataAsync<TIo>(long host, long guest, ReadOnlyMemory<byte> data, CancellationToken ct)
        where TIo : IIoAdapter =>
        _crypto is null ? TIo.WriteAsync(DataStorage, host, data, ct) : WriteEncryptedAsync<TIo>(host, guest, data, ct);

    private async ValueTask WriteEncryptedAsync<TIo>(long host, long guest, ReadOnlyMemory<byte> data, CancellationToken ct)
        where TIo : IIoAdapter
    {
        const int chunkMax = 1 << 20;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Min(chunkMax, data.Length));
        try
        {
            while (!data.IsEmpty)
            {
                int n = Math.Min(chunkMax, data.Length);
                var chunk = buffer.AsMemory(0, n);
                data.Span[..n].CopyTo(chunk.Span);
                _crypto!.Encrypt(chunk.Span, host, guest);
                await TIo.WriteAsync(DataStorage, host, chunk, ct).ConfigureAwait(false);
                data = data[n..];
                host += n;
                guest += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Encrypts a buffer of ours in place before it is written at <paramref name="host"/> (no-op for plain images).</summary>
    private void EncryptOwnedBuffer(Span<byte> data, long host, long guest) => _crypto?.Encrypt(data, host, guest);

    /// <summary>
    /// Guest writes to an unlocked image: whole sectors go straight to the planner; a partial sector at
    /// either edge is read (decrypted), merged and written back whole. Overlapping writes are serialised.
    /// </summary>
    private async ValueTask WriteEncryptedImageAsync<TIo>(long offset, ReadOnlyMemory<byte> source, CancellationToken ct)
        where TIo : IIoAdapter
    {
        long start = offset & ~CryptoSectorMask;
        long end = (offset + source.Length + CryptoSectorMask) & ~CryptoSectorMask;
        SectorRangeLock.Holder holder;
        while (!_cryptoWriteRanges!.TryAcquire(start, end, out holder, out var wait))
            await TIo.WaitAsync(wait!, ct).ConfigureAwait(false);
        byte[]? sector = null;
        try
        {
            long pos = offset;
            while (!source.IsEmpty)
            {
                int inSector = (int)(pos & CryptoSectorMask);
                if (inSector == 0 && source.Length >= CryptoSector)
                {
                    int whole = source.Length & ~(int)CryptoSectorMask;
                    await WritePlannedAsync<TIo>(pos, source[..whole], ct).ConfigureAwait(false);
                    pos += whole;
                    source = source[whole..];
                    continue;
                }
                sector ??= ArrayPool<byte>.Shared.Rent(CryptoSector);
                var block = sector.AsMemory(0, CryptoSector);
                int take = Math.Min(CryptoSector - inSector, source.Length);
                long sectorStart = pos - inSector;
                await ReadCoreAsync<TIo>(sectorStart, block, ct).ConfigureAwait(false);
                source.Span[..take].CopyTo(block.Span[inSector..]);
                await WritePlannedAsync<TIo>(sectorStart, block, ct).ConfigureAwait(false);
                pos += take;
                source = source[take..];
            }
        }
        finally
        {
            if (sector is not null) ArrayPool<byte>.Shared.Return(sector);
            _cryptoWriteRanges.Release(holder);
        }
    }

    /// <summary>
    /// Makes this new, empty, unencrypted image (checked by the caller with <see cref="ThrowIfNotEncryptable"/>) LUKS-encrypted: allocates clusters for
    /// <paramref name="region"/> (zero-filled to whole clusters), writes it, persists the refcounts, then
    /// rewrites the header cluster with crypt_method 2 and the full disk encryption header extension
    /// (placed after the backing format and data file extensions, as QEMU orders them).
    /// </summary>
    /// <exception cref="InvalidOperationException">The image is read-only, already encrypted, or holds data or snapshots.</exception>
    internal void InstallLuksRegion(ReadOnlySpan<byte> region)
    {
        ThrowIfNotWritable();
        if (_encryption != CryptMethod.None) throw new InvalidOperationException("The image is already encrypted.");
        // Data was ruled out by ThrowIfNotEncryptable; preallocated clusters may hold encrypted zeros by now.
        if (_snapshots.Count > 0)
            throw new InvalidOperationException("Only a new image without data or snapshots can be given LUKS encryption.");
        int clusters = (int)((region.Length + (long)_clusterSize - 1) >> _clusterBits);
        byte[] header = new byte[_clusterSize];
        lock (_meta)
        {
            long host = AllocateClusters(clusters);
            AddMetadataRange(host, region.Length);
            WriteZeroClusters(host, clusters);
            _file.Write(host, region);
            FlushMetadataLocked();

            BuildHeaderWithCryptoExtension(header, host, region.Length);
            _file.Write(0, header);
            _file.Flush();
            header.CopyTo(_headerBuffer, 0);
        }
    }

    private void BuildHeaderWithCryptoExtension(Span<byte> header, long regionOffset, long regionLength)
    {
        var parsed = Qcow2Header.Parse(_headerBuffer);
        _headerBuffer.AsSpan(0, _headerLength).CopyTo(header);
        BinaryPrimitives.WriteUInt32BigEndian(header[CryptMethodOffset..], Qcow2Constants.CryptLuks);
        Span<byte> pointer = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(pointer, (ulong)regionOffset);
        BinaryPrimitives.WriteUInt64BigEndian(pointer[8..], (ulong)regionLength);

        ReadOnlySpan<byte> name = parsed.GetBackingFileName(_headerBuffer);
        int pos = _headerLength;
        int needed = pos + 8 + 16 + 8 + name.Length;
        var en = new HeaderExtensionEnumerator(_headerBuffer.AsSpan(0, parsed.ExtensionsEnd(_clusterSize)), _headerLength);
        foreach (var ext in en) needed += 8 + ((ext.Data.Length + 7) & ~7);
        if (needed > header.Length)
            throw new InvalidOperationException("The encryption header extension does not fit in the header cluster.");
        bool inserted = false;
        foreach (var ext in new HeaderExtensionEnumerator(_headerBuffer.AsSpan(0, parsed.ExtensionsEnd(_clusterSize)), _headerLength))
        {
            if (!inserted && ext.Type is not (Qcow2Constants.ExtensionBackingFormat or Qcow2Constants.ExtensionExternalDataFile))
            {
                pos += HeaderExtensionEnumerator.WriteExtension(header[pos..], Qcow2Constants.ExtensionFullDiskEncryption, pointer);
                inserted = true;
            }
            pos += HeaderExtensionEnumerator.WriteExtension(header[pos..], ext.Type, ext.Data);
        }
        if (!inserted) pos += HeaderExtensionEnumerator.WriteExtension(header[pos..], Qcow2Constants.ExtensionFullDiskEncryption, pointer);
        pos += HeaderExtensionEnumerator.WriteEnd(header[pos..]);
        if (!name.IsEmpty)
        {
            name.CopyTo(header[pos..]);
            BinaryPrimitives.WriteUInt64BigEndian(header[BackingFileOffsetOffset..], (ulong)pos);
        }
    }

    private const int BackingFileOffsetOffset = 8;
    private const int CryptMethodOffset = 32;
}
