using System.Collections.Concurrent;
using System.Net;
using ExternalData.EventSourced.SourceTypes.Stripe;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>
/// Stripe's servers are the one part outside this machine, so the tests run a local HTTP server that speaks
/// Stripe's REST protocol (bearer keys, list objects with data/has_more, Stripe's error object and status codes,
/// restricted keys missing a permission). The service talks to it through the real Stripe.net client.
/// </summary>
public sealed class FakeStripeServer : IAsyncDisposable
{
    public const string FullKey = "rk_test_full_access_0001";
    public const string NoChargesKey = "rk_test_no_charges_0002";

    private readonly ConcurrentDictionary<string, HashSet<string>> _deniedPathsByKey = new();
    private WebApplication _app = null!;

    public string ApiBase { get; private set; } = "";
    public ConcurrentQueue<(string Path, string? Account)> Requests { get; } = new();

    /// <summary>Makes a key valid; requests by it to <paramref name="deniedPaths"/> answer 403 as a restricted key does.</summary>
    public void RegisterKey(string key, params string[] deniedPaths) => _deniedPathsByKey[key] = [.. deniedPaths];

    public static async Task<FakeStripeServer> StartAsync()
    {
        var server = new FakeStripeServer();
        server.RegisterKey(FullKey);
        server.RegisterKey(NoChargesKey, "/v1/charges");

        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        server._app = builder.Build();
        server._app.MapGet("/v1/{**path}", server.HandleAsync);
        await server._app.StartAsync();
        server.ApiBase = server._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return server;
    }

    private async Task HandleAsync(HttpContext context)
    {
        var path = context.Request.Path.Value!;
        Requests.Enqueue((path, context.Request.Headers["Stripe-Account"].FirstOrDefault()));
        var auth = context.Request.Headers.Authorization.ToString();
        var key = auth.StartsWith("Bearer ", StringComparison.Ordinal) ? auth[7..] : "";
        if (!_deniedPathsByKey.TryGetValue(key, out var denied))
        {
            await ErrorAsync(context, HttpStatusCode.Unauthorized, $"Invalid API Key provided: {Mask(key)}", "invalid_request_error");
            return;
        }

        if (denied.Contains(path))
        {
            var permission = $"rak_{path.Split('/').Last().TrimEnd('s')}_read";
            await ErrorAsync(context, HttpStatusCode.Forbidden,
                $"The provided key '{Mask(key)}' does not have the required permissions for this endpoint on account 'acct_1Fake'. " +
                $"Having the '{permission}' permission would allow this request to continue.", "invalid_request_error");
            return;
        }

        if (path == "/v1/account")
        {
            await context.Response.WriteAsJsonAsync(new { id = "acct_1Fake", @object = "account", country = "US", default_currency = "usd" });
            return;
        }

        if (StripeTables.All.Any(t => t.ListPath == path))
        {
            await context.Response.WriteAsJsonAsync(new { @object = "list", data = Array.Empty<object>(), has_more = false, url = path });
            return;
        }

        await ErrorAsync(context, HttpStatusCode.NotFound, $"Unrecognized request URL (GET: {path}).", "invalid_request_error");
    }

    // Stripe shows the last four characters of a key in its messages, as here.
    private static string Mask(string key) => key.Length > 8 ? $"{key[..8]}***{key[^4..]}" : "***";

    private static Task ErrorAsync(HttpContext context, HttpStatusCode status, string message, string type)
    {
        context.Response.StatusCode = (int)status;
        context.Response.Headers["Request-Id"] = $"req_{Guid.NewGuid():N}";
        return context.Response.WriteAsJsonAsync(new { error = new { message, type } });
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
