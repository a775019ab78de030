using Qcow2.Volume.Chain;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume;

public sealed partial class Qcow2Image
{
    /// <summary>
    /// Creates an image file at <paramref name="path"/> (through <see cref="Qcow2Creator"/>) and opens
    /// it read-write. The backing and data files named in <paramref name="options"/> are the
    /// caller's choice, so they are opened without asking a policy. A relative data file name is
    /// created relative to the current directory, as qemu-img does (see <see cref="Qcow2CreateOptions.DataFile"/>).
    /// </summary>
    /// <exception cref="ArgumentException">Invalid options.</exception>
    /// <exception cref="IOException">The file cannot be written, or a different file of the data file's name lies beside the image.</exception>
    public static Qcow2Image Create(string path, Qcow2CreateOptions options)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(options);
        Qcow2Creator.Create(path, options);
        return Open(path, new Qcow2OpenOptions { ExternalFilePolicy = ExternalFilePolicy.AllowAll });
    }

    /// <summary>
    /// Writes a new image into <paramref name="storage"/> and opens it read-write. The storage stays
    /// the caller's. A data file named in the options is opened by its name (relative to the current directory).
    /// </summary>
    /// <exception cref="ArgumentException">Invalid options.</exception>
    public static Qcow2Image Create(IStorage storage, Qcow2CreateOptions options)
    {
        ArgumentNullException.ThrowIfNull(storage);
        ArgumentNullException.ThrowIfNull(options);
        Qcow2Creator.Create(storage, options);
        return Open(storage, new Qcow2OpenOptions { ExternalFilePolicy = ExternalFilePolicy.AllowAll });
    }
}
