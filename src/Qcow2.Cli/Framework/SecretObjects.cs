using System.Text;
using Qcow2.Cli.Parsing;

namespace Qcow2.Cli.Framework;

/// <summary>
/// The secrets named by qemu-img's <c>--object secret,id=ID,data=STRING</c> or
/// <c>--object secret,id=ID,file=PATH</c> (optionally <c>format=raw|base64</c>), looked up by id
/// when an image option or a create option names one (<c>encrypt.key-secret=ID</c>). Parsed and
/// loaded up front, as qemu-img creates its objects while it reads the command line, with
/// qemu-img 7.2's messages for bad objects. Secrets encrypted with another secret
/// (<c>keyid</c>, <c>iv</c>) are refused.
/// </summary>
internal sealed class SecretStore
{
    private readonly Dictionary<string, byte[]> _secrets = new(StringComparer.Ordinal);

    /// <summary>No secrets at all.</summary>
    public static SecretStore Empty { get; } = new();

    /// <summary>qemu-img's list of creatable object types, cut to the one this tool has.</summary>
    public const string TypesHelp = "List of user creatable objects:\n  secret\n";

    /// <summary>qemu-img's "--object secret,help".</summary>
    public const string SecretHelp = "secret options:\n  data=<string>\n  file=<string>\n  format=<QCryptoSecretFormat>\n  iv=<string>\n  keyid=<string>\n";

    /// <summary>
    /// Parses and loads every <c>--object</c> argument. Returns null after printing the help text
    /// when one of them asked for it (<c>help</c>, <c>secret,help</c>); the command then exits 0.
    /// </summary>
    /// <exception cref="CommandFailedException">A malformed object, an unreadable file, bad base64, a duplicate id.</exception>
    public static SecretStore? Load(IEnumerable<string> objectArguments, TextWriter output)
    {
        var store = new SecretStore();
        foreach (string text in objectArguments)
        {
            var parsed = ParseObject(text);
            if (parsed is null)
            {
                output.Write(text.StartsWith("secret", StringComparison.Ordinal) ? SecretHelp : TypesHelp);
                return null;
            }
            var (id, secret) = parsed.Value;
            if (!store._secrets.TryAdd(id, secret))
                throw new CommandFailedException($"attempt to add duplicate property '{id}' to object (type 'container')");
        }
        return store;
    }

    /// <summary>The secret with <paramref name="id"/>.</summary>
    /// <exception cref="CommandFailedException">No such secret (qemu-img's "No secret with id 'X'").</exception>
    public byte[] Get(string id) =>
        _secrets.TryGetValue(id, out var s) ? s : throw new CommandFailedException(NoSecretMessage(id));

    public bool TryGet(string id, out byte[] secret) => _secrets.TryGetValue(id, out secret!);

    public static string NoSecretMessage(string id) => $"No secret with id '{id}'";

    /// <summary>One object: (id, secret bytes), or null when it asked for help.</summary>
    internal static (string Id, byte[] Secret)? ParseObject(string text)
    {
        // qemu's keyval syntax: the first item may omit "qom-type=", later ones need '='; ",," is a comma.
        var list = OptionList.Parse(text);
        if (list.HelpRequested) return null;
        string? type = null;
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < list.Items.Count; i++)
        {
            var (key, value) = list.Items[i];
            if (value is null)
            {
                if (i == 0) { type = key; continue; }
                throw new CommandFailedException($"Expected '=' after parameter '{key}'");
            }
            if (key == "qom-type") type = value;
            else values[key] = value; // later values win, as in qemu
        }
        if (type is null) throw new CommandFailedException("Parameter 'qom-type' is missing");
        if (type != "secret")
        {
            throw new CommandFailedException(KnownQemuTypes.Contains(type)
                ? $"Object type '{type}' is not supported by this tool (only 'secret' is)"
                : $"Parameter 'qom-type' does not accept value '{type}'");
        }
        if (!values.TryGetValue("id", out var id)) throw new CommandFailedException("Parameter 'id' is missing");
        if (!IsIdentifier(id))
            throw new CommandFailedException("Parameter 'id' expects an identifier", hint: "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.");
        foreach (var key in values.Keys)
            if (key is not ("id" or "data" or "file" or "format" or "keyid" or "iv"))
                throw new CommandFailedException($"Parameter '{key}' is unexpected");
        bool base64 = false;
        if (values.TryGetValue("format", out var format))
        {
            base64 = format switch
            {
                "raw" => false,
                "base64" => true,
                _ => throw new CommandFailedException($"Parameter 'format' does not accept value '{format}'"),
            };
        }
        if (values.ContainsKey("keyid") || values.ContainsKey("iv"))
            throw new CommandFailedException($"Secret '{id}': secrets encrypted with another secret (keyid, iv) are not supported; give it in clear with data= or file=");
        bool hasData = values.TryGetValue("data", out var data);
        bool hasFile = values.TryGetValue("file", out var file);
        if (hasData && hasFile) throw new CommandFailedException("'file' and 'data' are mutually exclusive");
        if (!hasData && !hasFile) throw new CommandFailedException("Either 'file' or 'data' must be provided");
        byte[] input = hasData ? Encoding.UTF8.GetBytes(data!) : ReadSecretFile(file!);
        return (id, base64 ? DecodeBase64(input) : input);
    }

    /// <summary>Other object types qemu-img 7.2 knows (so that they are not called unknown).</summary>
    private static readonly HashSet<string> KnownQemuTypes = new(StringComparer.Ordinal)
    {
        "authz-list", "authz-list-file", "authz-simple", "main-loop", "pr-manager-helper", "secret_keyring",
        "thread-context", "throttle-group", "tls-cipher-suites", "tls-creds-anon", "tls-creds-psk", "tls-creds-x509",
    };

    /// <summary>QEMU's identifier rule: letters, digits, '-', '.', '_', starting with a letter.</summary>
    internal static bool IsIdentifier(string s)
    {
        if (s.Length == 0 || !char.IsAsciiLetter(s[0])) return false;
        foreach (char c in s)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_')) return false;
        return true;
    }

    /// <summary>The largest secret file read (QEMU has no limit; this keeps /dev/zero from eating the memory).</summary>
    internal const int MaxSecretFileBytes = 16 << 20;

    /// <summary>The file's bytes as they are (a trailing newline is part of the secret, as in QEMU).</summary>
    private static byte[] ReadSecretFile(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var buffer = new MemoryStream();
            var chunk = new byte[81920];
            int n;
            while ((n = stream.Read(chunk)) > 0)
            {
                if (buffer.Length + n > MaxSecretFileBytes)
                    throw new CommandFailedException($"Unable to read {path}: the secret file is larger than {MaxSecretFileBytes >> 20} MiB");
                buffer.Write(chunk, 0, n);
            }
            return buffer.ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            string reason = e switch
            {
                FileNotFoundException or DirectoryNotFoundException => "No such file or directory",
                UnauthorizedAccessException => Directory.Exists(path) ? "Is a directory" : "Permission denied",
                _ => e.Message,
            };
            // GLib's g_file_get_contents wording, which qemu-img passes on.
            throw new CommandFailedException($"Unable to read {path}: Failed to open file \u201c{path}\u201d: {reason}");
        }
    }

    /// <summary>
    /// Base64 as QEMU decodes a secret: only the base64 alphabet and '=' are allowed, then GLib's
    /// lenient decoder runs (missing padding is fine; a trailing group of fewer than four
    /// characters is dropped; '=' counts as a zero digit and suppresses output bytes).
    /// </summary>
    /// <exception cref="CommandFailedException">A NUL or a character outside the alphabet.</exception>
    internal static byte[] DecodeBase64(ReadOnlySpan<byte> input)
    {
        if (input.IndexOf((byte)0) >= 0) throw new CommandFailedException("Base64 data contains embedded NUL characters");
        foreach (byte c in input)
            if (Rank(c) < 0) throw new CommandFailedException("Base64 data contains invalid characters");
        var output = new List<byte>(input.Length / 4 * 3);
        uint v = 0;
        int count = 0;
        byte last0 = 0, last1 = 0;
        foreach (byte c in input)
        {
            last1 = last0;
            last0 = c;
            v = (v << 6) | (uint)Rank(c);
            if (++count < 4) continue;
            output.Add((byte)(v >> 16));
            if (last1 != '=') output.Add((byte)(v >> 8));
            if (last0 != '=') output.Add((byte)v);
            count = 0;
            v = 0;
        }
        return output.ToArray();
    }

    private static int Rank(byte c) => c switch
    {
        >= (byte)'A' and <= (byte)'Z' => c - 'A',
        >= (byte)'a' and <= (byte)'z' => c - 'a' + 26,
        >= (byte)'0' and <= (byte)'9' => c - '0' + 52,
        (byte)'+' => 62,
        (byte)'/' => 63,
        (byte)'=' => 0,
        _ => -1,
    };
}
