namespace System.Runtime.CompilerServices;

// netstandard2.0 lacks the marker type that init accessors (and so records) need.
internal static class IsExternalInit
{
}
