using Qcow2.Tests.Shared;
using Qcow2.Volume.Storage;

namespace Qcow2.Volume.Tests.Infra;

/// <summary>Random operation sequences on each storage against a flat byte-array model (fixed seed, replayable).</summary>
public sealed class StorageModelTests : IDisposable
{
    private const int Seed = 20261121;
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("file")]
    [InlineData("memory")]
    public void RandomOperations_BehaveLikeAFlatByteArray(string kind)
    {
        var rng = new Random(Seed);
        using IStorage s = kind == "file" ? FileStorage.Create(_dir.File("model.bin")) : new MemoryStorage();
        var model = new List<byte>();
        var log = new List<string>();
        for (int step = 0; step < 400; step++)
        {
            int op = rng.Next(10);
            // Offsets cluster around chunk boundaries so the chunked store's edges get exercised.
            long offset = rng.Next(3) == 0 ? MemoryStorage.ChunkSize * rng.Next(0, 5) + rng.Next(-3, 4) : rng.Next(0, 400_000);
            offset = Math.Max(0, offset);
            if (op < 5)
            {
                var data = new byte[rng.Next(0, 90_000)];
                rng.NextBytes(data);
                log.Add($"write {offset} {data.Length}");
                s.Write(offset, data);
                if (model.Count < offset + data.Length) model.AddRange(new byte[offset + data.Length - model.Count]);
                data.CopyTo(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(model).Slice((int)offset));
            }
            else if (op < 9)
            {
                var buf = new byte[rng.Next(0, 90_000)];
                buf.AsSpan().Fill(0xCC);
                log.Add($"read {offset} {buf.Length}");
                int n = s.Read(offset, buf);
                int expected = (int)Math.Clamp(model.Count - offset, 0, buf.Length);
                if (expected != n || (n > 0 && !buf.AsSpan(0, n).SequenceEqual(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(model).Slice((int)offset, n))))
                    Assert.Fail("read differs from the model after:\n" + string.Join("\n", log));
            }
            else
            {
                long length = rng.Next(0, 400_000);
                log.Add($"setlength {length}");
                s.SetLength(length);
                if (length < model.Count) model.RemoveRange((int)length, model.Count - (int)length);
                if (model.Count < length) model.AddRange(new byte[length - model.Count]);
            }
            if (model.Count != s.Length) Assert.Fail($"length {s.Length}, model {model.Count} after:\n" + string.Join("\n", log));
        }
    }
}
