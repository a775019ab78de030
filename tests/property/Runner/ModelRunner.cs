using Qcow2.Property.Tests.Commands;
using Qcow2.Property.Tests.Model;

namespace Qcow2.Property.Tests.Runner;

/// <summary>
/// Runs a script on a disk and on the reference model side by side. After every command the
/// command's range and its neighbouring clusters (the whole disk when it is small) must read as the
/// model says; a reopen compares the whole disk; at the end the whole disk is compared, the image
/// closed, and the harness runs its final checks.
/// </summary>
internal static class ModelRunner
{
    /// <summary>Disks up to this size are compared whole after every command.</summary>
    public const long FullCompareLimit = 256 << 10;

    public static ReferenceDisk BuildModel(ImageGeometry g)
    {
        var model = new ReferenceDisk(g.Size, g.Backing.Select(b => b.Size).ToArray());
        for (var l = 0; l < g.Backing.Count; l++)
        {
            foreach (var w in g.Backing[l].Writes)
                model.WriteLayer(l + 1, w.Offset, w.Pattern.Create(w.Offset, checked((int)w.Length)));
        }
        return model;
    }

    public static void Run(TestScript script, Func<ImageGeometry, IDiskHarness> harnessFactory)
    {
        var g = script.Geometry;
        var model = BuildModel(g);
        using var harness = harnessFactory(g);
        var disk = Step(-1, "open", () => harness.Open());
        try
        {
            if (disk.Size != g.Size) throw Fail(-1, "open", $"the disk reports size 0x{disk.Size:x}, expected 0x{g.Size:x}");
            for (var i = 0; i < script.Commands.Count; i++)
            {
                var command = script.Commands[i];
                var text = command.ToString()!;
                if (command is ReopenCommand)
                {
                    var old = disk;
                    disk = null!;
                    Step(i, text, () => old.Dispose());
                    disk = Step(i, text, () => harness.Open());
                    VerifyRange(i, text, disk, model, 0, g.Size);
                    continue;
                }
                command.Apply(model);
                Step(i, text, () => command.Execute(disk));
                if (g.Size <= FullCompareLimit)
                {
                    VerifyRange(i, text, disk, model, 0, g.Size);
                }
                else if (command.Range is { } r)
                {
                    // The range and up to a cluster either side: damage to neighbours shows here.
                    var margin = Math.Min(g.ClusterSize, 64 << 10);
                    var start = Math.Max(0, r.Offset - margin);
                    var end = Math.Min(g.Size, r.Offset + r.Length + margin);
                    VerifyRange(i, text, disk, model, start, end - start);
                }
            }
            VerifyRange(script.Commands.Count, "end of script", disk, model, 0, g.Size);
        }
        finally
        {
            disk?.Dispose();
        }
        if (model.HasUncertainBytes) throw new InvalidOperationException("model still has uncertain bytes after a full compare");
        Step(script.Commands.Count, "final checks", () => harness.FinalChecks(model));
    }

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="offset"/> and compares them with the model.</summary>
    public static void VerifyRange(int index, string command, IGuestDisk disk, ReferenceDisk model, long offset, long length)
    {
        var buffer = new byte[(int)Math.Min(length, 1 << 20)];
        for (long done = 0; done < length;)
        {
            var n = (int)Math.Min(buffer.Length, length - done);
            var span = buffer.AsSpan(0, n);
            Step(index, command, () => disk.Read(offset + done, buffer.AsSpan(0, n)));
            if (model.Verify(offset + done, span) is { } mismatch)
                throw Fail(index, command, mismatch);
            done += n;
        }
    }

    private static T Step<T>(int index, string command, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is not ModelMismatchException)
        {
            throw new ModelMismatchException($"{Where(index, command)} threw {e.GetType().Name}: {e.Message}", e);
        }
    }

    private static void Step(int index, string command, Action action) =>
        Step(index, command, () => { action(); return 0; });

    private static ModelMismatchException Fail(int index, string command, string message) =>
        new($"{Where(index, command)}: {message}");

    private static string Where(int index, string command) =>
        index < 0 ? $"[{command}]" : $"[#{index + 1} {command}]";
}

/// <summary>The disk disagreed with the model, or an operation failed; the message says where.</summary>
internal sealed class ModelMismatchException : Exception
{
    public ModelMismatchException(string message) : base(message)
    {
    }

    public ModelMismatchException(string message, Exception inner) : base(message, inner)
    {
    }
}
