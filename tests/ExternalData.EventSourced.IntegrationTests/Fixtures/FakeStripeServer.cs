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
    public const string NoWebhooksKey = "rk_test_no_webhooks_0003";
    /// <summary>Stripe's list pages hold up to 100; this server's hold 3, so a client that does not follow
    /// <c>has_more</c> misses endpoints.</summary>
    public const int PageSize = 3;

    private readonly ConcurrentDictionary<string, WebhookEndpointRecord> _endpoints = new();
    private long _sequence;

    /// <summary>A webhook endpoint as this Stripe holds it (the secret is returned by the API only at creation).</summary>
    public sealed record WebhookEndpointRecord(string Id, string Url, IReadOnlyList<string> EnabledEvents, string? Description, string Secret, long Created, long Order);

    public IReadOnlyCollection<WebhookEndpointRecord> Endpoints => _endpoints.Values.OrderBy(e => e.Order).ToList();

    /// <summary>An endpoint made at Stripe by someone else (say, a previous install whose secret we lost).</summary>
    public WebhookEndpointRecord AddEndpoint(string url, params string[] events) => Store(url, events, "made by hand");

    private WebhookEndpointRecord Store(string url, IReadOnlyList<string> events, string? description)
    {
        var order = Interlocked.Increment(ref _sequence);
        var record = new WebhookEndpointRecord($"we_{order:D4}{Guid.NewGuid():N}"[..24], url, events, description,
            $"whsec_{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24))}", DateTimeOffset.UtcNow.ToUnixTimeSeconds(), order);
        _endpoints[record.Id] = record;
        return record;
    }

    /// <summary>Signs a delivery exactly as Stripe does (Stripe.net's own helper: <c>t=…,v1=HMAC-SHA256(secret, "t.body")</c>).</summary>
    public static string Sign(string body, string secret, DateTimeOffset? at = null) =>
        Stripe.EventUtility.GenerateSignatureHeader(body, secret, (at ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds());

    /// <summary>A Stripe event as Stripe sends it: <c>{id, object: "event", type, data: {object: {...}}}</c>.</summary>
    public static string Event(string id, string type, string objectType, string objectId = "obj_1") =>
        new System.Text.Json.Nodes.JsonObject
        {
            ["id"] = id, ["object"] = "event", ["api_version"] = "2024-09-30.acacia", ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), ["type"] = type,
            ["livemode"] = false, ["data"] = new System.Text.Json.Nodes.JsonObject { ["object"] = new System.Text.Json.Nodes.JsonObject { ["id"] = objectId, ["object"] = objectType } },
        }.ToJsonString();

    private readonly ConcurrentDictionary<string, HashSet<string>> _deniedPathsByKey = new();
    private readonly ConcurrentDictionary<string, FakeStripeAccount> _accounts = new();
    private readonly FakeStripeAccount _shared = new();

    /// <summary>A Stripe account of its own behind a new full-access key: its objects, events, clock and rate limit are
    /// this test's alone.</summary>
    public (string Key, FakeStripeAccount Account) NewAccount()
    {
        var key = $"rk_test_{Guid.NewGuid():N}";
        RegisterKey(key);
        return (key, _accounts[key] = new FakeStripeAccount());
    }
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
        server.RegisterKey(NoWebhooksKey, "/v1/webhook_endpoints");

        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        server._app = builder.Build();
        server._app.MapGet("/v1/{**path}", server.HandleAsync);
        server._app.MapPost("/v1/{**path}", server.HandleAsync);
        server._app.MapDelete("/v1/{**path}", server.HandleAsync);
        await server._app.StartAsync();
        server.ApiBase = server._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return server;
    }

    /// <summary>How long a DELETE takes to answer: a clean-up can then be caught in flight by a crash.</summary>
    public TimeSpan DeleteDelay { get; set; }

    private async Task HandleAsync(HttpContext context)
    {
        var path = context.Request.Path.Value!;
        if (HttpMethods.IsDelete(context.Request.Method) && DeleteDelay > TimeSpan.Zero) await Task.Delay(DeleteDelay);
        Requests.Enqueue((path, context.Request.Headers["Stripe-Account"].FirstOrDefault()));
        var auth = context.Request.Headers.Authorization.ToString();
        var key = auth.StartsWith("Bearer ", StringComparison.Ordinal) ? auth[7..] : "";
        var account = _accounts.GetValueOrDefault(key) ?? _shared;
        context.Response.Headers.Date = account.Now.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (await account.ThrottledAsync(context)) return;
        if (account.Revoked) key = "";
        if (!_deniedPathsByKey.TryGetValue(key, out var denied))
        {
            await ErrorAsync(context, HttpStatusCode.Unauthorized, $"Invalid API Key provided: {Mask(key)}", "invalid_request_error");
            return;
        }

        if (denied.Contains(path) || denied.Any(d => path.StartsWith(d + "/", StringComparison.Ordinal)))
        {
            var permission = $"rak_{path.Split('/').Last().TrimEnd('s')}_read";
            await ErrorAsync(context, HttpStatusCode.Forbidden,
                $"The provided key '{Mask(key)}' does not have the required permissions for this endpoint on account 'acct_1Fake'. " +
                $"Having the '{permission}' permission would allow this request to continue.", "invalid_request_error");
            return;
        }

        if (path == "/v1/webhook_endpoints" || path.StartsWith("/v1/webhook_endpoints/", StringComparison.Ordinal))
        {
            await WebhookEndpointsAsync(context, path);
            return;
        }

        if (path == "/v1/account")
        {
            await context.Response.WriteAsJsonAsync(new { id = "acct_1Fake", @object = "account", country = "US", default_currency = "usd" });
            return;
        }

        if (path == "/v1/events")
        {
            await ListAnswerAsync(context, account.ListEvents(context.Request.Query));
            return;
        }

        if (StripeTables.All.FirstOrDefault(t => t.ListPath == path) is { } table)
        {
            await account.BeforeListAsync(context.Request.Query);
            await ListAnswerAsync(context, account.List(table.Name, path, context.Request.Query));
            return;
        }

        await ErrorAsync(context, HttpStatusCode.NotFound, $"Unrecognized request URL (GET: {path}).", "invalid_request_error");
    }

    /// <summary>A list page, or Stripe's answer to a <c>starting_after</c> naming an object that does not exist (any more).</summary>
    private static async Task ListAnswerAsync(HttpContext context, string? page)
    {
        if (page is null)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            await context.Response.WriteAsJsonAsync(new
            {
                error = new { message = $"No such object: '{context.Request.Query["starting_after"]}'", type = "invalid_request_error", code = "resource_missing", param = "starting_after" },
            });
            return;
        }

        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(page, context.RequestAborted);
    }

    /// <summary>Stripe's webhook_endpoints resource: create (form-encoded, the secret in this answer only), list
    /// (paged with <c>starting_after</c> and <c>has_more</c>), update, delete.</summary>
    private async Task WebhookEndpointsAsync(HttpContext context, string path)
    {
        var id = path.Length > "/v1/webhook_endpoints/".Length ? path["/v1/webhook_endpoints/".Length..] : null;
        var method = context.Request.Method;
        if (id is null && method == "POST")
        {
            var form = await context.Request.ReadFormAsync();
            var url = form["url"].ToString();
            if (url.Length == 0)
            {
                await ErrorAsync(context, HttpStatusCode.BadRequest, "Missing required param: url.", "invalid_request_error");
                return;
            }

            var created = Store(url, EventsOf(form), form["description"].FirstOrDefault());
            await context.Response.WriteAsJsonAsync(Shape(created, withSecret: true));
            return;
        }

        if (id is null && method == "GET")
        {
            var limit = Math.Min(PageSize, int.TryParse(context.Request.Query["limit"], out var l) ? l : 10);
            var all = Endpoints.OrderByDescending(e => e.Order).ToList();
            var after = context.Request.Query["starting_after"].FirstOrDefault();
            var start = after is null ? 0 : all.FindIndex(e => e.Id == after) + 1;
            var page = all.Skip(start).Take(limit).ToList();
            await context.Response.WriteAsJsonAsync(new
            {
                @object = "list", url = "/v1/webhook_endpoints", has_more = start + page.Count < all.Count, data = page.Select(e => Shape(e, withSecret: false)),
            });
            return;
        }

        if (id is null || !_endpoints.TryGetValue(id, out var endpoint))
        {
            await ErrorAsync(context, HttpStatusCode.NotFound, $"No such webhook endpoint: '{id}'", "invalid_request_error");
            return;
        }

        switch (method)
        {
            case "GET":
                await context.Response.WriteAsJsonAsync(Shape(endpoint, withSecret: false));
                return;
            case "DELETE":
                _endpoints.TryRemove(id, out _);
                await context.Response.WriteAsJsonAsync(new { id, @object = "webhook_endpoint", deleted = true });
                return;
            default:
                var form = await context.Request.ReadFormAsync();
                var events = EventsOf(form);
                var updated = endpoint with { EnabledEvents = events.Count > 0 ? events : endpoint.EnabledEvents };
                _endpoints[id] = updated;
                await context.Response.WriteAsJsonAsync(Shape(updated, withSecret: false));
                return;
        }
    }

    private static List<string> EventsOf(IFormCollection form) =>
        form.Where(kv => kv.Key.StartsWith("enabled_events[", StringComparison.Ordinal)).OrderBy(kv => int.Parse(kv.Key[15..^1])).Select(kv => kv.Value.ToString()).ToList();

    private static Dictionary<string, object?> Shape(WebhookEndpointRecord e, bool withSecret)
    {
        var shape = new Dictionary<string, object?>
        {
            ["id"] = e.Id, ["object"] = "webhook_endpoint", ["url"] = e.Url, ["enabled_events"] = e.EnabledEvents, ["status"] = "enabled",
            ["description"] = e.Description, ["created"] = e.Created, ["livemode"] = false, ["api_version"] = null, ["metadata"] = new Dictionary<string, string>(),
        };
        if (withSecret) shape["secret"] = e.Secret;
        return shape;
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
