namespace Qcow2.Volume.Crypto;

/// <summary>
/// How to LUKS-encrypt a new qcow2 image, named as qemu-img's <c>encrypt.*</c> create options
/// (encrypt.format=luks). The defaults are QEMU's: aes-256 in xts mode, plain64 IVs, sha256, 2000 ms.
/// </summary>
public sealed record LuksCreateOptions
{
    /// <summary>The secret (encrypt.key-secret): the bytes of QEMU's secret object, e.g. the UTF-8 passphrase.</summary>
    public required byte[] Secret { get; init; }

    /// <summary>encrypt.cipher-alg: "aes-128", "aes-192" or "aes-256".</summary>
    public string CipherAlg { get; init; } = "aes-256";

    /// <summary>encrypt.cipher-mode: "xts" or "cbc".</summary>
    public string CipherMode { get; init; } = "xts";

    /// <summary>encrypt.ivgen-alg: "plain", "plain64" or "essiv".</summary>
    public string IvgenAlg { get; init; } = "plain64";

    /// <summary>encrypt.ivgen-hash-alg: the ESSIV hash (used with essiv only): "sha256" (default), "sha1", ...</summary>
    public string IvgenHashAlg { get; init; } = "sha256";

    /// <summary>encrypt.hash-alg: the PBKDF2 and anti-forensic hash: "sha1", "sha256", "sha384" or "sha512".</summary>
    public string HashAlg { get; init; } = "sha256";

    /// <summary>encrypt.iter-time: milliseconds of PBKDF2 the key slot should cost (measured on this machine).</summary>
    public int IterTimeMs { get; init; } = 2000;

    /// <summary>
    /// A fixed PBKDF2 iteration count for the key slot instead of measuring <see cref="IterTimeMs"/>
    /// (the master key digest then gets an eighth of it, at least 1000). Null measures.
    /// </summary>
    public uint? Iterations { get; init; }

    /// <summary>
    /// Bytes the LUKS region (header and the eight key slots, i.e. QEMU's payload offset) takes in a new
    /// image with these options: a 4 KiB header, then eight slots of 4000 anti-forensic stripes of the
    /// master key, each rounded up to 4 KiB. Depends only on <see cref="CipherAlg"/> and
    /// <see cref="CipherMode"/>, and knows every cipher qemu-img accepts (des, 3des, cast5, serpent,
    /// twofish too), so that measure can size what creation would refuse here.
    /// </summary>
    /// <exception cref="ArgumentException">A cipher or mode qemu-img does not know.</exception>
    public long GetRegionBytes()
    {
        int algBytes = CipherAlg switch
        {
            "aes-128" or "cast5-128" or "serpent-128" or "twofish-128" => 16,
            "aes-192" or "serpent-192" or "twofish-192" or "3des" => 24,
            "aes-256" or "serpent-256" or "twofish-256" => 32,
            "des" => 8,
            _ => throw new ArgumentException($"Unknown cipher '{CipherAlg}'.", nameof(CipherAlg)),
        };
        if (CipherMode is not ("ecb" or "cbc" or "xts" or "ctr"))
            throw new ArgumentException($"Unknown cipher mode '{CipherMode}'.", nameof(CipherMode));
        // XTS keys are two keys of the cipher.
        return LuksFormatter.RegionBytes(algBytes * (CipherMode == "xts" ? 2 : 1));
    }

    /// <summary>
    /// What the LUKS region adds to both sizes <c>qemu-img measure</c> reports for a qcow2 image with
    /// <paramref name="clusterSize"/>: <see cref="GetRegionBytes"/> in whole clusters.
    /// </summary>
    /// <exception cref="ArgumentException">A cipher or mode qemu-img does not know, or a cluster size that is not a power of two from 512 to 2 MiB.</exception>
    public long GetMeasureBytes(int clusterSize)
    {
        if (clusterSize < 512 || clusterSize > 1 << 21 || (clusterSize & (clusterSize - 1)) != 0)
            throw new ArgumentException("The cluster size must be a power of two from 512 to 2 MiB.", nameof(clusterSize));
        long region = GetRegionBytes();
        return (region + clusterSize - 1) / clusterSize * clusterSize;
    }
}
