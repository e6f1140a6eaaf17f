using System.Text.Json;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Audit;
using ExternalData.EventSourced.Credentials;
using ExternalData.EventSourced.Credentials.ConnectLinks;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Infrastructure.LocalPostgres;
using ExternalData.EventSourced.Infrastructure.Operations;
using ExternalData.EventSourced.Infrastructure.Messaging;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Network;
using ExternalData.EventSourced.SourceTypes.Stripe;
using FluentValidation;
using JasperFx;
using JasperFx.CodeGeneration;
using JasperFx.CommandLine;
using JasperFx.Events;
using JasperFx.Events.Daemon;
using JasperFx.MultiTenancy;
using Marten;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Logging.Console;
using Wolverine;
using Wolverine.ErrorHandling;
using Wolverine.Http;
using Wolverine.Marten;
using Npgsql;
using Wolverine.Postgresql;

var builder = WebApplication.CreateBuilder(args);

// Operator commands print their result on stdout; everything the host logs goes to stderr so it cannot mix in.
builder.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);

// The database: the configured one, or an embedded local PostgreSQL for a newcomer's first run. The embedded server starts
// in the background while the host is built; `database.WhenReadyAsync()` is awaited before the host's first connection.
await using var database = await EmbeddedDatabase.ResolveAsync(builder, EmbeddedDatabase.IsServiceRun(args));
var connectionString = database.ConnectionString;
// The statements every request runs (Marten's loads, appends and upserts, Wolverine's inbox) are prepared on a backend once
// they have run a few times there, and keep their plans across pool uses: with prepared statements on a connection, Npgsql
// resets a returned one without DISCARD ALL — role, settings, temp tables, cursors, listens and advisory locks still go
// (Operations/when_a_pooled_connection_is_used_again), the plans stay (ADR 0053). ExternalData:Database:MaxAutoPrepare=0 turns it off.
var storeConnectionString = new NpgsqlConnectionStringBuilder(connectionString) is { MaxAutoPrepare: 0 }
    ? new NpgsqlConnectionStringBuilder(connectionString) { MaxAutoPrepare = builder.Configuration.GetValue("ExternalData:Database:MaxAutoPrepare", 64) }.ConnectionString
    : connectionString;
var localData = Path.Combine(builder.Environment.ContentRootPath, EmbeddedDatabase.LocalDataFolder);

// Event store and documents. Events and documents are conjoined-tenanted by project (ADR 0002).
builder.Services.AddMarten(opts =>
    {
        opts.Connection(storeConnectionString);
        opts.DatabaseSchemaName = builder.Configuration["ExternalData:Database:Schema"] ?? "externaldata";
        opts.Events.TenancyStyle = TenancyStyle.Conjoined;
        opts.Events.StreamIdentity = StreamIdentity.AsGuid;
        opts.Events.MetadataConfig.CorrelationIdEnabled = true;
        opts.Events.MetadataConfig.CausationIdEnabled = true;
        opts.Events.MetadataConfig.HeadersEnabled = true;
        opts.Events.MetadataConfig.UserNameEnabled = true;
        opts.Schema.For<ApiKey>().UniqueIndex(k => k.TokenHash);
        opts.Schema.For<DataProtectionKeyDocument>();
        opts.ConfigureSources();
        opts.ConfigureCredentials();
        opts.ConfigureConnectLinks();
        opts.ConfigureAudit();
        // A failed append leaves a gap in the event sequence; the daemon waits this long before skipping it.
        opts.Projections.StaleSequenceThreshold = TimeSpan.FromMilliseconds(builder.Configuration.GetValue("ExternalData:Projections:StaleSequenceThresholdMs", 3000));
        // How often a standby node tries to take the async daemon over (HotCold): the audit feed's worst pause when its node dies.
        opts.Projections.LeadershipPollingTime = builder.Configuration.GetValue("ExternalData:Projections:LeadershipPollingMs", 5000);
    })
    .ApplyAllDatabaseChangesOnStartup()
    // Async projections (the audit feed) run on one node at a time; another takes over when it goes (HotCold).
    // ExternalData:Projections:Daemon=Disabled keeps a node out of it (a query-only node, or while a rebuild runs elsewhere).
    .AddAsyncDaemon(builder.Configuration["ExternalData:Projections:Daemon"] == "Disabled" ? DaemonMode.Disabled : DaemonMode.HotCold)
    // Wolverine's PostgreSQL queues (sync runs, below) live beside its inbox, in the store's own schema.
    .IntegrateWithWolverine(w => w.TransportSchemaName = builder.Configuration["ExternalData:Database:Schema"] ?? "externaldata");

// Commands run through Wolverine; every write endpoint commits its events in one Marten transaction.
// Use cases are Wolverine handlers that every channel invokes in-process (ADR 0018): each commits its events in one
// Marten transaction, and each stamps its caller into the events' metadata.
// Production loads the handler and endpoint code generated ahead of time (Internal/Generated, written by
// `codegen write`; CI fails when it is stale): no Roslyn compile on the first request, half the memory (ADR 0028).
// ExternalData:GeneratedCode=Dynamic compiles at runtime instead (the cold-start bench compares the two).
builder.Services.CritterStackDefaults(x =>
{
    x.Production.GeneratedCodeMode = builder.Configuration["ExternalData:GeneratedCode"] == "Dynamic" ? TypeLoadMode.Dynamic : TypeLoadMode.Static;
    x.Production.AssertAllPreGeneratedTypesExist = builder.Configuration["ExternalData:GeneratedCode"] != "Dynamic";
    // Development (a newcomer's `dotnet run`) loads the same pre-generated code and compiles only what is missing (a
    // handler added and not yet written out): Roslyn and its compiled handlers held ~180 MB and a second of start (ADR 0054).
    x.Development.GeneratedCodeMode = builder.Configuration["ExternalData:GeneratedCode"] == "Dynamic" ? TypeLoadMode.Dynamic : TypeLoadMode.Auto;
});
builder.Host.UseWolverine(opts =>
{
    opts.ApplicationAssembly = typeof(Program).Assembly;
    opts.Policies.AutoApplyTransactions();
    opts.Policies.Add<CallerMetadataPolicy>();
    // One clock: a handler's `DateTimeOffset now` comes from the registered TimeProvider, not the machine clock.
    ClockTimeSource.Use(opts.CodeGeneration);
    // Writes lock their source's stream, so they queue rather than collide; should an append still lose a race
    // (a stream first written by another node, say), load → decide → append runs again, a bounded number of times (ADR 0017).
    // Sync triggers append to many tables' sync streams at once, beside runs and schedules appending there too: a few more
    // tries, spread out, so such a race is the service's to absorb, never a caller's error.
    opts.OnException<ConcurrencyException>().Or<Marten.Exceptions.ExistingStreamIdCollisionException>()
        .RetryWithCooldown(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(25), TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(100),
            TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(400));
    opts.ConfigureCredentials();
    // Nodes on one database share the durable work (scheduled expiries, clean-ups) and take over a dead node's; how
    // fast they notice one is Wolverine's to tune (ExternalData:Durability:StaleNodeTimeout and friends, docs/scale-out.md).
    // The leader assigns agents (a CDC source's consumer, ADR 0047) at each assignment check: 5 s rather than Wolverine's 30 s,
    // so a source whose CDC was just turned on starts streaming within seconds. A check is a few indexed reads per node.
    opts.Durability.CheckAssignmentPeriod = TimeSpan.FromSeconds(5);
    builder.Configuration.GetSection("ExternalData:Durability").Bind(opts.Durability);
    // A deleted source's clean-up is committed with its deletion and survives restarts.
    opts.LocalQueueFor<CleanUpDeletedSource>().UseDurableInbox();
    // A started sync run is committed with its start and survives restarts; a node runs two at a time. A run someone asked
    // for (reload, resync) starts at once on the node asked. A run the scheduler starts (due, or a table's first) goes to a
    // queue in the database that every node takes from (Wolverine's PostgreSQL transport: FOR UPDATE SKIP LOCKED), one a
    // poll, and a node stops taking while it holds its fill: a burst of due tables spreads over the nodes (ADR 0050).
    opts.LocalQueueFor<RunSyncJob>().UseDurableInbox().MaximumParallelMessages(2);
    opts.Transports.GetOrCreate<Wolverine.Postgresql.Transport.PostgresqlTransport>().AutoProvision = true;
    opts.ListenToPostgresqlQueue(SyncRunQueue.Name)
        .MaximumMessagesToReceive(1)
        .MaximumParallelMessages(2)
        .UseDurableInbox(new Wolverine.Transports.BufferingLimits(SyncRunQueue.HeldPerNode, SyncRunQueue.HeldPerNode - 1))
        .PollingInterval(builder.Configuration.GetValue("ExternalData:Sync:QueuePolling", TimeSpan.FromMilliseconds(500)));
    // Schedules are durable: a due run is a scheduled message in the database, fired after a restart too (ADR 0043).
    opts.LocalQueueFor<ArmSyncSchedules>().UseDurableInbox();
    opts.LocalQueueFor<SyncDue>().UseDurableInbox();
    opts.LocalQueueFor<DropWarehouseTable>().UseDurableInbox();
    opts.LocalQueueFor<DisableFailingSchema>().UseDurableInbox();
});
builder.Services.AddWolverineHttp();

// JSON is snake_case everywhere, as PostHog's API is.
builder.Services.ConfigureSystemTextJsonForWolverineOrMinimalApi(o => ApiJson.Configure(o.SerializerOptions));

// Source types and validators are found by scanning: a new source type is one new class (ADR 0006).
builder.Services.Scan(scan => scan
    .FromAssemblyOf<ISourceType>().AddClasses(c => c.AssignableTo<ISourceType>()).AsImplementedInterfaces().WithSingletonLifetime()
    .FromAssemblyOf<Program>().AddClasses(c => c.AssignableTo(typeof(IValidator<>))).AsImplementedInterfaces().WithSingletonLifetime());
builder.Services.AddSingleton<SourceTypeRegistry>();
builder.Services.ConfigureSources();
builder.Services.Configure<CredentialsOptions>(builder.Configuration.GetSection(CredentialsOptions.Section));
builder.Services.Configure<CleanupOptions>(builder.Configuration.GetSection(CleanupOptions.Section));
builder.Services.Configure<ConnectLinkOptions>(builder.Configuration.GetSection(ConnectLinkOptions.Section));
// Connect-link tokens are Data Protection payloads; the keys live in the database, sealed under the master key.
builder.Services.AddDatabaseDataProtection();
builder.Services.AddSingleton<ConnectLinkTokens>();
// Time is a service, so tests move the clock instead of sleeping.
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.Configure<NetworkOptions>(builder.Configuration.GetSection(NetworkOptions.Section));
builder.Services.Configure<StripeOptions>(builder.Configuration.GetSection(StripeOptions.Section));
builder.Services.AddSingleton<IHostPolicy, HostPolicy>();

// Secrets: envelope encryption under a master key from configuration (generated locally in Development).
builder.Services.AddSingleton(new SecretsCipher(MasterKeySetup.Resolve(builder.Configuration, builder.Environment, localData)));

// Personal API keys; a found key is remembered briefly (ADR 0030).
builder.Services.AddMemoryCache();
builder.Services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
    .AddScheme<Microsoft.AspNetCore.Authentication.AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
if (builder.Environment.IsDevelopment()) builder.Services.AddHostedService<DevelopmentAdminKey>();
// The demo source: on by default in Development on the embedded database; ExternalData:Demo:Enabled says otherwise.
if (builder.Configuration.GetValue("ExternalData:Demo:Enabled", builder.Environment.IsDevelopment() && database.IsEmbedded))
    builder.Services.AddHostedService(sp => new DemoSource(connectionString, sp.GetRequiredService<ILogger<DemoSource>>()));

// Framework-made errors (bad route ids, unhandled exceptions) get our problem shape too.
builder.Services.AddProblemDetails(o => o.CustomizeProblemDetails = ctx =>
{
    var problem = ctx.ProblemDetails;
    var status = problem.Status ?? ctx.HttpContext.Response.StatusCode;
    var detail = problem.Detail ?? (status == 404 ? "Not found." : problem.Title ?? "Error");
    string? attr = null;
    var code = status == 404 ? "not_found" : status >= 500 ? "server_error" : "invalid_request";
    if (status >= 500) detail = "The server failed to process the request. It has been logged; retry later.";
    if (problem.Title == "Invalid JSON format")
    {
        // Wolverine's text names our .NET types; keep only the JSON path the caller can act on.
        (attr, detail) = MalformedBody.Describe(detail);
        code = "parse_error";
        problem.Title = "Bad Request";
        foreach (var key in new[] { "lineNumber", "bytePositionInLine", "line_number", "byte_position_in_line" }) problem.Extensions.Remove(key);
    }

    problem.Type = Problems.TypeFor(status);
    problem.Detail = detail;
    problem.Extensions.Remove("traceId");
    problem.Extensions.Remove("trace_id");
    problem.Extensions.TryAdd("code", code);
    problem.Extensions.TryAdd("attr", attr);
    problem.Extensions["message"] = detail;
});
builder.Services.AddExceptionHandler<ConstraintViolationHandler>();
builder.Services.AddExceptionHandler<DatabaseUnavailableHandler>();
builder.Services.AddExceptionHandler<ExternalData.EventSourced.Mcp.McpMalformedRequestHandler>();
// Provider deliveries are bounded: a burst queues (Stripe waits, then retries) instead of taking the CPU from API
// callers. The permits and the queue are configurable; see ReceiveWebhookEndpoint.
builder.Services.AddRateLimiter(o => o.AddConcurrencyLimiter(ReceiveWebhookEndpoint.Limiter, limiter =>
{
    limiter.PermitLimit = builder.Configuration.GetValue("ExternalData:Webhooks:ConcurrentDeliveries", Math.Max(1, Environment.ProcessorCount / 2));
    limiter.QueueLimit = builder.Configuration.GetValue("ExternalData:Webhooks:QueuedDeliveries", 1000);
    limiter.QueueProcessingOrder = System.Threading.RateLimiting.QueueProcessingOrder.OldestFirst;
}));
// MCP (streamable HTTP, stateless): the same keys, scopes and use cases as REST (ADR 0022).
builder.Services.AddHttpContextAccessor();
builder.Services.AddSingleton<ExternalData.EventSourced.Mcp.McpCallers>();
builder.Services.AddAuthorization();
// A call's arguments are checked against the tool's schema first, so a missing or mistyped one is named to the agent.
builder.Services.AddMcpServer().WithHttpTransport(o => o.Stateless = true).WithTools<ExternalData.EventSourced.Mcp.ExternalDataSourceTools>()
    .WithTools<ExternalData.EventSourced.Mcp.ExternalDataSchemaTools>()
    .WithRequestFilters(filters => filters.AddCallToolFilter(ExternalData.EventSourced.Mcp.McpArguments.Check));
// The OpenAPI document at /api/schema/ and an interactive reference at /docs, both served by the service itself (ADR 0023).
builder.Services.AddOpenApi(o =>
{
    o.AddDocumentTransformer<ApiDocument>();
    o.AddOperationTransformer<ApiDocument>();
    o.AddDocumentTransformer<ExternalData.EventSourced.Mcp.McpToolsDocument>();
});
builder.Services.AddHealthChecks().AddCheck<DatabaseReadyCheck>("database", tags: ["ready"]).AddCheck<ProjectionLagCheck>("projections", tags: ["ready"])
    .AddCheck<SyncHealthCheck>("syncs", tags: ["ready"]);

var app = builder.Build();

app.UseExceptionHandler();
app.UseStatusCodePages();
// /api/environments/... and trailing slashes are normalised before routing (ADR 0004).
app.UseRouteAliases();
// A body that is not a JSON object is refused here, once, for every endpoint (an empty one reads as {}).
app.UseJsonObjectBodies();
app.UseRouting();
app.UseAuthentication();
app.UseAuthorization();
app.UseMiddleware<ProjectAccessMiddleware>();
app.UseRateLimiter();

app.MapMcp("/mcp").RequireAuthorization();
app.MapOpenApi("/api/schema");
app.MapGet("/", () => Results.Redirect("/docs/")).ExcludeFromDescription();
app.UseSwaggerUI(o =>
{
    o.RoutePrefix = "docs";
    o.SwaggerEndpoint("/api/schema", "External Data Sources API");
    o.DocumentTitle = "ExternalData.EventSourced API";
});
app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false });
app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = check => check.Tags.Contains("ready"), ResponseWriter = HealthReport.WriteAsync });

app.MapWolverineEndpoints(opts =>
{
    // The tenant of every Marten session is the project in the route.
    opts.TenantId.IsRouteArgumentNamed("project_id");
    opts.AddPolicy<FluentValidationPolicy>();
});

// Say where the service listens, on stdout, once it does (log lines go to stderr).
app.Lifetime.ApplicationStarted.Register(() =>
{
    Console.WriteLine($"ExternalData.EventSourced is listening on {string.Join(", ", app.Urls)} (environment: {app.Environment.EnvironmentName})");
    Console.WriteLine($"  API reference: {app.Urls.FirstOrDefault()?.TrimEnd('/')}/docs");
    if (database.IsEmbedded) Console.WriteLine($"  Data: {localData} (embedded PostgreSQL; delete the folder to start afresh)");
    Console.WriteLine("  Stop: Ctrl-C");
});

// A plain start runs the service directly: JasperFx's command discovery prints a "Searching … for commands" line per
// Critter Stack assembly, which a newcomer reads as trouble. Operator commands (api-keys, projections, codegen, …) go
// through JasperFx as before.
await database.WhenReadyAsync();
if (args.Length == 0)
{
    await app.RunAsync();
    return 0;
}

return await app.RunJasperFxCommands(args);
