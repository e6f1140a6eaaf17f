using System.Collections.Concurrent;
using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;
using Xunit.Abstractions;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// The reliability suite runs on its own: its load, crashes and kills must not starve or break the rest of the
/// suite, so its collection runs after the parallel ones, one class at a time.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ReliabilityCollection
{
    public const string Name = "reliability";
}

/// <summary>CI runs the short mode (the whole suite within 3 minutes); <c>EDTEST_RELIABILITY=long</c> runs each load for longer.</summary>
public static class ReliabilityMode
{
    public static bool Long => Environment.GetEnvironmentVariable("EDTEST_RELIABILITY") == "long";
    public static TimeSpan Load => TimeSpan.FromSeconds(Long ? 120 : 12);
}

/// <summary>
/// A database of its own (to crash at will), a source database on it, Stripe's fake, and service nodes as real
/// processes on real ports. Every response a test sees is kept, so the canary can look for the secrets in them.
/// </summary>
public sealed class ReliabilityEnvironment : IAsyncDisposable
{
    private readonly List<ServiceProcess> _nodes = [];
    private readonly ConcurrentQueue<string> _responses = new();

    private ReliabilityEnvironment(TestDatabase database, FakeStripeServer stripe, SourceDatabase source)
    {
        Database = database;
        Stripe = stripe;
        Source = source;
    }

    public TestDatabase Database { get; }
    public FakeStripeServer Stripe { get; }
    public SourceDatabase Source { get; }
    public string Schema { get; } = $"edrel_{Guid.NewGuid():N}"[..20];
    public string Token { get; private set; } = "";
    public string ProjectId { get; } = "7001";
    public string Sources => $"/api/projects/{ProjectId}/external_data_sources/";

    /// <summary>A secret no response, log line, event or document may ever show: sent as a password and an API key.</summary>
    public string Canary { get; } = $"canary-{Guid.NewGuid():N}";

    public static async Task<ReliabilityEnvironment> StartAsync()
    {
        // Settings given: always a server of our own, never the shared TEST_POSTGRES one.
        var database = await TestDatabase.StartAsync(new Dictionary<string, string> { ["max_connections"] = "300" });
        var stripe = await FakeStripeServer.StartAsync();
        var source = await SourceDatabase.CreateAsync(database);
        return new ReliabilityEnvironment(database, stripe, source);
    }

    public string ConnectionString(string node) =>
        new NpgsqlConnectionStringBuilder(Database.ConnectionStringFor("postgres")) { ApplicationName = node, Pooling = true, MaxPoolSize = 60 }.ConnectionString;

    /// <summary>Starts a node; the first one issues the API key every client uses (through the store, as the CLI does).</summary>
    public async Task<ServiceProcess> StartNodeAsync(string name, IDictionary<string, string>? environment = null, int? port = null)
    {
        var settings = new Dictionary<string, string>
        {
            ["ExternalData__Projections__LeadershipPollingMs"] = "1000",
            ["ExternalData__Projections__StaleSequenceThresholdMs"] = "500",
            ["ExternalData__Durability__HealthCheckPollingTime"] = "00:00:01",
            ["ExternalData__Durability__StaleNodeTimeout"] = "00:00:05",
            ["ExternalData__Durability__NodeReassignmentPollingTime"] = "00:00:01",
            ["ExternalData__Durability__ScheduledJobPollingTime"] = "00:00:01",
            ["ExternalData__Durability__ScheduledJobFirstExecution"] = "00:00:00.500",
            ["ExternalData__Durability__FirstHealthCheckExecution"] = "00:00:00.500",
            ["ExternalData__Cleanup__RetryDelaysSeconds__0"] = "1",
            ["ExternalData__Cleanup__RetryDelaysSeconds__1"] = "2",
            ["Logging__LogLevel__Default"] = "Information",
        };
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) settings[key] = value;
        var node = await ServiceProcess.StartAsync(ConnectionString(name), Schema, Stripe.ApiBase, settings, port);
        lock (_nodes) _nodes.Add(node);
        if (Token.Length == 0) Token = await IssueKeyAsync();
        return node;
    }

    private Task<string> IssueKeyAsync() => DirectKeys.IssueAsync(Database.ConnectionStringFor("postgres"), Schema, "reliability");

    /// <summary>A client of one node. Every answer is kept for the canary; none may be a 500-class other than the
    /// 503 a database outage gives, and the caller decides whether a 503 is allowed.</summary>
    public Client ClientOf(ServiceProcess node, TimeSpan? timeout = null) =>
        new(new HttpClient { BaseAddress = new Uri(node.BaseUrl), Timeout = timeout ?? TimeSpan.FromSeconds(30) }, Token, _responses);

    public sealed class Client(HttpClient http, string token, ConcurrentQueue<string> seen)
    {
        private readonly ApiClient _api = new(http, token);

        public async Task<ApiResponse> SendAsync(HttpMethod method, string url, object? body = null, IDictionary<string, string>? headers = null)
        {
            var response = await _api.SendAsync(method, url, body, headers);
            seen.Enqueue(response.Text);
            return response;
        }

        public Task<ApiResponse> GetAsync(string url) => SendAsync(HttpMethod.Get, url);
        public Task<ApiResponse> PostAsync(string url, object body) => SendAsync(HttpMethod.Post, url, body);
        public Task<ApiResponse> PatchAsync(string url, object body, IDictionary<string, string>? headers = null) => SendAsync(HttpMethod.Patch, url, body, headers);
        public Task<ApiResponse> DeleteAsync(string url) => SendAsync(HttpMethod.Delete, url);
    }

    public JsonObject PostgresConfig(string? password = null) => new()
    {
        ["host"] = Source.Host, ["port"] = Source.Port, ["database"] = Source.Name, ["user"] = SourceDatabase.Reader,
        ["password"] = password ?? Source.ReaderPassword, ["schema"] = "public",
    };

    public JsonObject PostgresSource(string prefix) => new()
    {
        ["source_type"] = "Postgres", ["prefix"] = prefix,
        ["payload"] = new JsonObject
        {
            ["host"] = Source.Host, ["port"] = Source.Port, ["database"] = Source.Name, ["user"] = SourceDatabase.Reader,
            ["password"] = Source.ReaderPassword, ["schema"] = "public",
            ["schemas"] = new JsonArray(new JsonObject { ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "full_refresh" }),
        },
    };

    /// <summary>A Stripe source on the fake Stripe server, with its webhook registered there.</summary>
    public async Task<string> StripeSourceWithWebhookAsync(Client api)
    {
        var body = new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject
            {
                ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = FakeStripeServer.FullKey },
                ["schemas"] = new JsonArray(new JsonObject { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = "full_refresh" }),
            },
        };
        var id = (await api.PostAsync(Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        (await api.PostAsync($"{Sources}{id}/create_webhook/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        return id;
    }

    /// <summary>Runs <paramref name="sql"/> on the source database, as its owner.</summary>
    public async Task SourceAsync(string sql)
    {
        await using var source = new NpgsqlConnection(Database.ConnectionStringFor(Source.Name));
        await source.OpenAsync();
        await using var command = new NpgsqlCommand(sql, source);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>The source table <c>public.slow</c> of <paramref name="rows"/> rows, which reads slowly on purpose (a row-level
    /// security policy that sleeps 0.3 ms a row for the service's reader), so a run lasts long enough to be interrupted.</summary>
    public Task CreateSlowTableAsync(int rows) => SourceAsync($"""
        CREATE TABLE public.slow (id bigint PRIMARY KEY, label text, amount numeric(12,2));
        INSERT INTO public.slow SELECT g, 'row ' || g, g * 0.5 FROM generate_series(1, {rows}) g;
        CREATE FUNCTION public.slowly(bigint) RETURNS boolean LANGUAGE sql VOLATILE AS 'SELECT pg_sleep(0.0003) IS NOT NULL';
        ALTER TABLE public.slow ENABLE ROW LEVEL SECURITY;
        CREATE POLICY slow_reads ON public.slow FOR SELECT TO {SourceDatabase.Reader} USING (public.slowly(id));
        GRANT SELECT ON public.slow TO {SourceDatabase.Reader};
        """);

    public async Task<T> QueryAsync<T>(string sql)
    {
        await using var connection = new NpgsqlConnection(Database.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql.Replace("{schema}", Schema, StringComparison.Ordinal), connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Every row of the daemon's progression table, for a failure message.</summary>
    public async Task<string> ProgressionAsync()
    {
        await using var connection = new NpgsqlConnection(Database.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT name, last_seq_id, last_updated FROM {Schema}.mt_event_progression ORDER BY name", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<string>();
        while (await reader.ReadAsync()) rows.Add($"{reader.GetString(0)}={reader.GetInt64(1)}@{reader.GetValue(2)}");
        return string.Join(", ", rows);
    }

    /// <summary>
    /// Nothing half-applied: every source stream's versions run 1..n without a gap or a repeat, and its read model
    /// (the source document) stands at the stream's version.
    /// </summary>
    public async Task ShouldBeConsistentAsync()
    {
        // Marten's tombstones (what a failed append leaves to keep the sequence moving) belong to no stream of ours.
        var broken = await QueryAsync<string>("""
            SELECT coalesce(string_agg(stream_id::text || ' ' || versions, '; '), '') FROM (
              SELECT stream_id, string_agg(version::text || ':' || type, ',' ORDER BY seq_id) AS versions FROM {schema}.mt_events
               WHERE type <> 'tombstone' GROUP BY stream_id
              HAVING min(version) <> 1 OR max(version) <> count(*) OR count(DISTINCT version) <> count(*)) broken
            """);
        broken.ShouldBeEmpty("streams with a gap or a repeated version");
        var behind = await QueryAsync<long>("""
            SELECT count(*) FROM {schema}.mt_doc_source d JOIN {schema}.mt_streams s ON s.id = d.id AND s.tenant_id = d.tenant_id
            WHERE d.mt_version <> s.version
            """);
        behind.ShouldBe(0, "source documents not at their stream's version");
    }

    /// <summary>
    /// The canary: the secrets used appear in no response a client saw, no line any node logged, and no row of any
    /// table of the service's schema (events, documents, Wolverine's envelopes and dead letters).
    /// </summary>
    public async Task CanaryShouldBeAbsentAsync(ITestOutputHelper output, params string[] secrets)
    {
        string[] markers = [Canary, Source.ReaderPassword, .. secrets];
        foreach (var marker in markers)
        {
            _responses.ShouldNotContain(r => r.Contains(marker, StringComparison.Ordinal), $"a response showed a secret");
            lock (_nodes)
                foreach (var node in _nodes) node.Output.ShouldNotContain(marker, Case.Sensitive, "a node logged a secret");
        }

        await using var connection = new NpgsqlConnection(Database.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        var tables = new List<string>();
        await using (var list = new NpgsqlCommand("SELECT table_name FROM information_schema.tables WHERE table_schema = @s AND table_type = 'BASE TABLE'", connection))
        {
            list.Parameters.AddWithValue("s", Schema);
            await using var reader = await list.ExecuteReaderAsync();
            while (await reader.ReadAsync()) tables.Add(reader.GetString(0));
        }

        tables.ShouldContain("mt_events");
        long rows = 0;
        foreach (var table in tables)
        {
            foreach (var marker in markers)
            {
                await using var scan = new NpgsqlCommand($"SELECT count(*) FROM \"{Schema}\".\"{table}\" t WHERE t::text LIKE '%' || @m || '%'", connection);
                scan.Parameters.AddWithValue("m", marker);
                ((long)(await scan.ExecuteScalarAsync())!).ShouldBe(0, $"{table} holds a secret in plaintext");
            }

            await using var count = new NpgsqlCommand($"SELECT count(*) FROM \"{Schema}\".\"{table}\"", connection);
            rows += (long)(await count.ExecuteScalarAsync())!;
        }

        // The warehouse's own words about its tables (their comments) name the schema they belong to, never a secret.
        await using (var comments = new NpgsqlCommand("""
            SELECT coalesce(string_agg(obj_description(c.oid, 'pg_class'), ' '), '') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname LIKE 'warehouse\_%' AND c.relkind = 'r'
            """, connection))
        {
            var text = (string)(await comments.ExecuteScalarAsync())!;
            foreach (var marker in markers) text.ShouldNotContain(marker, Case.Sensitive, "a warehouse table comment holds a secret");
        }

        output.WriteLine($"canary: {markers.Length} secrets absent from {_responses.Count} responses, {_nodes.Count} node logs, {rows} rows in {tables.Count} tables and the warehouse's table comments");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes) await node.DisposeAsync();
        await Stripe.DisposeAsync();
        await Database.DisposeAsync();
    }
}

public static class ReliabilityAssertions
{
    /// <summary>Below 500, or the database-outage 503 when <paramref name="outageAllowed"/>; every error is a problem.</summary>
    public static void ShouldBeAnswerNotFailure(this ApiResponse response, string what, bool outageAllowed = false)
    {
        var status = (int)response.Status;
        if (outageAllowed && response.Status == HttpStatusCode.ServiceUnavailable)
        {
            response.ContentType.ShouldBe("application/problem+json", what);
            response.Text.ShouldContain("database_unavailable", Case.Sensitive, what);
            return;
        }

        status.ShouldBeLessThan(500, $"{what} -> {response.Text}");
        if (status >= 400) response.ContentType.ShouldBe("application/problem+json", what);
    }
}
