using System.Globalization;
using Qcow2.CrashWriter;
using Qcow2.Volume;
using Qcow2.Volume.Chain;

// Usage: CrashWriter <image.qcow2> <seed> [--data-file] [--threads N]
//
// Runs a seeded workload on the image until killed.
//   --data-file  the image has an external data file (raw or not), opened where the image names it;
//                refused when the image has none.
// Single-threaded (the default): after each completed flush it prints "flushed N": the first N
// operations of Workload.Ops (flushes included) are durable.
// --threads N: N threads run Workload.ThreadOps (with compressed writes unless the image has a data file) concurrently through the one image (even threads
// call the synchronous methods, odd threads the asynchronous ones). Every operation takes a number
// from one global sequence just before it is called (S) and another just after it returns (A);
// the thread then prints "op T I S A" (thread, index of the operation in its workload). An
// operation whose A is below the S of a flush that returned is durable: it was acknowledged before
// that flush began.
var dataFile = false;
var threads = 0;
var positional = new List<string>();
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--data-file": dataFile = true; break;
        case "--threads" when i + 1 < args.Length: threads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        default: positional.Add(args[i]); break;
    }
}
if (positional.Count != 2 || threads < 0)
{
    Console.Error.WriteLine("usage: CrashWriter <image.qcow2> <seed> [--data-file] [--threads N]");
    return 2;
}
var seed = int.Parse(positional[1], CultureInfo.InvariantCulture);
// The data file is named by the test's own image: opening it is the point.
var options = new Qcow2OpenOptions { ExternalFilePolicy = dataFile ? ExternalFilePolicy.AllowAll : ExternalFilePolicy.Deny };
using var image = Qcow2Image.Open(positional[0], options);
if (dataFile != (image.Info.DataFile is not null))
{
    Console.Error.WriteLine(dataFile ? "--data-file given, but the image has no data file" : "the image has a data file: pass --data-file");
    return 2;
}

if (threads == 0)
{
    var count = 0;
    foreach (var op in Workload.Ops(seed, image.Size, image.Info.ClusterSize))
    {
        RunSync(image, op);
        count++;
        if (op.Kind == WorkloadOpKind.Flush)
        {
            Console.Out.WriteLine($"flushed {count}");
            Console.Out.Flush();
        }
    }
    return 0;
}

long sequence = 0;
var output = new object();
void Report(int thread, int index, long start, long ack)
{
    lock (output)
    {
        Console.Out.WriteLine($"op {thread} {index} {start} {ack}");
        Console.Out.Flush();
    }
}

// All workers start together, so that the first operations already race.
using var go = new ManualResetEventSlim();
var workers = new List<Task>();
for (var t = 0; t < threads; t++)
{
    var thread = t;
    var ops = Workload.ThreadOps(seed, thread, threads, image.Size, image.Info.ClusterSize, compressed: !dataFile);
    if (thread % 2 == 0)
    {
        workers.Add(Task.Factory.StartNew(() =>
        {
            go.Wait();
            var index = 0;
            foreach (var op in ops)
            {
                var start = Interlocked.Increment(ref sequence);
                RunSync(image, op);
                Report(thread, index++, start, Interlocked.Increment(ref sequence));
            }
        }, TaskCreationOptions.LongRunning));
    }
    else
    {
        workers.Add(Task.Run(async () =>
        {
            go.Wait();
            var index = 0;
            foreach (var op in ops)
            {
                var start = Interlocked.Increment(ref sequence);
                await RunAsync(image, op);
                Report(thread, index++, start, Interlocked.Increment(ref sequence));
            }
        }));
    }
}
go.Set();
// The workloads are endless: this returns only when a worker fails.
var failed = await Task.WhenAny(workers);
Console.Error.WriteLine(failed.Exception);
return 1;

static void RunSync(Qcow2Image image, WorkloadOp op)
{
    switch (op.Kind)
    {
        case WorkloadOpKind.Write: image.Write(op.Offset, op.Data()); break;
        case WorkloadOpKind.WriteZeroes: image.WriteZeroes(op.Offset, op.Length); break;
        case WorkloadOpKind.Discard: image.Discard(op.Offset, op.Length); break;
        case WorkloadOpKind.Flush: image.Flush(); break;
        case WorkloadOpKind.WriteCompressed: image.WriteCompressed(op.Offset, op.Data()); break;
    }
}

static async ValueTask RunAsync(Qcow2Image image, WorkloadOp op)
{
    switch (op.Kind)
    {
        case WorkloadOpKind.Write: await image.WriteAsync(op.Offset, op.Data()); break;
        case WorkloadOpKind.WriteZeroes: image.WriteZeroes(op.Offset, op.Length); break;
        case WorkloadOpKind.Discard: image.Discard(op.Offset, op.Length); break;
        case WorkloadOpKind.Flush: await image.FlushAsync(); break;
        case WorkloadOpKind.WriteCompressed: await image.WriteCompressedAsync(op.Offset, op.Data()); break;
    }
}
