using Qcow2.Cli.Framework;
using Qcow2.Cli.Parsing;

namespace Qcow2.Cli.Tests;

public class SizeParserTests
{
    // Expected values were observed from qemu-io 7.2 ("read N 1" reports the offset) and
    // qemu-img create ("Formatting ... size=N") on this machine.
    [Theory]
    [InlineData("1m", 1048576L)]
    [InlineData("1b", 1L)]
    [InlineData("1B", 1L)]
    [InlineData("0x10", 16L)]
    [InlineData("0x10k", 16384L)]
    [InlineData("1.5k", 1536L)]
    [InlineData("1.1k", 1126L)]
    [InlineData("010", 10L)]
    [InlineData("1.0", 1L)]
    [InlineData(" 1", 1L)]
    [InlineData("7E", 8070450532247928832L)]
    [InlineData("1T", 1099511627776L)]
    [InlineData("64M", 67108864L)]
    public void TryParse_QemuAcceptedSyntax_ReturnsQemuValue(string text, long expected)
    {
        Assert.Equal(SizeParseError.None, SizeParser.TryParse(text, out long value));
        Assert.Equal(expected, value);
    }

    [Theory]
    [InlineData("1.5")]
    [InlineData("0.5")]
    [InlineData("1kb")]
    [InlineData("1kB")]
    [InlineData("0x1.8k")]
    [InlineData("1x")]
    [InlineData("")]
    [InlineData("-1")]
    [InlineData("k")]
    public void TryParse_QemuRejectedSyntax_ReturnsInvalid(string text)
    {
        Assert.Equal(SizeParseError.Invalid, SizeParser.TryParse(text, out _));
    }

    [Theory]
    [InlineData("8E")]
    [InlineData("18446744073709551616")]
    [InlineData("0x10000000000000000")]
    public void TryParse_PastInt64_ReturnsTooLarge(string text)
    {
        Assert.Equal(SizeParseError.TooLarge, SizeParser.TryParse(text, out _));
    }

    [Fact]
    public void TryParseIoNumber_BadSuffix_GivesQemuIoMessage()
    {
        Assert.False(SizeParser.TryParseIoNumber("1x", out _, out var error));
        Assert.Equal("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- 1x", error);
        Assert.False(SizeParser.TryParseIoNumber("8E", out _, out error));
        Assert.Equal("Parsing error: argument too large -- 8E", error);
    }

    [Fact]
    public void ParseSize_Invalid_ThrowsUsageException()
    {
        Assert.Throws<UsageException>(() => SizeParser.ParseSize("12q", "image size"));
    }

    [Theory]
    [InlineData("0xab", 0xab)]
    [InlineData("171", 171)]
    [InlineData("010", 8)]
    [InlineData("0", 0)]
    [InlineData("255", 255)]
    public void PatternParser_CIntegers_ParseAsStrtol(string text, int expected)
    {
        Assert.True(PatternParser.TryParse(text, out byte b));
        Assert.Equal(expected, b);
    }

    [Theory]
    [InlineData("256")]
    [InlineData("0x")]
    [InlineData("09")]
    [InlineData("abc")]
    [InlineData("")]
    public void PatternParser_Invalid_ReturnsFalse(string text)
    {
        Assert.False(PatternParser.TryParse(text, out _));
    }
}

public class OptionListTests
{
    [Fact]
    public void Parse_KeyValuePairs_InOrder()
    {
        var list = OptionList.Parse("cluster_size=4k,compat=0.10");
        Assert.Equal(new[] { "cluster_size", "compat" }, list.Items.Select(i => i.Key));
        Assert.Equal(new[] { "4k", "0.10" }, list.Items.Select(i => i.Value));
    }

    [Fact]
    public void Parse_DoubledComma_IsLiteralComma()
    {
        var list = OptionList.Parse("backing_file=a,,b.qcow2,backing_fmt=qcow2");
        Assert.True(list.TryGet("backing_file", out var v));
        Assert.Equal("a,b.qcow2", v);
        Assert.True(list.TryGet("backing_fmt", out v));
        Assert.Equal("qcow2", v);
    }

    [Fact]
    public void Parse_Help_SetsFlag()
    {
        Assert.True(OptionList.Parse("help").HelpRequested);
        Assert.True(OptionList.Parse("size=1M,?").HelpRequested);
        Assert.False(OptionList.Parse("size=1M").HelpRequested);
    }

    [Fact]
    public void Parse_SeveralArguments_LaterWins()
    {
        var list = OptionList.Parse(new[] { "refcount_bits=8", "refcount_bits=16" });
        Assert.True(list.TryGet("refcount_bits", out var v));
        Assert.Equal("16", v);
    }

    [Fact]
    public void ParseBool_BareKeyAndWords()
    {
        Assert.True(OptionList.ParseBool("k", null));
        Assert.True(OptionList.ParseBool("k", "on"));
        Assert.False(OptionList.ParseBool("k", "off"));
        Assert.Throws<UsageException>(() => OptionList.ParseBool("k", "maybe"));
    }

    [Fact]
    public void CreateSettings_AllQemuNames_AreRead()
    {
        var s = CreateSettings.FromOptions("qcow2", OptionList.Parse(
            "size=1G,cluster_size=4k,refcount_bits=8,compat=v2,lazy_refcounts=on,extended_l2=off," +
            "compression_type=zstd,backing_file=b.qcow2,backing_fmt=qcow2,data_file=d.raw,data_file_raw=on,preallocation=metadata"));
        Assert.Equal(1L << 30, s.Size);
        Assert.Equal(4096L, s.ClusterSize);
        Assert.Equal(8, s.RefcountBits);
        Assert.Equal("0.10", s.Compat);
        Assert.True(s.LazyRefcounts);
        Assert.False(s.ExtendedL2);
        Assert.Equal("zstd", s.CompressionType);
        Assert.Equal("b.qcow2", s.BackingFile);
        Assert.Equal("qcow2", s.BackingFormat);
        Assert.Equal("d.raw", s.DataFile);
        Assert.True(s.DataFileRaw);
        Assert.Equal("metadata", s.Preallocation);
    }

    [Theory]
    [InlineData("qcow2", "bogus=1")]
    [InlineData("raw", "cluster_size=4k")]
    [InlineData("qcow2", "compat=2.0")]
    [InlineData("qcow2", "compression_type=lz4")]
    [InlineData("qcow2", "preallocation=sometimes")]
    public void CreateSettings_BadOption_ThrowsUsage(string format, string options)
    {
        Assert.Throws<UsageException>(() => CreateSettings.FromOptions(format, OptionList.Parse(options)));
    }

    [Fact]
    public void FormattingLine_Defaults_MatchQemuImgCreate()
    {
        // Printed by qemu-img 7.2 for "create -f qcow2 a.qcow2 64M".
        var s = new CreateSettings { Format = "qcow2" };
        Assert.Equal(
            "Formatting 'a.qcow2', fmt=qcow2 cluster_size=65536 extended_l2=off compression_type=zlib size=67108864 lazy_refcounts=off refcount_bits=16\n",
            s.FormattingLine("a.qcow2", 67108864));
    }
}

public class ArgParserTests
{
    private static readonly OptionSpec[] Specs =
    {
        new('f', "format", true, "FMT", ""),
        new('p', null, false, null, ""),
        new('c', null, false, null, ""),
        new('\0', "output", true, "FMT", ""),
    };

    [Fact]
    public void Parse_ClusteredFlagsAndAttachedValue()
    {
        var p = ArgParser.Parse(new[] { "-pc", "-fqcow2", "x" }, Specs);
        Assert.True(p.Has("p"));
        Assert.True(p.Has("c"));
        Assert.Equal("qcow2", p.Get("format"));
        Assert.Equal(new[] { "x" }, p.Positionals);
    }

    [Fact]
    public void Parse_LongOptionBothForms_AndOptionsAfterPositionals()
    {
        var p = ArgParser.Parse(new[] { "x", "--output=json", "--format", "raw" }, Specs);
        Assert.Equal("json", p.Get("output"));
        Assert.Equal("raw", p.Get("format"));
        Assert.Equal(new[] { "x" }, p.Positionals);
    }

    [Fact]
    public void Parse_DoubleDash_EndsOptions()
    {
        var p = ArgParser.Parse(new[] { "--", "-p" }, Specs);
        Assert.False(p.Has("p"));
        Assert.Equal(new[] { "-p" }, p.Positionals);
    }

    [Fact]
    public void Parse_HelpAnywhere_SetsHelpRequested()
    {
        Assert.True(ArgParser.Parse(new[] { "x", "--help" }, Specs).HelpRequested);
        Assert.True(ArgParser.Parse(new[] { "-h" }, Specs).HelpRequested);
    }

    [Theory]
    [InlineData("-z")]
    [InlineData("--bogus")]
    [InlineData("-f")]
    [InlineData("--output")]
    public void Parse_BadOption_ThrowsUsage(string arg)
    {
        Assert.Throws<UsageException>(() => ArgParser.Parse(new[] { arg }, Specs));
    }
}
