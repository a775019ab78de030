namespace Qcow2.Volume.Crypto;

/// <summary>
/// The secret given to open an encrypted image does not unlock it: no active LUKS key slot accepts
/// it (QEMU says "Invalid password, cannot unlock any keyslot"). The image itself is fine; nothing was
/// written. Legacy AES images (crypt_method 1) have no key check at all, so a wrong secret there
/// cannot be detected and simply reads garbage, as with QEMU.
/// </summary>
public sealed class Qcow2KeyException : Exception
{
    /// <summary>Creates the exception.</summary>
    public Qcow2KeyException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception for a backing file whose key slots refused its secret.</summary>
    /// <param name="message">The message.</param>
    /// <param name="backingFile">The backing file's path.</param>
    /// <param name="inner">The refusal from the backing file's open.</param>
    public Qcow2KeyException(string message, string backingFile, Exception? inner)
        : base(message, inner)
    {
        BackingFile = backingFile;
    }

    /// <summary>The path of the backing file that refused its secret; null when the image opened was the one refused.</summary>
    public string? BackingFile { get; }
}
