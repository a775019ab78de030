using System.Buffers.Binary;
using Qcow2.Fuzz;
using Qcow2.Spans;
using Qcow2.Volume;
using Qcow2.Volume.Check;
using Qcow2.Volume.Storage;

namespace Qcow2.Fuzz.Tests;

/// <summary>
/// A bounded fuzz campaign run in CI (the long campaign is `dotnet run --project fuzz/Qcow2.Fuzz`).
/// Fixed seed, so a failure replays.
/// </summary>
public class FuzzCampaignTests
{
    private const int Seed = 20261121;

    [Theory]
    [InlineData(FuzzTarget.OpenRead, 400)]
    [InlineData(FuzzTarget.Check, 150)]
    [InlineData(FuzzTarget.Write, 150)]
    [InlineData(FuzzTarget.Encrypted, 600)]
    public void Campaign_MutatedImages_OnlyTypedErrorsAndNoCorruptingWrites(FuzzTarget target, int iterations)
    {
        var report = FuzzCampaign.Run(new FuzzSettings
        {
            Seed = Seed,
            Iterations = iterations,
            Duration = TimeSpan.FromMinutes(2),
            Targets = [target],
        });

        Assert.True(report.Findings.Count == 0, report.ToString());
        Assert.Equal(iterations, report.Runs[target]);
        // The campaign must exercise both sides: inputs refused by validation and inputs accepted.
        Assert.True(report.Rejected[target] > 0, "no mutated input was refused: the mutations miss the metadata\n" + report);
        Assert.True(report.Accepted[target] > 0, "no mutated input was accepted: the seeds or mutations are broken\n" + report);
    }

    [Fact]
    public void Mutator_SameSeed_SameMutations()
    {
        var seed = SeedImages.Build([])[0].Bytes;
        var logA = new List<string>();
        var logB = new List<string>();
        var a = new Mutator(new Random(7)).Mutate(seed, logA);
        var b = new Mutator(new Random(7)).Mutate(seed, logB);
        Assert.Equal(a, b);
        Assert.Equal(logA, logB);
        Assert.NotEmpty(logA);
    }

    [Fact]
    public void Mutator_ManySeeds_NeverThrows()
    {
        // The mutator itself must cope with images it has already truncated or garbled.
        var seeds = SeedImages.Build([]);
        for (int seed = 0; seed < 2000; seed++)
        {
            var random = new Random(seed);
            var log = new List<string>();
            var image = seeds[random.Next(seeds.Count)].Bytes;
            for (int round = 0; round < 3; round++) image = new Mutator(random).Mutate(image, log);
        }
    }

    [Fact]
    public void SeedImages_AreValidAndCheckClean()
    {
        foreach (var seed in SeedImages.Build([]))
        {
            var outcome = FuzzCampaign.RunOne(FuzzTarget.Check, seed.Bytes, 1, new FuzzSettings());
            Assert.True(outcome.Kind == "accepted", $"{seed.Name}: {outcome.Kind} {outcome.Detail}");
        }
    }

    [Fact]
    public void MutateEncrypted_SameSeed_SameMutations()
    {
        var seed = SeedImages.BuildEncrypted()[0].Bytes;
        var logA = new List<string>();
        var logB = new List<string>();
        var a = new Mutator(new Random(11)).MutateEncrypted(seed, logA);
        var b = new Mutator(new Random(11)).MutateEncrypted(seed, logB);
        Assert.Equal(a, b);
        Assert.Equal(logA, logB);
        Assert.NotEmpty(logA);
    }

    [Fact]
    public void MutateEncrypted_ManySeeds_NeverThrowsAndReachesTheLuksFields()
    {
        var seeds = SeedImages.BuildEncrypted();
        var log = new List<string>();
        for (int seed = 0; seed < 600; seed++)
        {
            var random = new Random(seed);
            var image = seeds[random.Next(seeds.Count)].Bytes;
            for (int round = 0; round < 3; round++) image = new Mutator(random).MutateEncrypted(image, log);
        }

        // The structure-aware mutations name the fields they change: all kinds must show up.
        foreach (var expected in new[] { "LUKS header.", "LUKS key slot ", "crypto extension ", "key material of slot " })
            Assert.Contains(log, line => line.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void FindCryptoExtension_LuksSeeds_PointsAtTheLuksMagic()
    {
        foreach (var seed in SeedImages.BuildEncrypted())
        {
            int at = Mutator.FindCryptoExtension(seed.Bytes);
            if (seed.Name.StartsWith("aes", StringComparison.Ordinal))
            {
                Assert.Equal(-1, at); // legacy AES has no header region (qcow2 spec)
                continue;
            }

            Assert.True(at > 0, seed.Name);
            long luks = (long)BinaryPrimitives.ReadUInt64BigEndian(seed.Bytes.AsSpan(at));
            Assert.Equal(new byte[] { (byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xBA, 0xBE }, seed.Bytes.AsSpan((int)luks, 6).ToArray());
        }
    }

    [Fact]
    public void EncryptedSeeds_UnlockHoldThePatternAndCheckClean()
    {
        var seeds = SeedImages.BuildEncrypted();
        Assert.Equal(3, seeds.Count);
        foreach (var seed in seeds)
        {
            var expected = seed.Name.StartsWith("luks", StringComparison.Ordinal) ? CryptMethod.Luks : CryptMethod.Aes;
            using (var image = Qcow2Image.Open(new MemoryStorage(seed.Bytes, writable: false, "seed"), new Qcow2OpenOptions { ReadOnly = true, EncryptionSecret = seed.Secret }))
            {
                Assert.Equal(expected, image.Info.Encryption);
                int cluster = image.Info.ClusterSize;
                var data = new byte[3 * cluster];
                image.Read(0, data);
                for (int i = 0; i < data.Length; i++)
                {
                    // The second cluster was discarded: it reads as zeros.
                    byte want = i >= cluster && i < 2 * cluster ? (byte)0 : SeedImages.Pattern(i);
                    Assert.True(data[i] == want, $"{seed.Name}: byte {i} is {data[i]}, expected {want}");
                }
            }

            // No plaintext in the file: the pattern's first 64 bytes appear nowhere.
            var plain = Enumerable.Range(0, 64).Select(i => SeedImages.Pattern(i)).ToArray();
            Assert.True(seed.Bytes.AsSpan().IndexOf(plain) < 0, $"{seed.Name}: plaintext in the file");

            // Without the secret: metadata only.
            using (var keyless = Qcow2Image.Open(new MemoryStorage(seed.Bytes, writable: false, "seed"), new Qcow2OpenOptions { ReadOnly = true }))
            {
                Assert.Throws<Qcow2UnsupportedImageException>(() => keyless.Read(0, new byte[512]));
            }

            var check = Qcow2Checker.Check(new MemoryStorage(seed.Bytes, writable: false, "seed"), CheckOptions.ReadOnly);
            Assert.True(check.IsClean, $"{seed.Name}: {check.Corruptions} corruptions, {check.Leaks} leaks");
            var outcome = FuzzCampaign.RunOne(FuzzTarget.Encrypted, seed.Bytes, 1, new FuzzSettings(), seed.Secret);
            Assert.True(outcome.Kind == "accepted", $"{seed.Name}: {outcome.Kind} {outcome.Detail}");
        }
    }

    [Fact]
    public void RunOne_EncryptedWithWrongSecret_RefusedWithTheKeyError()
    {
        var seed = SeedImages.BuildEncrypted()[0];
        var outcome = FuzzCampaign.RunOne(FuzzTarget.Encrypted, seed.Bytes, 1, new FuzzSettings(), "wrong"u8.ToArray());
        Assert.Equal("rejected", outcome.Kind);
        Assert.Contains("Qcow2KeyException", outcome.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void IsTyped_OnlyTheToolkitsBadImageErrors()
    {
        Assert.True(FuzzCampaign.IsTyped(new Qcow2.Spans.Qcow2CorruptImageException("x", 0, 0, "bad")));
        Assert.True(FuzzCampaign.IsTyped(new Qcow2.Spans.Qcow2UnsupportedImageException("x", "unsupported")));
        Assert.False(FuzzCampaign.IsTyped(new IndexOutOfRangeException()));
        Assert.False(FuzzCampaign.IsTyped(new ArgumentOutOfRangeException()));
        Assert.False(FuzzCampaign.IsTyped(new InvalidDataException()));
    }
}
