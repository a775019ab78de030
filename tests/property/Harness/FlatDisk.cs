using Qcow2.Property.Tests.Commands;
using Qcow2.Property.Tests.Model;
using Qcow2.Property.Tests.Runner;

namespace Qcow2.Property.Tests.Harness;

/// <summary>
/// A plain array standing in for an image, used to test the runner, the generators and the
/// shrinker themselves. Discard zeroes the whole clusters it covers (as QEMU does on v3). A bug can
/// be injected to show that the runner catches it and that shrinking finds the minimal script.
/// </summary>
internal sealed class FlatDiskHarness : IDiskHarness
{
    private readonly byte[] _contents;
    private readonly int _clusterSize;
    private readonly Func<long, long, bool>? _dropLastByteOfWrite;

    public FlatDiskHarness(ImageGeometry g, Func<long, long, bool>? dropLastByteOfWrite = null)
    {
        _contents = new byte[g.Size];
        ModelRunner.BuildModel(g).ReadExpected(0, _contents);
        _clusterSize = g.ClusterSize;
        _dropLastByteOfWrite = dropLastByteOfWrite;
    }

    public int Opens { get; private set; }

    public IGuestDisk Open()
    {
        Opens++;
        return new FlatDisk(this);
    }

    public void FinalChecks(ReferenceDisk model)
    {
        var expected = new byte[_contents.Length];
        model.ReadExpected(0, expected);
        if (!expected.AsSpan().SequenceEqual(_contents)) throw new InvalidOperationException("final contents differ from the model");
    }

    public void Dispose()
    {
    }

    private sealed class FlatDisk(FlatDiskHarness h) : IGuestDisk
    {
        public long Size => h._contents.Length;

        public void Read(long offset, Span<byte> destination) => h._contents.AsSpan((int)offset, destination.Length).CopyTo(destination);

        public void Write(long offset, ReadOnlySpan<byte> source)
        {
            if (h._dropLastByteOfWrite?.Invoke(offset, source.Length) == true) source = source[..^1];
            source.CopyTo(h._contents.AsSpan((int)offset));
        }

        public void WriteZeroes(long offset, long length, bool unmap) => h._contents.AsSpan((int)offset, (int)length).Clear();

        public void Discard(long offset, long length)
        {
            var first = (offset + h._clusterSize - 1) / h._clusterSize * h._clusterSize;
            var end = (offset + length) / h._clusterSize * h._clusterSize;
            if (end > first) h._contents.AsSpan((int)first, (int)(end - first)).Clear();
        }

        public void WriteCompressed(long offset, ReadOnlySpan<byte> source) => source.CopyTo(h._contents.AsSpan((int)offset));

        public void Flush()
        {
        }

        public void Dispose()
        {
        }
    }
}
