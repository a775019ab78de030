using Qcow2.Volume;

namespace Qcow2.Cli.Framework;

/// <summary>Opens the internal snapshot named by <c>-l snapshot.name=NAME</c>, failing as qemu-img does.</summary>
internal static class SnapshotLoader
{
    public static IDiskImage Open(IDiskImage image, string spec)
    {
        string name = spec.StartsWith("snapshot.name=", StringComparison.Ordinal) ? spec["snapshot.name=".Length..]
            : spec.StartsWith("snapshot.id=", StringComparison.Ordinal) ? spec["snapshot.id=".Length..]
            : spec;
        if (image is not Qcow2Image q) throw new CommandFailedException("Failed to load snapshot: Can't find snapshot");
        try
        {
            return q.OpenSnapshot(name);
        }
        catch (KeyNotFoundException)
        {
            throw new CommandFailedException("Failed to load snapshot: Can't find snapshot");
        }
    }
}
