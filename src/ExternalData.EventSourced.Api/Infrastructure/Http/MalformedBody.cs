using System.Text.RegularExpressions;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>Turns a JSON deserialisation failure into a caller-facing text: the field, never our type names.</summary>
public static partial class MalformedBody
{
    [GeneratedRegex(@"Path: \$\.?(?<path>[^\s|]*)")]
    private static partial Regex JsonPath();

    public static (string? Attr, string Detail) Describe(string exceptionText)
    {
        var path = JsonPath().Match(exceptionText).Groups["path"].Value;
        return path.Length > 0
            ? (path, $"Invalid value for '{path}': the request body is not valid JSON there, or the value has the wrong type.")
            : (null, "The request body is not valid JSON.");
    }
}
