using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Sources;

/// <summary>The outcome of a command's gate (the I/O before the decision): a value, or the problem that stops it.</summary>
public sealed record Checked<T>(T? Value, ProblemDetails? Problem) where T : class
{
    public static implicit operator Checked<T>(T value) => new(value, null);
    public static implicit operator Checked<T>(ProblemDetails problem) => new(null, problem);
}
