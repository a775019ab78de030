using System.Text;
using Qcow2.Cli.Framework;
using Qcow2.Cli.Parsing;
using Qcow2.Tests.Shared;

namespace Qcow2.Cli.Tests;

/// <summary>
/// The --object secret parser and the --image-opts option-string parser. Expected values follow
/// qemu-img 7.2's behaviour observed on this machine (the process tests in EncryptionCliTests
/// compare the same cases against qemu-img itself).
/// </summary>
public class SecretObjectTests
{
    private static byte[] Load(string objectDef, string id = "s0")
    {
        var store = SecretStore.Load(new[] { objectDef }, TextWriter.Null);
        Assert.NotNull(store);
        return store!.Get(id);
    }

    private static string Fails(string objectDef) =>
        Assert.Throws<CommandFailedException>(() => SecretStore.Load(new[] { objectDef }, TextWriter.Null)).Message;

    [Fact]
    public void Load_Data_SecretIsTheUtf8Bytes()
    {
        Assert.Equal(Encoding.UTF8.GetBytes("pässword"), Load("secret,id=s0,data=pässword"));
    }

    [Fact]
    public void Load_DoubledCommaInData_IsOneComma()
    {
        Assert.Equal(Encoding.UTF8.GetBytes("a,b"), Load("secret,id=s0,data=a,,b"));
    }

    [Fact]
    public void Load_QomTypeSpelledOut_Accepted()
    {
        Assert.Equal(Encoding.UTF8.GetBytes("x"), Load("qom-type=secret,id=s0,data=x"));
    }

    [Fact]
    public void Load_LaterKeyWins_AsInQemu()
    {
        Assert.Equal(Encoding.UTF8.GetBytes("two"), Load("secret,id=s0,data=one,data=two"));
    }

    [Fact]
    public void Load_EmptyData_IsTheEmptySecret()
    {
        Assert.Empty(Load("secret,id=s0,data="));
    }

    [Fact]
    public void Load_File_KeepsTrailingNewline()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("pw"), Encoding.ASCII.GetBytes("pw\n"));
        Assert.Equal(Encoding.ASCII.GetBytes("pw\n"), Load($"secret,id=s0,file={dir.File("pw")}"));
    }

    [Fact]
    public void Load_FileBase64_Decoded()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("pw.b64"), Convert.ToBase64String(new byte[] { 0, 1, 2, 250 }));
        Assert.Equal(new byte[] { 0, 1, 2, 250 }, Load($"secret,id=s0,file={dir.File("pw.b64")},format=base64"));
    }

    [Fact]
    public void Load_EndlessFile_RefusedAtTheLimit()
    {
        Assert.Contains("larger than", Fails("secret,id=s0,file=/dev/zero"));
    }

    [Fact]
    public void Load_MissingFile_GLibWording()
    {
        Assert.Equal("Unable to read /nonexistent/pw: Failed to open file \u201c/nonexistent/pw\u201d: No such file or directory",
            Fails("secret,id=s0,file=/nonexistent/pw"));
    }

    [Theory]
    [InlineData("cHc=", "pw")]
    [InlineData("cHc", "")]          // an unfinished group of three is dropped (GLib)
    [InlineData("cHc=cA", "pw")]     // so are two characters after a complete group
    [InlineData("YWJjZA==", "abcd")]
    [InlineData("YWJjZA", "abc")]
    [InlineData("", "")]
    public void DecodeBase64_GLibLenientRules(string input, string expected)
    {
        // Cross-checked: each input, as an --object data= secret, unlocks (or not) a qemu-img
        // image whose password is the expected string (EncryptionCliTests.Secret_Encodings...).
        Assert.Equal(Encoding.ASCII.GetBytes(expected), SecretStore.DecodeBase64(Encoding.ASCII.GetBytes(input)));
    }

    [Fact]
    public void DecodeBase64_AgreesWithDotNetOnPaddedInput()
    {
        var rng = new Random(20261121);
        for (int n = 0; n < 64; n++)
        {
            var data = new byte[n];
            rng.NextBytes(data);
            Assert.Equal(data, SecretStore.DecodeBase64(Encoding.ASCII.GetBytes(Convert.ToBase64String(data))));
        }
    }

    [Theory]
    [InlineData("!!!!")]
    [InlineData("YW Jj")]
    [InlineData("YWJj\n")]
    [InlineData("YW-_")]
    public void DecodeBase64_ForeignCharacter_Refused(string input)
    {
        var e = Assert.Throws<CommandFailedException>(() => SecretStore.DecodeBase64(Encoding.ASCII.GetBytes(input)));
        Assert.Equal("Base64 data contains invalid characters", e.Message);
    }

    [Fact]
    public void DecodeBase64_EmbeddedNul_Refused()
    {
        var e = Assert.Throws<CommandFailedException>(() => SecretStore.DecodeBase64(new byte[] { (byte)'Y', 0, (byte)'W', (byte)'J' }));
        Assert.Equal("Base64 data contains embedded NUL characters", e.Message);
    }

    [Theory]
    [InlineData("secret,id=s0", "Either 'file' or 'data' must be provided")]
    [InlineData("secret,id=s0,data=a,file=b", "'file' and 'data' are mutually exclusive")]
    [InlineData("secret,data=a", "Parameter 'id' is missing")]
    [InlineData("secret,id=0s,data=a", "Parameter 'id' expects an identifier")]
    [InlineData("secret,id=s/0,data=a", "Parameter 'id' expects an identifier")]
    [InlineData("secret,id=s0,,data=a", "Parameter 'id' expects an identifier")]
    [InlineData("secret,id=s0,data=a,format=hex", "Parameter 'format' does not accept value 'hex'")]
    [InlineData("secret,id=s0,data=a,foo=1", "Parameter 'foo' is unexpected")]
    [InlineData("secret,id=s0,data", "Expected '=' after parameter 'data'")]
    [InlineData("id=s0,data=a", "Parameter 'qom-type' is missing")]
    [InlineData("nosuch,id=s0", "Parameter 'qom-type' does not accept value 'nosuch'")]
    [InlineData("secret,id=s0,data=!,format=base64", "Base64 data contains invalid characters")]
    public void Load_BadObject_QemuMessage(string objectDef, string message)
    {
        Assert.Equal(message, Fails(objectDef));
    }

    [Theory]
    [InlineData("secret,id=s0,data=YQ==,keyid=k0,iv=AAAA")]
    [InlineData("secret,id=s0,data=a,keyid=k0")]
    public void Load_EncryptedSecret_RefusedClearly(string objectDef)
    {
        Assert.Contains("keyid", Fails(objectDef));
    }

    [Fact]
    public void Load_OtherQemuObjectType_SaysUnsupported()
    {
        Assert.Contains("not supported", Fails("throttle-group,id=t0"));
    }

    [Fact]
    public void Load_DuplicateId_QemuMessage()
    {
        var e = Assert.Throws<CommandFailedException>(() =>
            SecretStore.Load(new[] { "secret,id=s0,data=a", "secret,id=s0,data=b" }, TextWriter.Null));
        Assert.Equal("attempt to add duplicate property 's0' to object (type 'container')", e.Message);
    }

    [Fact]
    public void Get_UnknownId_QemuMessage()
    {
        var store = SecretStore.Load(new[] { "secret,id=s0,data=a" }, TextWriter.Null)!;
        Assert.Equal("No secret with id 's1'", Assert.Throws<CommandFailedException>(() => store.Get("s1")).Message);
    }

    [Theory]
    [InlineData("help", SecretStore.TypesHelp)]
    [InlineData("secret,help", SecretStore.SecretHelp)]
    public void Load_Help_PrintsAndReturnsNull(string objectDef, string text)
    {
        var sw = new StringWriter();
        Assert.Null(SecretStore.Load(new[] { objectDef }, sw));
        Assert.Equal(text, sw.ToString());
    }
}

public class ImageOptionsTests
{
    private static string Fails(string text) => Assert.Throws<CommandFailedException>(() => ImageSpec.Parse(text)).Message;

    [Fact]
    public void Parse_FullString_AllFields()
    {
        var s = ImageSpec.Parse("driver=qcow2,file.driver=file,file.filename=/a/b.qcow2,encrypt.key-secret=sec0,encrypt.format=luks," +
            "l2-cache-size=1M,l2-cache-entry-size=4k,refcount-cache-size=256k,read-only=on,force-share=on");
        Assert.Equal("/a/b.qcow2", s.Path);
        Assert.Equal("qcow2", s.Format);
        Assert.Equal("sec0", s.KeySecretId);
        Assert.Equal("luks", s.EncryptFormat);
        Assert.Equal(1L << 20, s.L2CacheSize);
        Assert.Equal(4096L, s.L2CacheEntrySize);
        Assert.Equal(256L << 10, s.RefcountCacheSize);
        Assert.True(s.FromImageOpts);
    }

    [Fact]
    public void Parse_NoDriver_ProbesLater()
    {
        var s = ImageSpec.Parse("file.filename=x.img");
        Assert.Null(s.Format);
        Assert.Equal("x.img", s.Path);
    }

    [Theory]
    [InlineData("file.filename=a,,b.qcow2", "a,b.qcow2")]
    [InlineData("file.filename=a,,,,b", "a,,b")]
    [InlineData("file.filename=p.qcow2,", "p.qcow2")]
    [InlineData("file.filename=p.qcow2,,", "p.qcow2,")]
    [InlineData("file.filename=one,file.filename=two", "two")]
    public void Parse_CommaEscapingAndLastWins(string text, string path)
    {
        Assert.Equal(path, ImageSpec.Parse(text).Path);
    }

    [Theory]
    [InlineData("driver=qcow2,file.filename=x,foo=bar", "Block format 'qcow2' does not support the option 'foo'")]
    [InlineData("driver=raw,file.filename=x,l2-cache-size=1M", "Block format 'raw' does not support the option 'l2-cache-size'")]
    [InlineData("file.filename=x,help", "Block format 'qcow2' does not support the option 'help'")]
    [InlineData("driver=qcow2", "A block device must be specified for \"file\"")]
    [InlineData("file.filename=", "The 'file' block driver requires a file name")]
    [InlineData("x.qcow2", "Cannot find device='x.qcow2' nor node-name='x.qcow2'")]
    [InlineData("driver=foo,file.filename=x", "Unknown driver 'foo'")]
    [InlineData("file.filename=x,l2-cache-size=abc", "Parameter 'l2-cache-size' expects a non-negative number below 2^64")]
    public void Parse_BadInput_QemuMessage(string text, string reason)
    {
        Assert.Equal($"Could not open '{text}': {reason}", Fails(text));
    }

    [Fact]
    public void Parse_QemuOptionNotImplemented_SaysSo()
    {
        Assert.Contains("not supported by this tool", Fails("file.filename=x,lazy-refcounts=on"));
    }

    [Fact]
    public void DisplayName_KeySecret_QemuJsonFilename()
    {
        // As qemu-img info prints it for this option string (observed, QEMU's dictionary order).
        Assert.Equal("json:{\"encrypt.key-secret\": \"sec0\", \"driver\": \"qcow2\", \"file\": {\"driver\": \"file\", \"filename\": \"e.qcow2\"}}",
            ImageSpec.Parse("driver=qcow2,file.filename=e.qcow2,encrypt.key-secret=sec0").DisplayName);
        Assert.Equal("e.qcow2", ImageSpec.Parse("driver=qcow2,file.filename=e.qcow2,l2-cache-size=1M").DisplayName);
    }

    // docs/qcow2-cache.txt and QEMU's read_cache_sizes: with only cache-size, the L2 cache gets what maps the whole disk and the
    // refcount cache the rest, or, when that does not fit, the refcount cache its minimum (four
    // clusters) and L2 the rest; with one of the two given, the other gets the remainder.
    [Theory]
    [InlineData("cache-size=4M", 1L << 30, 65536, 131072L, 4194304L - 131072)]     // 1 GiB needs 128 KiB of L2
    [InlineData("cache-size=200k", 1L << 30, 65536, 131072L, 262144L)]          // both clamped to QEMU's minimums (2 L2 entries, 4 refcount blocks)
    [InlineData("l2-cache-size=1k", 1L << 30, 65536, 131072L, 0L)]              // refcount cache left at the default (0)
    [InlineData("cache-size=1M,l2-cache-size=256k", 1L << 30, 65536, 262144L, 786432L)]
    [InlineData("cache-size=1M,refcount-cache-size=256k", 1L << 30, 65536, 786432L, 262144L)]
    public void CacheSizes_CacheSizeSplit_AsQemuDocuments(string options, long size, int cluster, long l2, long refcount)
    {
        var s = ImageSpec.Parse("file.filename=x," + options);
        var (gotL2, gotRefcount, _) = s.CacheSizes(size, cluster);
        Assert.Equal(l2, gotL2);
        Assert.Equal(refcount, gotRefcount);
    }

    [Theory]
    [InlineData("cache-size=1M,l2-cache-size=1M,refcount-cache-size=1M", "cache-size, l2-cache-size and refcount-cache-size may not be set at the same time")]
    [InlineData("cache-size=512k,l2-cache-size=1M", "l2-cache-size may not exceed cache-size")]
    [InlineData("cache-size=512k,refcount-cache-size=1M", "refcount-cache-size may not exceed cache-size")]
    [InlineData("l2-cache-entry-size=1000", "L2 cache entry size must be a power of two between 512 and the cluster size (65536)")]
    [InlineData("l2-cache-entry-size=128k", "L2 cache entry size must be a power of two between 512 and the cluster size (65536)")]
    public void CacheSizes_BadCombination_QemuMessage(string options, string reason)
    {
        var s = ImageSpec.Parse("file.filename=x," + options);
        var e = Assert.Throws<CommandFailedException>(() => s.CacheSizes(1L << 30, 65536));
        Assert.Equal($"Could not open 'file.filename=x,{options}': {reason}", e.Message);
    }
}

public class EncryptionSettingsTests
{
    private static readonly SecretStore Secrets = SecretStore.Load(new[] { "secret,id=s0,data=pw" }, TextWriter.Null)!;

    private static EncryptionSettings From(string options) => CreateSettings.FromOptions("qcow2", OptionList.Parse(options)).Encryption;

    [Fact]
    public void Resolve_LuksOptions_MappedToLibraryOptions()
    {
        var plan = From("encrypt.format=luks,encrypt.key-secret=s0,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc," +
            "encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha1,encrypt.hash-alg=sha512,encrypt.iter-time=50").Resolve(Secrets)!;
        Assert.Equal("luks", plan.Format);
        Assert.Equal("pw"u8.ToArray(), plan.Secret);
        var l = plan.Luks!;
        Assert.Equal(("aes-128", "cbc", "essiv", "sha1", "sha512", 50), (l.CipherAlg, l.CipherMode, l.IvgenAlg, l.IvgenHashAlg, l.HashAlg, l.IterTimeMs));
        Assert.Null(l.Iterations);
    }

    [Fact]
    public void Resolve_IterTimeZero_MinimumIterations()
    {
        Assert.Equal(1000u, From("encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=0").Resolve(Secrets)!.Luks!.Iterations);
    }

    [Theory]
    [InlineData("encryption=on,encrypt.key-secret=s0")]
    [InlineData("encrypt.format=aes,encrypt.key-secret=s0")]
    public void Resolve_LegacyAes_NoLuksOptions(string options)
    {
        var plan = From(options).Resolve(Secrets)!;
        Assert.Equal("aes", plan.Format);
        Assert.Null(plan.Luks);
    }

    [Theory]
    [InlineData("")]
    [InlineData("encryption=off")]
    [InlineData("cluster_size=4k")]
    public void Resolve_NoEncryption_Null(string options)
    {
        Assert.Null(From(options).Resolve(Secrets));
    }

    [Fact]
    public void FormattingLine_EncryptOptionsInQemuOrderBeforeClusterSize()
    {
        var s = CreateSettings.FromOptions("qcow2", OptionList.Parse("encrypt.iter-time=10,encrypt.hash-alg=sha512,encrypt.key-secret=s0,encrypt.format=luks"));
        // The order qemu-img create printed for these options (given in another order).
        Assert.Equal("Formatting 'e.qcow2', fmt=qcow2 encrypt.format=luks encrypt.key-secret=s0 encrypt.hash-alg=sha512 encrypt.iter-time=10 cluster_size=65536 extended_l2=off compression_type=zlib size=4194304 lazy_refcounts=off refcount_bits=16\n",
            s.FormattingLine("e.qcow2", 4 << 20));
    }

    // qemu-img create printed encrypt.iter-time=8 for "010", 16 for "0x10" and 5 for "+5".
    [Theory]
    [InlineData("010", "8")]
    [InlineData("0x10", "16")]
    [InlineData("+5", "5")]
    [InlineData("10", "10")]
    public void FormattingLine_IterTime_ReadAsQemuReadsNumbers(string given, string printed)
    {
        var s = CreateSettings.FromOptions("qcow2", OptionList.Parse("encrypt.format=luks,encrypt.iter-time=" + given));
        Assert.Contains($" encrypt.iter-time={printed} ", s.FormattingLine("e.qcow2", 1 << 20));
    }

    [Theory]
    [InlineData("1k")]
    [InlineData("08")]
    [InlineData("")]
    [InlineData("0x")]
    [InlineData("1.5")]
    public void IterTime_NotANumber_QemuMessage(string given)
    {
        var s = CreateSettings.FromOptions("qcow2", OptionList.Parse("encrypt.format=luks,encrypt.iter-time=" + given));
        Assert.Equal("Parameter 'encrypt.iter-time' expects a number", Assert.Throws<CommandFailedException>(s.Encryption.CheckSyntax).Message);
    }
}
