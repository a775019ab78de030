using Qcow2.Tests.Shared;

namespace Qcow2.Volume.Tests.Crypto;

/// <summary>
/// Encrypted images made once per test run by qemu-img (a LUKS creation costs seconds of PBKDF2
/// calibration, whatever the iter-time) and copied for each test. Secret "pw". Shared by the crypto
/// test classes; the directory is removed when the test process exits.
/// </summary>
public sealed class EncryptedImageTemplates
{
    public const string Secret = "pw";

    private static readonly Lazy<TempDir> Dir = new(() =>
    {
        var dir = new TempDir();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => dir.Dispose();
        return dir;
    });

    private static readonly Dictionary<string, Lazy<string>> Made = [];

    /// <summary>
    /// A fresh 4 MiB copy in <paramref name="directory"/>: <paramref name="kind"/> "aes" for legacy AES, otherwise
    /// extra LUKS create options ("" for qemu's default aes-256-xts-plain64).
    /// </summary>
    public string Copy(string directory, string kind, string name = "e.qcow2")
    {
        Lazy<string> template;
        lock (Made)
        {
            if (!Made.TryGetValue(kind, out template!))
            {
                string path = Dir.Value.File($"t{Made.Count}.qcow2");
                template = new Lazy<string>(() => Create(path, kind), LazyThreadSafetyMode.ExecutionAndPublication);
                Made.Add(kind, template);
            }
        }
        string image = Path.Combine(directory, name);
        File.Copy(template.Value, image);
        return image;
    }

    private static string Create(string path, string kind)
    {
        if (kind == "aes")
            QemuTools.Img("create", "-q", "-f", "qcow2", "--object", $"secret,id=s0,data={Secret}", "-o", "encrypt.format=aes,encrypt.key-secret=s0", path, "4M");
        else
            QemuTools.CreateLuksImage(path, "4M", kind);
        return path;
    }
}
