using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Shared;

/// <summary>
/// A value, or the problem that stops it. A use case's gate (the I/O before the decision) returns one, and so does
/// the use case itself: every channel turns the problem into its own kind of error (a problem response, an MCP
/// tool error, an error next to the connect page's form).
/// </summary>
public sealed record Checked<T>(T? Value, ProblemDetails? Problem) where T : class
{
    public bool IsProblem => Problem is not null;

    public static implicit operator Checked<T>(T value) => new(value, null);
    public static implicit operator Checked<T>(ProblemDetails problem) => new(null, problem);
}
