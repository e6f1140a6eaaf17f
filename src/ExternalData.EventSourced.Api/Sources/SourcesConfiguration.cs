using ExternalData.EventSourced.Infrastructure.Encryption;
using JasperFx.Events.Projections;
using Marten;
using Marten.Schema;
using Marten.Schema.Indexing.Unique;

namespace ExternalData.EventSourced.Sources;

public static class SourcesConfiguration
{
    public const string PrefixUniqueIndex = "uq_source_warehouse_prefix";

    public static StoreOptions ConfigureSources(this StoreOptions options)
    {
        // The write model: an inline snapshot, so a command loads one document instead of replaying the stream.
        options.Projections.Snapshot<Source>(SnapshotLifecycle.Inline);
        options.Schema.For<Source>().MultiTenanted();

        // The read model behind list and retrieve: inline, so a read right after a write sees it.
        options.Projections.Add<SourceDetailsProjection>(ProjectionLifecycle.Inline);
        options.Schema.For<SourceDetails>().MultiTenanted()
            .Index(x => x.CreatedAt)
            .Duplicate(x => x.SourceType)
            .Duplicate(x => x.Prefix!)
            .UniqueIndex(UniqueIndexType.DuplicatedField, PrefixUniqueIndex, TenancyScope.PerTenant, x => x.WarehousePrefixKey!);

        // Data keys live apart from events so that deleting one shreds the secrets sealed with it.
        options.Schema.For<DataKey>().MultiTenanted();
        return options;
    }
}
