using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using ExternalData.EventSourced.SourceTypes.Sync;
using Stripe;

namespace ExternalData.EventSourced.SourceTypes.Stripe;

/// <summary>Stripe's tables read object by object through Stripe.net (SYNC.md §3.5): list endpoints newest first with
/// <c>starting_after</c> and <c>created[...]</c>, the Events API for updates and deletions, and deliveries' events.</summary>
public sealed partial class StripeSourceType : IObjectSource
{
    public IObjectRead OpenObjects(JsonObject config, string table)
    {
        var stripeTable = StripeTables.All.FirstOrDefault(t => t.Name == table)
            ?? throw new SourceReadException($"Stripe has no table '{table}'. Refresh the source's schemas.", false, "table_missing");
        var key = ConfigSchema.Lookup(config, "auth_method.stripe_secret_key") ?? "";
        var account = ConfigSchema.Lookup(config, "stripe_account_id") is { Length: > 0 } a ? a : null;
        var apiBase = options.CurrentValue.ApiBase;
        // Stripe.net's own retries are off: a 429 waits at the account's gate, which every run of the account shares.
        var client = new StripeClient(new StripeClientOptions
        {
            ApiKey = key, ApiBase = apiBase, StripeAccount = account,
            HttpClient = new SystemNetHttpClient(SharedHttp, maxNetworkRetries: 0),
        });
        var gate = Gates.GetOrAdd(GateKey(apiBase, key, account), _ => new StripeRateGate());
        return new StripeObjectRead(client, stripeTable, ChangeTypesFor(stripeTable), gate, options.CurrentValue);
    }

    public ObjectChange? ChangeOf(string deliveryBody)
    {
        try
        {
            return JsonNode.Parse(deliveryBody) is JsonObject e ? ChangeFromEvent(e) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The event types that say an object of <paramref name="table"/> was created, updated or deleted; empty when
    /// Stripe sends none for it (its route's events are about another object, as BalanceTransaction's are).</summary>
    internal static IReadOnlyList<string> ChangeTypesFor(StripeTable table)
    {
        if (table.WebhookOnly || table.ListPath is null || table.Cursor != "created" || !Routes.TryGetValue(table.Name, out var route)) return [];
        if (route.EventPrefix.Split('.')[^1] != route.ObjectType.Split('.')[^1]) return [];
        var types = new[] { "created", "updated", "deleted" }.Select(verb => $"{route.EventPrefix}.{verb}").Where(KnownEvents.Contains).ToList();
        return types.Any(t => t.EndsWith(".updated", StringComparison.Ordinal)) ? types : [];
    }

    internal static ObjectChange? ChangeFromEvent(JsonObject e)
    {
        if (e["data"]?["object"] is not JsonObject obj || obj["id"]?.GetValueKind() != JsonValueKind.String) return null;
        var type = e["type"]?.GetValue<string>() ?? "";
        var created = e["created"]?.GetValueKind() == JsonValueKind.Number ? e["created"]!.GetValue<long>() : 0;
        var deleted = type.EndsWith(".deleted", StringComparison.Ordinal) || obj["deleted"]?.GetValueKind() == JsonValueKind.True;
        var state = (JsonObject)obj.DeepClone();
        state.Remove("deleted");
        return new ObjectChange(obj["id"]!.GetValue<string>(), e["id"]?.GetValue<string>() ?? "", created, state, deleted);
    }

    private static readonly HttpClient SharedHttp = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
    {
        Timeout = TimeSpan.FromSeconds(80),
    };

    private static readonly ConcurrentDictionary<string, StripeRateGate> Gates = new();

    /// <summary>One gate per account and key, never the key itself as a dictionary key in memory dumps.</summary>
    private static string GateKey(string apiBase, string key, string? account) =>
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{apiBase}\n{key}\n{account}")));
}

/// <summary>
/// What a Stripe account's runs share: a few requests in flight at a time, and a pause every one of them honours once
/// Stripe says 429 (for its <c>Retry-After</c>, else a growing back-off). Stripe's limits are per account, so one run's
/// 429 slows its siblings too instead of each finding the limit for itself.
/// </summary>
internal sealed class StripeRateGate
{
    private readonly SemaphoreSlim _slots = new(4, 4);
    private long _resumeAtTicks;

    public async Task<IDisposable> EnterAsync(CancellationToken ct)
    {
        await _slots.WaitAsync(ct);
        try
        {
            while (Interlocked.Read(ref _resumeAtTicks) - DateTime.UtcNow.Ticks is > 0 and var wait)
                await Task.Delay(TimeSpan.FromTicks(wait), ct);
        }
        catch
        {
            _slots.Release();
            throw;
        }

        return new Slot(_slots);
    }

    public void PauseFor(TimeSpan wait)
    {
        var until = DateTime.UtcNow.Add(wait).Ticks;
        long seen;
        do seen = Interlocked.Read(ref _resumeAtTicks);
        while (until > seen && Interlocked.CompareExchange(ref _resumeAtTicks, until, seen) != seen);
    }

    private sealed class Slot(SemaphoreSlim slots) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) slots.Release();
        }
    }
}

internal sealed class StripeObjectRead(StripeClient client, StripeTable table, IReadOnlyList<string> changeTypes, StripeRateGate gate, StripeOptions options) : IObjectRead
{
    public bool Listable => table.ListPath is not null && !table.WebhookOnly;

    public bool HasChangeLog => changeTypes.Count > 0;

    /// <summary>Stripe keeps events for 30 days (docs.stripe.com/api/events).</summary>
    public TimeSpan ChangeLogWindow => TimeSpan.FromDays(30);

    public async Task<ObjectPage> ListAsync(ObjectQuery query, CancellationToken ct)
    {
        var parameters = new List<string> { $"limit={Math.Clamp(query.Limit, 1, 100)}" };
        if (query.CreatedFrom is { } from) parameters.Add($"created[gte]={from}");
        if (query.CreatedTo is { } to) parameters.Add($"created[lte]={to}");
        if (query.StartingAfter is { } after) parameters.Add($"starting_after={Uri.EscapeDataString(after)}");
        JsonObject list;
        DateTimeOffset? date;
        try
        {
            (list, date) = await GetAsync($"{table.ListPath}?{string.Join('&', parameters)}", ct);
        }
        catch (SourceReadException e) when (e.ErrorClass == CursorGone && query.StartingAfter is not null)
        {
            // The object a resumed list went on after was deleted since: list its second again instead (merged by id).
            return await ListAsync(query with { StartingAfter = null }, ct);
        }

        // Taken out of the parsed page (not copied): each object is then a node of its own.
        var data = list["data"] as JsonArray ?? [];
        var objects = data.OfType<JsonObject>().ToList();
        data.Clear();
        return new ObjectPage(objects, list["has_more"]?.GetValueKind() == JsonValueKind.True, date);
    }

    public async Task<ChangePage> ChangesAsync(long since, string? startingAfter, int limit, CancellationToken ct)
    {
        var parameters = new List<string> { $"limit={Math.Clamp(limit, 1, 100)}", $"created[gte]={since}" };
        parameters.AddRange(changeTypes.Select(t => $"types[]={Uri.EscapeDataString(t)}"));
        if (startingAfter is not null) parameters.Add($"starting_after={Uri.EscapeDataString(startingAfter)}");
        var (list, _) = await GetAsync($"/v1/events?{string.Join('&', parameters)}", ct);
        var events = (list["data"] as JsonArray ?? []).OfType<JsonObject>().ToList();
        var changes = events.Select(StripeSourceType.ChangeFromEvent).OfType<ObjectChange>().ToList();
        return new ChangePage(changes, list["has_more"]?.GetValueKind() == JsonValueKind.True, events.LastOrDefault()?["id"]?.GetValue<string>());
    }

    public async Task<DateTimeOffset> ServerTimeAsync(CancellationToken ct)
    {
        var path = table.ListPath is not null && !table.WebhookOnly ? $"{table.ListPath}?limit=1" : "/v1/events?limit=1";
        var (_, date) = await GetAsync(path, ct);
        return date ?? DateTimeOffset.UtcNow;
    }

    /// <summary>Unix timestamps are <c>timestamptz</c> (Stripe's are integers named <c>created</c>, <c>date</c>, <c>*_at</c>,
    /// period bounds and the like); amounts and counts <c>bigint</c>; nested objects and lists <c>jsonb</c>.</summary>
    public string WarehouseTypeOf(string field, JsonNode value) => value.GetValueKind() switch
    {
        JsonValueKind.String => "text",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Number when value.AsValue().TryGetValue<long>(out _) => IsTimestamp(field) ? "timestamp with time zone" : "bigint",
        JsonValueKind.Number => "numeric",
        _ => "jsonb",
    };

    private static readonly HashSet<string> TimestampNames =
        ["created", "date", "start", "end", "available_on", "arrival_date", "billing_cycle_anchor", "next_payment_attempt", "webhooks_delivered_at"];

    private static bool IsTimestamp(string field) => TimestampNames.Contains(field)
        || field.EndsWith("_at", StringComparison.Ordinal) || field.EndsWith("_date", StringComparison.Ordinal)
        || field.EndsWith("_start", StringComparison.Ordinal) || field.EndsWith("_end", StringComparison.Ordinal);

    private async Task<(JsonObject Body, DateTimeOffset? Date)> GetAsync(string path, CancellationToken ct)
    {
        for (var throttled = 0; ; )
        {
            using (await gate.EnterAsync(ct))
            {
                try
                {
                    var response = await client.RawRequestAsync(HttpMethod.Get, path, cancellationToken: ct);
                    return (JsonNode.Parse(response.Content) as JsonObject ?? [], response.Date);
                }
                catch (StripeException e) when (e.HttpStatusCode == HttpStatusCode.TooManyRequests || ShouldRetry(e))
                {
                    if (++throttled > options.RateLimitedTries)
                        throw new SourceReadException($"Stripe kept refusing requests for this account as too many ({throttled - 1} times in a row).", true, "rate_limited");
                    gate.PauseFor(RetryAfter(e) ?? TimeSpan.FromMilliseconds(Math.Min(30_000, 250 * Math.Pow(2, Math.Min(throttled, 8)))));
                }
                catch (StripeException e)
                {
                    throw Unreadable(e);
                }
                catch (HttpRequestException)
                {
                    throw new SourceReadException("Could not reach Stripe.", true, "connection_lost");
                }
                catch (TaskCanceledException) when (!ct.IsCancellationRequested)
                {
                    throw new SourceReadException("Stripe did not answer in time.", true, "timeout");
                }
            }
        }
    }

    private static bool ShouldRetry(StripeException e) =>
        e.StripeResponse?.Headers is { } headers && headers.TryGetValues("Stripe-Should-Retry", out var values) && values.Contains("true");

    private static TimeSpan? RetryAfter(StripeException e)
    {
        TimeSpan? wait = e.StripeResponse?.Headers?.RetryAfter switch
        {
            { Delta: { } delta } => delta,
            { Date: { } at } => at - DateTimeOffset.UtcNow,
            _ => null,
        };
        return wait is null ? null : TimeSpan.FromTicks(Math.Clamp(wait.Value.Ticks, 0, TimeSpan.FromMinutes(2).Ticks));
    }

    private const string CursorGone = "cursor_gone";

    /// <summary>Stripe's own message is never repeated: it quotes part of the key.</summary>
    private SourceReadException Unreadable(StripeException e) => e.HttpStatusCode switch
    {
        _ when e.StripeError?.Code == "resource_missing" && e.StripeError?.Param == "starting_after" =>
            new SourceReadException("The object a list went on after is gone.", false, CursorGone),
        HttpStatusCode.Unauthorized => new SourceReadException(
            "Stripe rejected the API key. Check that it is a live or test secret key or restricted key, and that it has not been rolled, then update the source's credentials and enable the schema again.",
            false, "invalid_credentials"),
        HttpStatusCode.Forbidden => new SourceReadException(
            $"Stripe credentials lack permissions for {table.Name}. Give the restricted key read access to {table.PermissionHint}, then enable the schema again.", false, "permission_denied"),
        HttpStatusCode.NotFound => new SourceReadException($"Stripe has no list of {table.Name} for this account. Check the account id, or disable the schema.", false, "table_missing"),
        >= HttpStatusCode.InternalServerError => new SourceReadException($"Stripe answered {(int)e.HttpStatusCode}.", true, "source_unavailable"),
        _ => new SourceReadException(string.Create(CultureInfo.InvariantCulture, $"Stripe refused to list {table.Name} ({(int)e.HttpStatusCode})."), false, "stripe_error"),
    };
}
