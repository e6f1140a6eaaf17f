using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;

namespace ExternalData.EventSourced.Mcp;

/// <summary>
/// The MCP SDK reads some request params (initialize's, for one) with a deserializer that throws on a malformed
/// message instead of answering a JSON-RPC error, which would surface as a 500. A malformed message is the client's
/// error: it gets JSON-RPC's "Invalid params" (-32602) with HTTP 400, the shape the streamable HTTP transport uses
/// for its own refusals. The text stays generic: the exception's names our and the SDK's types.
/// </summary>
public sealed class McpMalformedRequestHandler : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken ct)
    {
        if (!context.Request.Path.StartsWithSegments("/mcp") || context.Response.HasStarted) return false;
        if (exception is not JsonException && exception.InnerException is not JsonException) return false;
        context.Response.StatusCode = StatusCodes.Status400BadRequest;
        await context.Response.WriteAsJsonAsync(new
        {
            jsonrpc = "2.0",
            id = (object?)null,
            error = new { code = -32602, message = "Invalid params: the request's params do not match the method's schema." },
        }, ct);
        return true;
    }
}
