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
}
