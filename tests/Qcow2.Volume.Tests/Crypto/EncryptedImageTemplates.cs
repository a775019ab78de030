using Qcow2.Tests.Shared;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>
/// Encrypted images made once per test class by qemu-img (a LUKS creation costs seconds of PBKDF2
/// calibration) and copied for each test. Secret "pw".
/// </summary>
public sealed class EncryptedImageTemplates : IDisposable
{
    public const string Secret = "pw";

    private readonly TempDir _dir = new();
    private readonly Dictionary<string, string> _made = [];

    /// <summary>
    /// A fresh 4 MiB copy in <paramref name="directory"/>: <paramref name="kind"/> "aes" for legacy AES, otherwise
    /// extra LUKS create options ("" for qemu's default aes-256-xts-plain64).
    /// </summary>
    public string Copy(string directory, string kind, string name = "e.qcow2")
    {
        string template;
        lock (_made)
        {
            if (!_made.TryGetValue(kind, out template!))
            {
                template = _dir.File($"t{_made.Count}.qcow2");
                if (kind == "aes")
                    QemuTools.Img("create", "-q", "-f", "qcow2", "--object", $"secret,id=s0,data={Secret}", "-o", "encrypt.format=aes,encrypt.key-secret=s0", template, "4M");
                else
                    QemuTools.CreateLuksImage(template, "4M", kind);
                _made.Add(kind, template);
            }
        }
        string image = Path.Combine(directory, name);
        File.Copy(template, image);
        return image;
    }

    public void Dispose() => _dir.Dispose();
}
