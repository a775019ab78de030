using Qcow2.Spans;
using Qcow2.Tests.Shared;
using Qcow2.Volume.Chain;

namespace Qcow2.Volume.Tests.Infra;

public sealed class ChainTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Resolve_RelativeName_IsAgainstTheReferringImagesDirectory()
    {
        var img = Path.Combine(_dir.Path, "sub", "top.qcow2");
        Assert.Equal(Path.Combine(_dir.Path, "sub", "base.qcow2"), ImageFileResolver.Resolve(img, "base.qcow2"));
        Assert.Equal(Path.Combine(_dir.Path, "base.qcow2"), ImageFileResolver.Resolve(img, "../base.qcow2"));
        Assert.Equal(Path.Combine(_dir.Path, "sub", "x", "b"), ImageFileResolver.Resolve(img, "x/./b"));
    }

    [Fact]
    public void ResolveDataFile_FileBesideImage_IsPreferred()
    {
        Directory.CreateDirectory(Path.Combine(_dir.Path, "sub"));
        var img = Path.Combine(_dir.Path, "sub", "top.qcow2");
        var beside = Path.Combine(_dir.Path, "sub", "top.data");
        File.WriteAllBytes(beside, [1]);
        Assert.Equal(beside, ImageFileResolver.ResolveDataFile(img, "top.data"));
    }

    [Fact]
    public void ResolveDataFile_OnlyFromCurrentDirectory_FoundThereAsQemuDoes()
    {
        // qemu-img create -o data_file=d/x.data d/x.qcow2 stores "d/x.data", relative to the current directory.
        // The data file lives in a fresh directory under the current one, so the name never climbs with ".."
        // (which clamps at "/" and could land back on the file from beside the image).
        string sub = "cwd-data-" + Guid.NewGuid().ToString("N");
        string cwdDir = Path.Combine(Directory.GetCurrentDirectory(), sub);
        Directory.CreateDirectory(cwdDir);
        try
        {
            string data = Path.Combine(cwdDir, "x.data");
            File.WriteAllBytes(data, [1]);
            string name = sub + "/x.data";
            var img = Path.Combine(_dir.Path, "d", "x.qcow2");
            Assert.False(File.Exists(ImageFileResolver.Resolve(img, name)));
            Assert.Equal(data, ImageFileResolver.ResolveDataFile(img, name));
        }
        finally
        {
            Directory.Delete(cwdDir, recursive: true);
        }
    }

    [Fact]
    public void ResolveDataFile_Missing_ResolvesBesideImage()
    {
        var img = Path.Combine(_dir.Path, "top.qcow2");
        Assert.Equal(Path.Combine(_dir.Path, "nowhere.data"), ImageFileResolver.ResolveDataFile(img, "nowhere.data"));
    }

    [Fact]
    public void Resolve_AbsoluteAndFilePrefixedNames_AreKept()
    {
        Assert.Equal("/srv/base.img", ImageFileResolver.Resolve("/a/b/top.qcow2", "/srv/base.img"));
        Assert.Equal("/srv/base.img", ImageFileResolver.Resolve("/a/b/top.qcow2", "file:/srv/base.img"));
        Assert.Equal("/a/b/base.img", ImageFileResolver.Resolve("/a/b/top.qcow2", "file:base.img"));
    }

    [Fact]
    public void Resolve_NoReferringPath_UsesTheCurrentDirectory()
    {
        Assert.Equal(Path.Combine(Directory.GetCurrentDirectory(), "b.img"), ImageFileResolver.Resolve("", "b.img"));
    }

    [Theory]
    [InlineData("nbd://host/export")]
    [InlineData("json:{\"driver\":\"file\"}")]
    [InlineData("http:x")]
    [InlineData("")]
    [InlineData("a\0b")]
    public void Resolve_ProtocolsEmptyOrNul_ThrowUnsupported(string name)
    {
        Assert.Throws<Qcow2UnsupportedImageException>(() => ImageFileResolver.Resolve("/a/top.qcow2", name));
    }

    [Fact]
    public void Resolve_ColonAfterASlash_IsAPlainFile()
    {
        Assert.Equal("/a/dir/b:c", ImageFileResolver.Resolve("/a/top.qcow2", "dir/b:c"));
    }

    [Fact]
    public void Canonicalize_SymbolicLink_ResolvesToTheTarget()
    {
        var target = _dir.File("real.img");
        File.WriteAllBytes(target, new byte[1]);
        var link = _dir.File("link.img");
        File.CreateSymbolicLink(link, target);
        Assert.Equal(ImageFileResolver.Canonicalize(target), ImageFileResolver.Canonicalize(link));
        Assert.NotEqual(link, ImageFileResolver.Canonicalize(link));
    }

    [Fact]
    public void ThrowIfLoopOrTooDeep_SameFileThroughALink_ThrowsCorrupt()
    {
        var a = _dir.File("a.img");
        var b = _dir.File("b.img");
        File.WriteAllBytes(a, new byte[1]);
        File.WriteAllBytes(b, new byte[1]);
        var link = _dir.File("alias.img");
        File.CreateSymbolicLink(link, a);
        var e = Assert.Throws<Qcow2CorruptImageException>(() => ImageFileResolver.ThrowIfLoopOrTooDeep(new[] { a, b }, link, 10));
        Assert.Contains("loops", e.Message);
        ImageFileResolver.ThrowIfLoopOrTooDeep(new[] { a }, b, 10);
    }

    [Fact]
    public void ThrowIfLoopOrTooDeep_ChainAtTheLimit_ThrowsCorrupt()
    {
        var names = Enumerable.Range(0, 4).Select(i => _dir.File($"l{i}.img")).ToArray();
        // Top plus 3 layers below it: one more is allowed at depth 3, not at depth 2.
        ImageFileResolver.ThrowIfLoopOrTooDeep(names[..3], names[3], 3);
        Assert.Throws<Qcow2CorruptImageException>(() => ImageFileResolver.ThrowIfLoopOrTooDeep(names[..3], names[3], 2));
    }

    [Fact]
    public void Policy_DenyAllowAllCustom_DecideAsNamed()
    {
        var req = new ExternalFileRequest(ExternalFileKind.Backing, "b.img", "/x/b.img", "/x/top.qcow2");
        Assert.False(ExternalFilePolicy.Deny.IsAllowed(req));
        Assert.True(ExternalFilePolicy.AllowAll.IsAllowed(req));
        ExternalFileRequest seen = default;
        var custom = ExternalFilePolicy.Custom(r => { seen = r; return r.Kind == ExternalFileKind.DataFile; });
        Assert.False(custom.IsAllowed(req));
        Assert.Equal(req, seen);
        Assert.True(custom.IsAllowed(req with { Kind = ExternalFileKind.DataFile }));
    }

    [Fact]
    public void Policy_AllowUnder_AllowsOnlyPathsInsideTheDirectory()
    {
        var inside = _dir.File("in.img");
        File.WriteAllBytes(inside, new byte[1]);
        var policy = ExternalFilePolicy.AllowUnder(_dir.Path);
        Assert.True(policy.IsAllowed(new ExternalFileRequest(ExternalFileKind.Backing, "in.img", inside, "t")));
        Assert.False(policy.IsAllowed(new ExternalFileRequest(ExternalFileKind.Backing, "/etc/passwd", "/etc/passwd", "t")));
        // A link inside pointing outside is judged by its target.
        var link = _dir.File("escape.img");
        File.CreateSymbolicLink(link, "/etc/passwd");
        Assert.False(policy.IsAllowed(new ExternalFileRequest(ExternalFileKind.Backing, "escape.img", link, "t")));
        Assert.False(policy.IsAllowed(new ExternalFileRequest(ExternalFileKind.Backing, "x", _dir.Path + "-sibling/x", "t")));
    }
}
