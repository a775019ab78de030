using System.Text;

namespace Qcow2.Property.Tests.Commands;

/// <summary>
/// A generated test case: an image geometry (with its backing chain) and the guest commands run on it.
/// <see cref="ToString"/> prints it as a script, one command a line, as a failure report shows it.
/// </summary>
internal sealed class TestScript(ImageGeometry geometry, IReadOnlyList<DiskCommand> commands)
{
    public ImageGeometry Geometry { get; } = geometry;
    public IReadOnlyList<DiskCommand> Commands { get; } = commands;

    public long Weight => Geometry.Weight + Commands.Sum(c => 100 + c.Weight);

    public bool IsValid => Geometry.IsValid && Commands.All(c => c.IsValidFor(Geometry));

    public TestScript With(IReadOnlyList<DiskCommand> commands) => new(Geometry, commands);

    public TestScript With(ImageGeometry geometry) => new(geometry, Commands);

    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.AppendLine().AppendLine(Geometry.Describe());
        foreach (var c in Commands) sb.AppendLine(c.ToString());
        return sb.ToString();
    }
}
