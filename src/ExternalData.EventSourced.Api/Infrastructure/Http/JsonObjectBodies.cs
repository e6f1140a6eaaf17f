using System.Text.Json;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>
/// The one place that decides what a request body may be (issue: a <c>null</c> body was a 500): every POST, PUT and
/// PATCH under <c>/api/</c> and <c>/connect/</c> takes a JSON object. Any other JSON value (<c>null</c>, an array, a number, a string, a
/// boolean) is refused with a 400 naming the body before routing; an empty body counts as <c>{}</c>, so action
/// endpoints can be called without one. An object with a property twice is refused too: which of the two values
/// counts would differ between readers (and JsonObject throws on the second). Other malformed JSON inside an object
/// is left to the deserialiser, which names the field.
/// </summary>
public static class JsonObjectBodies
{
    private static readonly byte[] EmptyObject = "{}"u8.ToArray();

    public static IApplicationBuilder UseJsonObjectBodies(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var request = context.Request;
        if (!HttpMethods.IsPost(request.Method) && !HttpMethods.IsPut(request.Method) && !HttpMethods.IsPatch(request.Method)
            || !request.Path.StartsWithSegments("/api", StringComparison.Ordinal) && !request.Path.StartsWithSegments("/connect", StringComparison.Ordinal))
        {
            await next(context);
            return;
        }

        request.EnableBuffering();
        var first = await FirstSignificantByteAsync(request.Body, context.RequestAborted);
        request.Body.Position = 0;
        if (first is null)
        {
            request.Body = new MemoryStream(EmptyObject);
            request.ContentLength = EmptyObject.Length;
            request.ContentType = "application/json";
        }
        else if (first != (byte)'{')
        {
            await Problems.WriteAsync(context, Describe(first.Value) is { } kind
                ? Problems.Validation($"The request body must be a JSON object, not {kind}.", null, "body_not_an_object")
                : Problems.Validation("The request body is not valid JSON.", null, "parse_error"));
            return;
        }

        else if (await DuplicatePropertyAsync(request.Body, context.RequestAborted))
        {
            await Problems.WriteAsync(context, Problems.Validation("The request body names a property more than once.", null, "duplicate_property"));
            return;
        }

        request.Body.Position = 0;
        await next(context);
    });

    private static readonly JsonDocumentOptions Strict = new() { AllowDuplicateProperties = false };
    private static readonly JsonDocumentOptions Lenient = new() { AllowDuplicateProperties = true };

    /// <summary>True when the body is valid JSON only once duplicate properties are allowed.</summary>
    private static async Task<bool> DuplicatePropertyAsync(Stream body, CancellationToken ct)
    {
        try
        {
            using var strict = await JsonDocument.ParseAsync(body, Strict, ct);
            return false;
        }
        catch (JsonException)
        {
            body.Position = 0;
            try
            {
                using var lenient = await JsonDocument.ParseAsync(body, Lenient, ct);
                return true;
            }
            catch (JsonException)
            {
                return false;
            }
        }
        finally
        {
            body.Position = 0;
        }
    }

    /// <summary>What JSON value a body starting with this byte is, or null when it cannot be JSON at all.</summary>
    private static string? Describe(byte first) => (char)first switch
    {
        'n' => "null",
        '[' => "an array",
        '"' => "a string",
        't' or 'f' => "a boolean",
        '-' or (>= '0' and <= '9') => "a number",
        _ => null,
    };

    /// <summary>The first byte that is not whitespace or a UTF-8 byte-order mark, or null for an empty body.</summary>
    private static async Task<byte?> FirstSignificantByteAsync(Stream body, CancellationToken ct)
    {
        var buffer = new byte[256];
        int read;
        while ((read = await body.ReadAsync(buffer, ct)) > 0)
        {
            for (var i = 0; i < read; i++)
            {
                var b = buffer[i];
                if (b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' or 0xEF or 0xBB or 0xBF) continue;
                return b;
            }
        }

        return null;
    }
}
