namespace Qcow2.Property.Tests.Runner;

/// <summary>
/// What the model-based runner drives: the guest view of one open image. The qcow2 adapter wraps
/// <c>Qcow2Image</c>; the runner's own tests use a plain array with injected bugs.
/// </summary>
internal interface IGuestDisk : IDisposable
{
    long Size { get; }

    void Read(long offset, Span<byte> destination);

    void Write(long offset, ReadOnlySpan<byte> source);

    void WriteZeroes(long offset, long length, bool unmap);

    void Discard(long offset, long length);

    void WriteCompressed(long offset, ReadOnlySpan<byte> source);

    void Flush();
}

/// <summary>
/// One test case's image: created from the geometry (with its backing chain) on the first
/// <see cref="Open"/>, reopened by later calls, and checked by <see cref="FinalChecks"/> once closed.
/// </summary>
internal interface IDiskHarness : IDisposable
{
    IGuestDisk Open();

    /// <summary>Runs the end-of-case checks (checkers, foreign readers) against the settled model; throws on failure.</summary>
    void FinalChecks(Model.ReferenceDisk model);
}
