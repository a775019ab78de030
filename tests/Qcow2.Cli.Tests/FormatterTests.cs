using System.Text;
using Qcow2.Cli.Commands;
using Qcow2.Cli.Output;

namespace Qcow2.Cli.Tests;

public class NumberFormatTests
{
    // Pairs printed by qemu-img 7.2 "info" (disk size) on this machine.
    [Theory]
    [InlineData(0L, "0 B")]
    [InlineData(4096L, "4 KiB")]
    [InlineData(200704L, "196 KiB")]
    [InlineData(1318912L, "1.26 MiB")]
    [InlineData(2297856L, "2.19 MiB")]
    [InlineData(67108864L, "64 MiB")]
    [InlineData(1073741824L, "1 GiB")]
    [InlineData(1000L, "0.977 KiB")]
    [InlineData(1023999L, "1e+03 KiB")]
    public void HumanSize_MatchesQemuImg(long bytes, string expected)
    {
        Assert.Equal(expected, NumberFormat.HumanSize(bytes));
    }

    // Printed by qemu-io 7.2 (read/write/map lines).
    [Theory]
    [InlineData(40.0, "40 bytes")]
    [InlineData(1024.0, "1 KiB")]
    [InlineData(65536.0, "64 KiB")]
    [InlineData(2031616.0, "1.938 MiB")]
    [InlineData(2162688.0, "2.062 MiB")]
    [InlineData(62849024.0, "59.938 MiB")]
    public void IoSize_MatchesQemuIo(double bytes, string expected)
    {
        Assert.Equal(expected, NumberFormat.IoSize(bytes));
    }

    [Theory]
    [InlineData(0.125, 2, "0.12")]
    [InlineData(0.375, 2, "0.38")]
    [InlineData(2.5, 0, "2")]
    [InlineData(3.5, 0, "4")]
    [InlineData(5.882352941176471, 2, "5.88")]
    public void Fixed_RoundsExactValueHalfToEven_AsPrintf(double value, int decimals, string expected)
    {
        Assert.Equal(expected, NumberFormat.Fixed(value, decimals));
    }

    [Fact]
    public void AltHex_ZeroHasNoPrefix()
    {
        Assert.Equal("0", NumberFormat.AltHex(0));
        Assert.Equal("0x100000", NumberFormat.AltHex(0x100000));
    }
}

public class JsonAndHumanTests
{
    [Fact]
    public void WriteString_EscapesLikeQemu()
    {
        var sb = new StringBuilder();
        QJson.WriteString(sb, "\u00fc\u0001\"\\.raw");
        // qemu-img info --output=json printed "\u00FC\u0001\"\\.raw" for this file name.
        Assert.Equal("\"\\u00FC\\u0001\\\"\\\\.raw\"", sb.ToString());
        sb.Clear();
        QJson.WriteString(sb, "a\U0001F600.raw");
        Assert.Equal("\"a\\uD83D\\uDE00.raw\"", sb.ToString());
    }

    [Fact]
    public void PrettyJson_EmptyListClosesOnItsOwnLine()
    {
        var d = new QDict(KeyOrder.Bitmap).Add("name", "bm1").Add("flags", new QList()).Add("granularity", 131072L);
        Assert.Equal("{\n    \"flags\": [\n    ],\n    \"name\": \"bm1\",\n    \"granularity\": 131072\n}", QJson.ToPrettyJson(d));
    }

    [Fact]
    public void CheckHuman_LeaksAndCorruptions_QemuLayout()
    {
        var r = new CheckReport
        {
            Filename = "x", Format = "qcow2", Corruptions = 2, Leaks = 1, ImageEndOffset = 393216,
            TotalClusters = 16, AllocatedClusters = 1,
        };
        Assert.Equal(
            "\n2 errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n" +
            "\n1 leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n" +
            "1/16 = 6.25% allocated, 0.00% fragmented, 0.00% compressed clusters\nImage end offset: 393216\n",
            CheckFormatter.Human(r));
        Assert.Equal(2, r.ExitCode);
        Assert.Equal(3, (r with { Corruptions = 0 }).ExitCode);
        Assert.Equal(0, (r with { Corruptions = 0, Leaks = 0 }).ExitCode);
        Assert.Equal(1, (r with { CheckErrors = 1 }).ExitCode);
    }

    [Fact]
    public void HexDump_PartialLine_QemuIoLayout()
    {
        var data = Enumerable.Repeat((byte)0xab, 20).ToArray();
        Assert.Equal(
            "00000000:  ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab  ................\n" +
            "00000010:  ab ab ab ab  ....\n",
            IoRunner.HexDump(data, 0));
    }

    [Fact]
    public void ProgressRender_ShowsPercentRateAndTimeLeft()
    {
        string s = ProgressBar.Render(50, 100, TimeSpan.FromSeconds(1), "");
        Assert.Contains(" 50.00%", s);
        Assert.Contains("50 bytes/s", s);
        Assert.Contains("00:00:01 left", s);
    }
}

public class ErrorTextTests
{
    [Fact]
    public void MessageOf_ArgumentException_DropsParameterSuffix()
    {
        var e = new ArgumentException("Cluster size must be a power of two", "ClusterSize");
        Assert.Equal("Cluster size must be a power of two", Qcow2.Cli.Framework.CliApp.MessageOf(e));
    }

    [Fact]
    public void Describe_AggregateOfOne_DescribesTheInner()
    {
        var e = new AggregateException(new IOException("disk on fire"));
        Assert.Equal("disk on fire", Qcow2.Cli.Framework.CliApp.Describe(e));
    }

    [Fact]
    public void Describe_CorruptImage_PrefixesImageIsCorrupt()
    {
        var e = new Qcow2.Spans.Qcow2CorruptImageException("header.magic", 0, 0x1234, "not a qcow2 image");
        Assert.StartsWith("Image is corrupt: header.magic at offset 0x0", Qcow2.Cli.Framework.CliApp.Describe(e));
    }

    [Fact]
    public void ProgressBar_NotATerminal_IsSilent()
    {
        var err = new StringWriter();
        var context = new Qcow2.Cli.Framework.CliContext(new StringWriter(), err, outputIsTerminal: false, errorIsTerminal: false);
        using (var bar = ProgressBar.Create(context, enabled: true, total: 100))
        {
            Assert.False(bar.IsVisible);
            Assert.Null(bar.AsFraction());
            bar.Advance(50);
        }
        Assert.Equal("", err.ToString());
    }

    [Fact]
    public void ProgressBar_Terminal_DrawsAndEndsLine()
    {
        var err = new StringWriter();
        var context = new Qcow2.Cli.Framework.CliContext(new StringWriter(), err, outputIsTerminal: true, errorIsTerminal: true);
        using (var bar = ProgressBar.Create(context, enabled: true, total: 100))
        {
            bar.AsFraction()!.Report(0.5);
        }
        Assert.StartsWith("\r", err.ToString());
        Assert.Contains("100.00%", err.ToString());
        Assert.EndsWith("\n", err.ToString());
    }
}
