namespace Qcow2.Cli.Tests;

/// <summary>Helpers for tests that run our tool and qemu-img with the same arguments.</summary>
internal static class ToolComparison
{
    /// <summary>An argument list from strings and string sequences (e.g. a shared "--object ..." pair), flattened in order.</summary>
    public static string[] With(params object[] parts)
    {
        var list = new List<string>();
        foreach (var p in parts)
        {
            if (p is string s) list.Add(s);
            else list.AddRange((IEnumerable<string>)p);
        }
        return list.ToArray();
    }

    /// <summary>The same error from both tools: exit code, stdout, and stderr with the program names swapped.</summary>
    public static void AssertSameFailure((int Code, string Out, string Err) qemu, (int Code, string Out, string Err) ours)
    {
        Assert.NotEqual(0, qemu.Code);
        Assert.Equal(qemu.Code, ours.Code);
        Assert.Equal(qemu.Err.Replace("qemu-img: ", "qcow2: ", StringComparison.Ordinal), ours.Err);
        Assert.Equal(qemu.Out, ours.Out);
    }
}
