using System.Globalization;
using System.Text;
using Qcow2.Cli.Framework;
using Qcow2.Volume.Crypto;

namespace Qcow2.Cli.Parsing;

/// <summary>
/// qemu-img's encryption create options for qcow2: <c>encrypt.format=luks|aes</c> (or the
/// deprecated <c>encryption=on</c>, which means aes), <c>encrypt.key-secret=ID</c> naming a
/// <c>--object secret</c>, and for LUKS <c>encrypt.cipher-alg</c>, <c>encrypt.cipher-mode</c>,
/// <c>encrypt.ivgen-alg</c>, <c>encrypt.ivgen-hash-alg</c>, <c>encrypt.hash-alg</c>,
/// <c>encrypt.iter-time</c>. Values are checked against the sets qemu-img 7.2 accepts, with its
/// messages; the library refuses the accepted values it does not implement.
/// </summary>
internal sealed record EncryptionSettings
{
    /// <summary>encryption=on|off (the deprecated alias of encrypt.format=aes).</summary>
    public bool? Legacy { get; init; }

    public string? Format { get; init; }
    public string? KeySecret { get; init; }
    public string? CipherAlg { get; init; }
    public string? CipherMode { get; init; }
    public string? IvgenAlg { get; init; }
    public string? IvgenHashAlg { get; init; }
    public string? HashAlg { get; init; }
    public long? IterTime { get; init; }

    /// <summary>An iter-time that is not a number (reported by <see cref="CheckSyntax"/>, as qemu-img reports it: after the file name).</summary>
    public string? BadIterTime { get; init; }

    /// <summary>Whether any encryption option was given at all.</summary>
    public bool Any => BadIterTime is not null || Legacy is not null || Format is not null || KeySecret is not null || CipherAlg is not null ||
        CipherMode is not null || IvgenAlg is not null || IvgenHashAlg is not null || HashAlg is not null || IterTime is not null;

    private static readonly string[] CipherAlgs =
    {
        "aes-128", "aes-192", "aes-256", "des", "3des", "cast5-128", "serpent-128", "serpent-192", "serpent-256",
        "twofish-128", "twofish-192", "twofish-256",
    };

    private static readonly string[] CipherModes = { "ecb", "cbc", "xts", "ctr" };
    private static readonly string[] IvgenAlgs = { "plain", "plain64", "essiv" };
    private static readonly string[] HashAlgs = { "md5", "sha1", "sha224", "sha256", "sha384", "sha512", "ripemd160" };

    /// <summary>Sets one <c>encrypt.*</c> option (syntax only: a number for iter-time).</summary>
    /// <exception cref="UsageException">An unknown encrypt.* key, or iter-time not a number.</exception>
    public EncryptionSettings With(string key, string value) => key switch
    {
        "encrypt.format" => this with { Format = value },
        "encrypt.key-secret" => this with { KeySecret = value },
        "encrypt.cipher-alg" => this with { CipherAlg = value },
        "encrypt.cipher-mode" => this with { CipherMode = value },
        "encrypt.ivgen-alg" => this with { IvgenAlg = value },
        "encrypt.ivgen-hash-alg" => this with { IvgenHashAlg = value },
        "encrypt.hash-alg" => this with { HashAlg = value },
        "encrypt.iter-time" => TryParseQemuNumber(value, out long ms)
            ? this with { IterTime = ms, BadIterTime = null }
            : this with { IterTime = null, BadIterTime = value },
        _ => throw new UsageException($"Invalid parameter '{key}'"),
    };

    /// <summary>
    /// A QEMU number option as strtoull reads it with base 0: decimal, 0x hex or 0 octal, an
    /// optional sign; false when anything is left over. Values beyond a long (or negative ones,
    /// which QEMU wraps to huge numbers) come back as -1 so that they are refused later.
    /// </summary>
    internal static bool TryParseQemuNumber(string text, out long value)
    {
        value = 0;
        ReadOnlySpan<char> s = text.AsSpan().TrimStart();
        bool negative = false;
        if (s.Length > 0 && s[0] is '+' or '-') { negative = s[0] == '-'; s = s[1..]; }
        int radix = 10;
        if (s.Length > 1 && s[0] == '0' && s[1] is 'x' or 'X') { radix = 16; s = s[2..]; }
        else if (s.Length > 1 && s[0] == '0') { radix = 8; s = s[1..]; }
        if (s.IsEmpty) return false;
        ulong v = 0;
        bool overflow = false;
        foreach (char c in s)
        {
            int d = c is >= '0' and <= '9' ? c - '0' : c is >= 'a' and <= 'f' ? c - 'a' + 10 : c is >= 'A' and <= 'F' ? c - 'A' + 10 : 99;
            if (d >= radix) return false;
            ulong next = unchecked(v * (ulong)radix + (ulong)d);
            if (next / (ulong)radix != v) overflow = true;
            v = next;
        }
        value = overflow || negative && v != 0 || v > long.MaxValue ? -1 : (long)v;
        return true;
    }

    /// <summary>Fails for an option whose value does not parse (qemu-img checks these before it prints anything).</summary>
    /// <exception cref="CommandFailedException">iter-time is not a number.</exception>
    public void CheckSyntax()
    {
        if (BadIterTime is not null) throw new CommandFailedException("Parameter 'encrypt.iter-time' expects a number");
    }

    /// <summary>The options as qemu-img's "Formatting" line lists them (its option order, before cluster_size).</summary>
    public void AppendFormatting(StringBuilder sb)
    {
        if (Legacy is { } l) sb.Append(" encryption=").Append(l ? "on" : "off");
        void Add(string name, string? v)
        {
            if (v is not null) sb.Append(" encrypt.").Append(name).Append('=').Append(v);
        }
        Add("format", Format);
        Add("key-secret", KeySecret);
        Add("cipher-alg", CipherAlg);
        Add("cipher-mode", CipherMode);
        Add("ivgen-alg", IvgenAlg);
        Add("ivgen-hash-alg", IvgenHashAlg);
        Add("hash-alg", HashAlg);
        Add("iter-time", IterTime?.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// Checks the options as qemu-img does when it creates (or measures) the image and looks up
    /// the secret: null when the image is not encrypted, else what to encrypt it with.
    /// </summary>
    /// <param name="secrets">The <c>--object</c> secrets.</param>
    /// <param name="aesNeedsSecret">False for measure: qemu-img measures a legacy AES image without looking at its secret.</param>
    /// <exception cref="CommandFailedException">qemu-img's message (without the file name in front).</exception>
    public EncryptionPlan? Resolve(SecretStore secrets, bool aesNeedsSecret = true)
    {
        CheckSyntax();
        if (Legacy is not null && Format is not null)
            throw new CommandFailedException("'encrypt.format' and its alias 'encryption' can't be used at the same time");
        string? format = Format ?? (Legacy == true ? "aes" : null);
        if (format is null)
        {
            if ((this with { Legacy = null }).Any) throw new CommandFailedException("Parameter 'encrypt.format' is missing");
            return null;
        }
        if (format is not ("aes" or "luks")) throw new CommandFailedException($"Parameter 'format' does not accept value '{format}'");
        if (format == "aes")
        {
            foreach (var (name, v) in new[]
            {
                ("cipher-alg", CipherAlg), ("cipher-mode", CipherMode), ("ivgen-alg", IvgenAlg),
                ("ivgen-hash-alg", IvgenHashAlg), ("hash-alg", HashAlg), ("iter-time", IterTime?.ToString(CultureInfo.InvariantCulture)),
            })
            {
                if (v is not null) throw new CommandFailedException($"Parameter 'encrypt.{name}' is unexpected");
            }
        }
        else
        {
            Check("cipher-alg", CipherAlg, CipherAlgs);
            Check("cipher-mode", CipherMode, CipherModes);
            Check("ivgen-alg", IvgenAlg, IvgenAlgs);
            Check("ivgen-hash-alg", IvgenHashAlg, HashAlgs);
            Check("hash-alg", HashAlg, HashAlgs);
        }
        if (format == "aes" && !aesNeedsSecret) return new EncryptionPlan(format, Array.Empty<byte>(), null);
        if (KeySecret is null) throw new CommandFailedException(ImageOpener.SecretRequiredMessage);
        byte[] secret = secrets.Get(KeySecret);
        if (format == "aes") return new EncryptionPlan(format, secret, null);

        var luks = new LuksCreateOptions { Secret = secret };
        if (CipherAlg is not null) luks = luks with { CipherAlg = CipherAlg };
        if (CipherMode is not null) luks = luks with { CipherMode = CipherMode };
        if (IvgenAlg is not null) luks = luks with { IvgenAlg = IvgenAlg };
        if (IvgenHashAlg is not null) luks = luks with { IvgenHashAlg = IvgenHashAlg };
        if (HashAlg is not null) luks = luks with { HashAlg = HashAlg };
        if (IterTime is { } ms)
        {
            if (ms < 0 || ms > int.MaxValue)
                throw new CommandFailedException($"encrypt.iter-time must be from 0 to {int.MaxValue} milliseconds");
            // QEMU's slot iterations never go below 1000, which is what 0 ms gives.
            luks = ms == 0 ? luks with { Iterations = 1000 } : luks with { IterTimeMs = (int)ms };
        }
        return new EncryptionPlan(format, secret, luks);
    }

    private static void Check(string name, string? value, string[] allowed)
    {
        if (value is not null && Array.IndexOf(allowed, value) < 0)
            throw new CommandFailedException($"Parameter '{name}' does not accept value '{value}'");
    }
}

/// <summary>How a new image is to be encrypted: "luks" (with its options) or legacy "aes".</summary>
internal sealed record EncryptionPlan(string Format, byte[] Secret, LuksCreateOptions? Luks);
