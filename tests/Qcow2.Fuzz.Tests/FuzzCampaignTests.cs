using Qcow2.Fuzz;

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
    public void IsTyped_OnlyTheToolkitsBadImageErrors()
    {
        Assert.True(FuzzCampaign.IsTyped(new Qcow2.Spans.Qcow2CorruptImageException("x", 0, 0, "bad")));
        Assert.True(FuzzCampaign.IsTyped(new Qcow2.Spans.Qcow2UnsupportedImageException("x", "unsupported")));
        Assert.False(FuzzCampaign.IsTyped(new IndexOutOfRangeException()));
        Assert.False(FuzzCampaign.IsTyped(new ArgumentOutOfRangeException()));
        Assert.False(FuzzCampaign.IsTyped(new InvalidDataException()));
    }
}
