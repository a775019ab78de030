using System.Globalization;
using Qcow2.CrashWriter;
using Qcow2.Volume;

// Usage: CrashWriter <image.qcow2> <seed>
// Runs the seeded workload on the image until killed. After each completed flush it prints
// "flushed N": the first N operations (flushes included) are durable.
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: CrashWriter <image.qcow2> <seed>");
    return 2;
}
var seed = int.Parse(args[1], CultureInfo.InvariantCulture);
using var image = Qcow2Image.Open(args[0]);
var count = 0;
foreach (var op in Workload.Ops(seed, image.Size, image.Info.ClusterSize))
{
    switch (op.Kind)
    {
        case WorkloadOpKind.Write: image.Write(op.Offset, op.Data()); break;
        case WorkloadOpKind.WriteZeroes: image.WriteZeroes(op.Offset, op.Length); break;
        case WorkloadOpKind.Discard: image.Discard(op.Offset, op.Length); break;
        case WorkloadOpKind.Flush: image.Flush(); break;
    }
    count++;
    if (op.Kind == WorkloadOpKind.Flush)
    {
        Console.Out.WriteLine($"flushed {count}");
        Console.Out.Flush();
    }
}
return 0;
