using System.Globalization;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Stripe;
using Microsoft.AspNetCore.Http;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>
/// One account of the suite's Stripe: objects per table and the events their changes make, listed as Stripe lists them
/// (newest first; <c>limit</c> up to 100, <c>starting_after</c>, <c>ending_before</c>, <c>created[gt|gte|lt|lte]</c>,
/// <c>has_more</c>; <c>/v1/events</c> with <c>type</c>, <c>types[]</c> and the 30-day window), on a clock the test can move,
/// with a 429 mode and a key that can be revoked.
/// </summary>
public sealed class FakeStripeAccount
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, List<JsonObject>> _tables = new();
    private readonly List<JsonObject> _events = [];
    private long _sequence;
    private int _throttle;
    private int _retryAfterSeconds;
    private int _throttled;
    private int _lists;

    /// <summary>The account's clock (Stripe's, as its <c>Date</c> header and <c>created</c> fields tell it).</summary>
    public DateTimeOffset Now => DateTimeOffset.UtcNow + ClockOffset;
    public TimeSpan ClockOffset { get; set; }
    public bool Revoked { get; set; }
    public int Throttled => _throttled;
    /// <summary>Pages listed: list requests for more than one object (a one-object list is a probe, or a look at the clock),
    /// counted before anything is answered.</summary>
    public int Pages => _lists;
    /// <summary>Called with each page request's number before it is answered (a test kills a node there).</summary>
    public Func<int, Task>? OnPage { get; set; }

    private static readonly Dictionary<string, (string Prefix, string Object)> Kinds = new()
    {
        ["Customer"] = ("cus", "customer"), ["Charge"] = ("ch", "charge"), ["Invoice"] = ("in", "invoice"), ["Product"] = ("prod", "product"),
        ["Discount"] = ("di", "discount"),
    };

    private static string EventPrefixOf(string table) => Kinds[table].Object;

    /// <summary><paramref name="count"/> objects created one second apart, the last <paramref name="newestAgo"/> before now.</summary>
    public IReadOnlyList<JsonObject> Seed(string table, int count, TimeSpan? newestAgo = null)
    {
        var newest = (Now - (newestAgo ?? TimeSpan.FromMinutes(1))).ToUnixTimeSeconds();
        var made = new List<JsonObject>();
        lock (_lock)
        {
            var list = _tables.TryGetValue(table, out var existing) ? existing : _tables[table] = [];
            for (var n = 0; n < count; n++) made.Add(Make(table, newest - (count - 1 - n)));
            list.AddRange(made);
            _version++;
        }

        return made;
    }

    /// <summary>A new object made now, with its <c>*.created</c> event.</summary>
    public JsonObject Create(string table, Action<JsonObject>? shape = null)
    {
        lock (_lock)
        {
            var made = Make(table, Now.ToUnixTimeSeconds());
            shape?.Invoke(made);
            (_tables.TryGetValue(table, out var list) ? list : _tables[table] = []).Add(made);
            _version++;
            AddEvent($"{EventPrefixOf(table)}.created", made);
            return made;
        }
    }

    private JsonObject Make(string table, long created)
    {
        var n = Interlocked.Increment(ref _sequence);
        var (prefix, kind) = Kinds[table];
        return new JsonObject
        {
            ["id"] = $"{prefix}_{n:D8}", ["object"] = kind, ["created"] = created, ["livemode"] = false,
            ["email"] = $"person{n}@example.com", ["name"] = $"Person {n}", ["balance"] = n * 100, ["delinquent"] = false,
            ["address"] = new JsonObject { ["city"] = "Lisbon", ["country"] = "PT" }, ["metadata"] = new JsonObject { ["n"] = n.ToString(CultureInfo.InvariantCulture) },
            ["preferred_locales"] = new JsonArray("en"), ["description"] = null,
        };
    }

    /// <summary>Changes an object as the dashboard would; Stripe records a <c>*.updated</c> event with its new state.</summary>
    public void Update(string table, string id, Action<JsonObject> change)
    {
        lock (_lock)
        {
            var found = _tables[table].Single(o => o["id"]!.GetValue<string>() == id);
            change(found);
            _version++;
            AddEvent($"{EventPrefixOf(table)}.updated", found);
        }
    }

    /// <summary>Deletes an object: gone from its list, a <c>*.deleted</c> event carries its last state.</summary>
    public void Delete(string table, string id)
    {
        lock (_lock)
        {
            var list = _tables[table];
            var found = list.Single(o => o["id"]!.GetValue<string>() == id);
            list.Remove(found);
            _version++;
            var last = (JsonObject)found.DeepClone();
            last["deleted"] = true;
            AddEvent($"{EventPrefixOf(table)}.deleted", last);
        }
    }

    /// <summary>An event as Stripe sends it (also what a webhook delivery carries).</summary>
    public JsonObject AddEvent(string type, JsonObject state, long? created = null)
    {
        lock (_lock)
        {
            var e = new JsonObject
            {
                ["id"] = $"evt_{Interlocked.Increment(ref _sequence):D10}", ["object"] = "event", ["api_version"] = "2024-09-30.acacia",
                ["created"] = created ?? Now.ToUnixTimeSeconds(), ["type"] = type, ["livemode"] = false,
                ["data"] = new JsonObject { ["object"] = state.DeepClone() },
            };
            _events.Add(e);
            return e;
        }
    }

    /// <summary>The next <paramref name="count"/> requests answer 429 with <c>Retry-After</c>, as Stripe's rate limiter does.</summary>
    public void ThrottleNext(int count, int retryAfterSeconds = 1) => (_throttle, _retryAfterSeconds) = (count, retryAfterSeconds);

    public IReadOnlyList<JsonObject> Objects(string table)
    {
        lock (_lock) return _tables.TryGetValue(table, out var list) ? list.Select(o => (JsonObject)o.DeepClone()).ToList() : [];
    }

    internal async Task<bool> ThrottledAsync(HttpContext context)
    {
        if (Interlocked.Decrement(ref _throttle) < 0)
        {
            Interlocked.Exchange(ref _throttle, 0);
            return false;
        }

        Interlocked.Increment(ref _throttled);
        context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
        context.Response.Headers.RetryAfter = _retryAfterSeconds.ToString(CultureInfo.InvariantCulture);
        await context.Response.WriteAsJsonAsync(new { error = new { message = "Request rate limit exceeded.", type = "invalid_request_error", code = "rate_limit" } });
        return true;
    }

    internal async Task BeforeListAsync(IQueryCollection query)
    {
        if (query["limit"] == "1") return;
        var n = Interlocked.Increment(ref _lists);
        if (OnPage is { } hook) await hook(n);
    }

    internal string? List(string table, string path, IQueryCollection query)
    {
        List<JsonObject> ordered;
        lock (_lock)
        {
            // Ordered once per change of the table, not per request: a list of thousands is paged without re-sorting it.
            if (!_ordered.TryGetValue(table, out var cached) || cached.Version != _version)
                _ordered[table] = cached = (_version, _tables.TryGetValue(table, out var list) ? Newest(list) : []);
            ordered = cached.Objects;
        }

        return Page(ordered, path, query, sorted: true);
    }

    private readonly Dictionary<string, (long Version, List<JsonObject> Objects)> _ordered = new();
    private long _version;

    private static List<JsonObject> Newest(List<JsonObject> all) =>
        all.Select((o, i) => (o, i)).OrderByDescending(x => x.o["created"]!.GetValue<long>()).ThenByDescending(x => x.i).Select(x => x.o).ToList();

    internal string? ListEvents(IQueryCollection query)
    {
        List<JsonObject> all;
        var windowStart = (Now - TimeSpan.FromDays(30)).ToUnixTimeSeconds();
        lock (_lock) all = [.. _events];
        var types = query["types[]"].Concat(query["type"]).OfType<string>().ToList();
        all = all.Where(e => e["created"]!.GetValue<long>() >= windowStart)
            .Where(e => types.Count == 0 || types.Any(t => Matches(t, e["type"]!.GetValue<string>()))).ToList();
        return Page(all, "/v1/events", query);
    }

    private static bool Matches(string pattern, string type) =>
        pattern.EndsWith(".*", StringComparison.Ordinal) ? type.StartsWith(pattern[..^1], StringComparison.Ordinal) : pattern == type;

    /// <summary>Stripe's list semantics: newest first (ties: the later made first), filters on <c>created</c>, then a window
    /// after <c>starting_after</c> or before <c>ending_before</c>.</summary>
    private static string? Page(List<JsonObject> all, string path, IQueryCollection query, bool sorted = false)
    {
        var ordered = sorted ? all : Newest(all);
        foreach (var (op, test) in new (string, Func<long, long, bool>)[] { ("gt", (c, v) => c > v), ("gte", (c, v) => c >= v), ("lt", (c, v) => c < v), ("lte", (c, v) => c <= v) })
            if (long.TryParse(query[$"created[{op}]"], out var bound))
                ordered = ordered.Where(o => test(o["created"]!.GetValue<long>(), bound)).ToList();
        if (long.TryParse(query["created"], out var exact)) ordered = ordered.Where(o => o["created"]!.GetValue<long>() == exact).ToList();
        var limit = Math.Clamp(int.TryParse(query["limit"], out var l) ? l : 10, 1, 100);
        List<JsonObject> page;
        bool hasMore;
        if (query["ending_before"].FirstOrDefault() is { } before)
        {
            var end = ordered.FindIndex(o => o["id"]!.GetValue<string>() == before);
            var start = Math.Max(0, end - limit);
            page = end < 0 ? [] : ordered[start..end];
            hasMore = start > 0;
        }
        else
        {
            var after = query["starting_after"].FirstOrDefault();
            var start = after is null ? 0 : ordered.FindIndex(o => o["id"]!.GetValue<string>() == after) + 1;
            if (after is not null && start == 0 && !all.Any(o => o["id"]!.GetValue<string>() == after)) return null;
            page = ordered.Skip(start).Take(limit).ToList();
            hasMore = start + page.Count < ordered.Count;
        }

        return new JsonObject
        {
            ["object"] = "list", ["url"] = path, ["has_more"] = hasMore, ["data"] = new JsonArray(page.Select(o => (JsonNode)o.DeepClone()).ToArray()),
        }.ToJsonString();
    }
}
