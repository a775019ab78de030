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
}
