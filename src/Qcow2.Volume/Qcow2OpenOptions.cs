using Qcow2.Volume.Chain;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume;

/// <summary>How to open a qcow2 image.</summary>
public sealed record Qcow2OpenOptions
{
    /// <summary>The defaults: read-write, external files denied, QEMU-like cache sizes.</summary>
    public static Qcow2OpenOptions Default { get; } = new();

    /// <summary>Open read-only (backing files are always opened read-only).</summary>
    public bool ReadOnly { get; init; }

    /// <summary>Decides whether backing and data files named inside the image may be opened. <see cref="ExternalFilePolicy.Deny"/> by default.</summary>
    public ExternalFilePolicy ExternalFilePolicy { get; init; } = ExternalFilePolicy.Deny;

    /// <summary>Capacity of the L2 slice cache in bytes; 0 chooses QEMU's default (enough to map the whole disk, at most 32 MiB).</summary>
    public long L2CacheSize { get; init; }

    /// <summary>Size of one L2 cache entry in bytes (a power of two, 512 to the cluster size); 0 chooses the cluster size, as QEMU does.</summary>
    public int L2CacheEntrySize { get; init; }

    /// <summary>Capacity of the refcount block cache in bytes; 0 chooses four clusters.</summary>
    public long RefcountCacheSize { get; init; }

    /// <summary>The longest backing chain accepted below this image.</summary>
    public int MaxChainDepth { get; init; } = Qcow2.Spans.Qcow2Limits.MaxChainDepth;

    /// <summary>
    /// The secret of an encrypted image (the bytes of QEMU's secret object, e.g. the UTF-8 passphrase),
    /// or null. With it, LUKS (crypt_method 2) and legacy AES (crypt_method 1) images open read-write and
    /// their data is decrypted and encrypted on the fly; a LUKS secret that opens no key slot throws
    /// <see cref="Crypto.Qcow2KeyException"/> (legacy AES cannot tell a wrong secret). Backing files are
    /// opened with the same secret, unless <see cref="BackingSecretResolver"/> is set. Ignored for unencrypted images. Without it an encrypted image opens
    /// read-only, for its metadata only.
    /// </summary>
    public byte[]? EncryptionSecret { get; init; }

    /// <summary>
    /// The most PBKDF2 work unlocking a LUKS image may spend, in hash-block iterations (a key slot's
    /// iterations times the hash blocks of its key, plus its master key digest check, summed over the
    /// slots tried until one accepts the secret); 0 chooses the default, 2^26 (about 13 s on one slow
    /// core). The iteration counts come from the image: a hostile header can ask for 2^32 - 1 per slot.
    /// An image made by qemu-img with its default 2 s iter-time needs roughly 2·10^7 on the machine
    /// that made it. A slot over the limit is refused with <see cref="Qcow2.Spans.Qcow2UnsupportedImageException"/>
    /// before any hashing; a slot that would take the total over it is not tried.
    /// </summary>
    public long MaxKeyDerivationWork { get; init; }

    /// <summary>
    /// Whether the backing chain is opened (true by default). When false the image opens with no
    /// backing layer even if it names a backing file (which need not exist; <see cref="Qcow2ImageInfo.BackingFile"/>
    /// still reports the name): reads of ranges the image does not allocate return zeros instead of the
    /// backing file's data, block status reports them unallocated, and a partial-cluster write to such a
    /// range fills the rest of the new cluster with zeros. Meant for metadata-only work (info, check,
    /// header edits) like qemu-img's opens without the backing chain; open read-only unless that is wanted.
    /// </summary>
    public bool OpenBackingChain { get; init; } = true;

    /// <summary>Format of the backing file ("qcow2" or "raw"), overriding the image's backing format extension and probing.</summary>
    public string? BackingFormatOverride { get; init; }

    /// <summary>
    /// The storage of the image's external data file, used instead of opening the file the image names.
    /// The image reads and writes its data there (host offsets as in the L2 tables), flushes it, and does
    /// not dispose it: it stays the caller's. <see cref="Qcow2ImageInfo.DataFile"/> still reports the
    /// name written in the image. No <see cref="ExternalFilePolicy"/> check is made for it: the policy
    /// guards files named inside an untrusted image, and this storage is handed over by the caller.
    /// Applies to the opened image only, never to its backing files. Null (the default) opens the named
    /// file, subject to the policy.
    /// </summary>
    /// <remarks>
    /// <see cref="Qcow2Image.Open(IStorage, Qcow2OpenOptions?)"/> and <see cref="Qcow2Image.Open(string, Qcow2OpenOptions?)"/>
    /// throw <see cref="ArgumentException"/> when this is set and the image has no external data file, or
    /// when this storage cannot write and <see cref="ReadOnly"/> is false.
    /// </remarks>
    public IStorage? DataFileStorage { get; init; }

    /// <summary>
    /// The secret of each backing file, when they are not all unlocked with <see cref="EncryptionSecret"/>
    /// (null, the default, passes <see cref="EncryptionSecret"/> down the chain). Called once per backing
    /// file at every depth, after <see cref="ExternalFilePolicy"/> allowed it, with the same request
    /// (<see cref="ExternalFileRequest.ReferringImage"/> tells the depth apart); the result is that file's
    /// <see cref="EncryptionSecret"/>. Null opens an encrypted backing file without a secret: the chain
    /// opens, <see cref="Qcow2Image.IsLocked"/> is true for that layer, and reading data that comes from
    /// it throws <see cref="Qcow2.Spans.Qcow2UnsupportedImageException"/> (QEMU refuses such a chain at
    /// open). A secret that opens no key slot of a LUKS backing file fails the open with
    /// <see cref="Crypto.Qcow2KeyException"/> naming the file in <see cref="Crypto.Qcow2KeyException.BackingFile"/>.
    /// An exception thrown by the resolver propagates out of the open.
    /// </summary>
    public Func<ExternalFileRequest, byte[]?>? BackingSecretResolver { get; init; }
}
