using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using JasperFx.Events.Projections;
using Marten;
using Marten.Schema;
using Marten.Schema.Indexing.Unique;
using Marten.Services.Json.Transformations.SystemTextJson;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

public static class SourcesConfiguration
{
    public const string PrefixUniqueIndex = "uq_source_warehouse_prefix";

    public static StoreOptions ConfigureSources(this StoreOptions options)
    {
        // One document per source (ADR 0032): an inline snapshot, so a command loads one small document instead of
        // replaying the stream, and a read right after a write sees it. List and retrieve read it too; its schemas
        // are documents of their own (ADR 0016).
        options.Projections.Snapshot<Source>(SnapshotLifecycle.Inline);
        options.Schema.For<Source>().MultiTenanted()
            .Duplicate(x => x.SourceType)
            .Duplicate(x => x.Prefix!)
            .UniqueIndex(UniqueIndexType.DuplicatedField, PrefixUniqueIndex, TenancyScope.PerTenant, x => x.WarehousePrefixKey!);
        options.Projections.Add<SourceSchemaProjection>(ProjectionLifecycle.Inline);
        options.Schema.For<ScheduleReconciliation>();
        options.Schema.For<SourceSchema>().MultiTenanted().Duplicate(x => x.SourceId)
            // The inbound webhook finds its schema by source and table name, per delivery: indexed, so flat on wide sources.
            .Duplicate(x => x.Name);

        // Webhook deliveries: an inbox per source, apart from its stream (see WebhookDelivery).
        options.Schema.For<WebhookDelivery>().MultiTenanted().Duplicate(x => x.SourceId).Duplicate(x => x.SchemaId).Duplicate(x => x.ReceivedAt)
            .Duplicate(x => x.ProcessedAt!);
        options.Storage.ExtendedSchemaObjects.Add(WebhookStats.Definition(options.DatabaseSchemaName));
        // The inbound webhook finds its source by id alone (it has no project in its route).
        options.Schema.For<Source>().Index(x => x.Id);

        // Old event shapes read as today's (ADR 0027).
        options.Events.Upcast<SourceCreated>(LegacyEvents.SourceConnected, JsonTransformations.Upcast(LegacyEvents.FromSourceConnected));

        // Syncs live in streams of their own (a schema's sync stream, a job's stream), never the source's (SYNC.md §4):
        // inline, so a trigger decides on the current state and a read right after sees the job.
        options.Projections.Snapshot<SchemaSync>(SnapshotLifecycle.Inline);
        options.Schema.For<SchemaSync>().MultiTenanted().Duplicate(x => x.SourceId);
        options.Projections.Add<SyncJobProjection>(ProjectionLifecycle.Inline);
        options.Schema.For<SyncJob>().MultiTenanted().Duplicate(x => x.SourceId).Duplicate(x => x.CreatedAt);

        // Data keys live apart from events so that deleting one shreds the secrets sealed with it.
        options.Schema.For<DataKey>().MultiTenanted();
        return options;
    }

    public static IServiceCollection ConfigureSources(this IServiceCollection services) =>
        services.AddSingleton<PublicUrls>().AddSingleton(sp => new SyncRunSettings
            {
                PageSize = sp.GetRequiredService<IConfiguration>().GetValue("Sync:PageSize", 50_000),
                WarehouseConnectionString = sp.GetRequiredService<IConfiguration>().GetConnectionString("Warehouse"),
                WebhookRetention = sp.GetRequiredService<IConfiguration>().GetValue("Sync:WebhookRetention", TimeSpan.FromDays(7)),
                TransientRetryDelays = sp.GetRequiredService<IConfiguration>()["Sync:TransientRetryDelays"] is { Length: > 0 } delays
                    ? delays.Split(',').Select(d => TimeSpan.Parse(d.Trim(), System.Globalization.CultureInfo.InvariantCulture)).ToList()
                    : new SyncRunSettings().TransientRetryDelays,
            }).AddSingleton(sp => new SyncSchedulerSettings
            {
                ReconcileEvery = sp.GetRequiredService<IConfiguration>().GetValue("Sync:ReconcileEvery", TimeSpan.FromMinutes(5)),
                OverdueGrace = sp.GetRequiredService<IConfiguration>().GetValue("Sync:OverdueGrace", TimeSpan.FromMinutes(2)),
            }).AddSingleton(sp =>
            {
                var config = sp.GetRequiredService<IConfiguration>();
                var defaults = new CdcStreamingSettings();
                return new CdcStreamingSettings
                {
                    ChunkSize = config.GetValue("Cdc:ChunkSize", defaults.ChunkSize),
                    FlushInterval = config.GetValue("Cdc:FlushInterval", defaults.FlushInterval),
                    ProgressEventInterval = config.GetValue("Cdc:ProgressEventInterval", defaults.ProgressEventInterval),
                    IdleAcknowledgeAfter = config.GetValue("Cdc:IdleAcknowledgeAfter", defaults.IdleAcknowledgeAfter),
                    CheckTablesEvery = config.GetValue("Cdc:CheckTablesEvery", defaults.CheckTablesEvery),
                };
            })
            // One CDC consumer per source with CDC on, on one node at a time (ADR 0047).
            .AddSingleton<Wolverine.Runtime.Agents.IAgentFamily, CdcConsumerAgents>()
            .AddSingleton(new UniqueConstraintProblem(PrefixUniqueIndex, () => Problems.Conflict(
                "Another source of this type with the same prefix was created at the same moment. Choose another prefix.", "prefix_taken", "prefix")))
            // Start-up work of this feature, before the service answers: a database from before one document per source
            // is upgraded (ADR 0032), and the list's count per project is installed where it is missing (ADR 0033).
            .AddHostedService<SourceDocumentUpgrade>()
            .AddHostedService<SourceCounts.Setup>()
            .AddHostedService<SyncScheduleReconciler>();
}
