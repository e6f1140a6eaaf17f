using System.Text.Json.Nodes;
using ExternalData.EventSourced.Sources;
using ExternalData.EventSourced.SourceTypes.Discovery;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

public sealed class when_selecting_schemas_at_creation
{
    private static readonly IReadOnlyList<DiscoveredTable> Discovered =
    [
        Table("orders", ["id"], new IncrementalField("updated_at", "timestamp", "updated_at", "timestamp")),
        Table("events", null),
    ];

    private static DiscoveredTable Table(string name, IReadOnlyList<string>? pk, params IncrementalField[] fields) => new(
        name, null, null, [new DiscoveredColumn("id", "integer", false), new DiscoveredColumn("updated_at", "timestamp", true)], fields,
        fields.Length > 0, fields.Length > 0, pk is not null, false, false, 10, pk, null, null);

    private static (IReadOnlyList<SyncSettingsOf>? Schemas, string? Problem) Build(JsonNode? requested, bool direct = false)
    {
        var (schemas, problem) = SchemaSelection.Build(requested, Discovered, direct, cdcEnabled: false, Guid.NewGuid);
        return (schemas?.Select(s => new SyncSettingsOf(s.Name, s.Settings, s.Facts)).ToList(), problem?.Detail);
    }

    [Fact]
    public void an_incremental_table_gets_its_cursor_and_the_discovered_primary_key_and_the_rest_start_disabled()
    {
        var (schemas, problem) = Build(new JsonArray(new JsonObject
        {
            ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "incremental", ["incremental_field"] = "updated_at",
            ["incremental_field_type"] = "timestamp", ["incremental_field_lookback_seconds"] = 3600.0,
        }));

        problem.ShouldBeNull();
        var orders = schemas!.Single(s => s.Name == "orders");
        orders.ShouldSync.ShouldBeTrue();
        orders.SyncType.ShouldBe("incremental");
        orders.PrimaryKeyColumns.ShouldBe(["id"]);
        orders.IncrementalFieldLookbackSeconds.ShouldBe(3600);
        orders.SyncFrequency.ShouldBe("6hour");
        var events = schemas!.Single(s => s.Name == "events");
        events.ShouldSync.ShouldBeFalse();
        events.SyncType.ShouldBeNull();
    }

    [Fact]
    public void an_enabled_table_without_a_sync_type_is_recorded_as_the_full_refresh_it_runs_as()
    {
        // PostHog's create stores it as given and its pipeline runs it as a full refresh (ref §5.2 step 17); bulk update
        // refuses the same choice on a stored schema (ref §5.21). One rule module says both: SyncTypeRules.
        var (schemas, problem) = Build(new JsonArray(new JsonObject { ["name"] = "events", ["should_sync"] = true }));

        problem.ShouldBeNull();
        schemas!.Single(s => s.Name == "events").SyncType.ShouldBe(SyncTypes.FullRefresh);
        SyncTypeRules.RefusalToEnable(shouldSync: true, syncType: null, direct: false).ShouldBe(SyncTypeRules.NotSetUp);
        SyncTypeRules.RefusalToEnable(shouldSync: true, syncType: null, direct: true).ShouldBeNull("a direct source's tables never sync");
        SyncTypeRules.AtCreate(shouldSync: false, SyncTypes.Cdc, direct: false).ShouldBeNull("a CDC choice on a disabled table means not set up");
        SyncTypeRules.AtCreate(shouldSync: true, null, direct: true).ShouldBeNull();
    }

    [Theory]
    [InlineData(null, "Schemas not given")]
    [InlineData("[]", "Schemas not given")]
    [InlineData("{}", "Schemas not given")]
    [InlineData("[{\"name\":\"nope\"}]", "Schemas given do not exist in source")]
    [InlineData("[{\"should_sync\":true}]", "Each schema must be an object with a name.")]
    [InlineData("[{\"name\":\"orders\",\"should_sync\":true,\"sync_type\":\"cdc\"}]",
        "CDC must be enabled on the source before selecting it as a sync type. The following schemas requested CDC: orders.")]
    [InlineData("[{\"name\":\"orders\",\"should_sync\":true,\"sync_type\":\"append\"}]", "Incremental schemas given do not have an incremental field set")]
    [InlineData("[{\"name\":\"orders\",\"should_sync\":true,\"sync_type\":\"incremental\",\"incremental_field\":\"updated_at\"}]",
        "Incremental schemas given do not have an incremental field type set")]
    [InlineData("[{\"name\":\"orders\",\"sync_type\":\"teleport\"}]", "\"teleport\" is not a valid choice for sync_type of schema 'orders'.")]
    [InlineData("[{\"name\":\"orders\",\"sync_time_of_day\":\"25:00\"}]", "Invalid sync time of day")]
    [InlineData("[{\"name\":\"orders\",\"enabled_columns\":[\"id\",\"ghost\"]}]",
        "Unknown columns in enabled_columns: ['ghost']. Run `Pull new schemas` to refresh available columns.")]
    [InlineData("[{\"name\":\"orders\",\"primary_key_columns\":[\"ghost\"]}]",
        "Unknown columns in primary_key_columns: ['ghost']. Run `Pull new schemas` to refresh available columns.")]
    [InlineData("[{\"name\":\"orders\",\"should_sync\":true,\"sync_type\":\"append\",\"incremental_field\":\"ghost\",\"incremental_field_type\":\"integer\"}]",
        "Unknown incremental field 'ghost' for schema 'orders'.")]
    [InlineData("[{\"name\":\"orders\",\"should_sync\":\"yes\"}]", "should_sync of schema 'orders' must be true or false.")]
    [InlineData("[{\"name\":\"orders\",\"enabled_columns\":[1,\"id\"]}]", "enabled_columns of schema 'orders' must be a list of column names.")]
    [InlineData("[{\"name\":\"orders\",\"primary_key_columns\":\"id\"}]", "primary_key_columns of schema 'orders' must be a list of column names.")]
    [InlineData("[{\"name\":\"orders\",\"row_filters\":{\"column\":\"id\"}}]", "row_filters of schema 'orders' must be a list.")]
    [InlineData("[{\"name\":\"orders\",\"row_filters\":[{\"column\":\"id\",\"operator\":\"~\",\"value\":1}]}]",
        "Invalid row filter for schema 'orders': operator must be one of >, >=, <, <=, =, !=, IN, NOT IN")]
    [InlineData("[{\"name\":\"orders\",\"row_filters\":[{\"column\":\"ghost\",\"operator\":\"=\",\"value\":1}]}]",
        "Invalid row filter for schema 'orders': unknown column 'ghost'")]
    public void refuses_a_bad_request_in_posthogs_words(string? json, string expected) =>
        Build(json is null ? null : JsonNode.Parse(json)).Problem.ShouldBe(expected);

    [Theory]
    [InlineData("-1")]
    [InlineData("5184001")]
    [InlineData("1.5")]
    [InlineData("true")]
    [InlineData("\"60\"")]
    public void refuses_a_lookback_that_is_not_a_whole_number_in_range(string lookback)
    {
        var entry = $"[{{\"name\":\"orders\",\"should_sync\":true,\"sync_type\":\"incremental\",\"incremental_field\":\"updated_at\",\"incremental_field_type\":\"timestamp\",\"incremental_field_lookback_seconds\":{lookback}}}]";
        Build(JsonNode.Parse(entry)).Problem.ShouldBe("incremental_field_lookback_seconds must be an integer between 0 and 5184000 (60 days) for schema 'orders'.");
    }

    [Fact]
    public void a_cdc_choice_on_a_disabled_table_means_not_set_up()
    {
        var (schemas, _) = Build(JsonNode.Parse("[{\"name\":\"orders\",\"should_sync\":false,\"sync_type\":\"cdc\"}]"));
        schemas!.Single(s => s.Name == "orders").SyncType.ShouldBeNull();
    }

    [Fact]
    public void direct_sources_get_no_sync_settings_and_refuse_row_filters()
    {
        var (schemas, _) = Build(JsonNode.Parse("[{\"name\":\"orders\",\"should_sync\":true,\"sync_type\":\"full_refresh\",\"sync_time_of_day\":\"01:00:00\"}]"), direct: true);
        var orders = schemas!.Single(s => s.Name == "orders");
        orders.SyncType.ShouldBeNull();
        orders.SyncFrequency.ShouldBeNull();
        orders.SyncTimeOfDay.ShouldBeNull();

        Build(JsonNode.Parse("[{\"name\":\"orders\",\"row_filters\":[{\"column\":\"id\",\"operator\":\"=\",\"value\":1}]}]"), direct: true).Problem
            .ShouldBe("Row filter not allowed for schema 'orders': row filters are not available for direct query sources.");
    }
}

/// <summary>A built schema read flat, as the assertions above read it.</summary>
internal sealed record SyncSettingsOf(string Name, SyncSettings Settings, TableFacts Facts)
{
    public bool ShouldSync => Settings.ShouldSync;
    public string? SyncType => Settings.SyncType;
    public string? IncrementalField => Settings.IncrementalField;
    public string? IncrementalFieldType => Settings.IncrementalFieldType;
    public int? IncrementalFieldLookbackSeconds => Settings.IncrementalFieldLookbackSeconds;
    public IReadOnlyList<string>? PrimaryKeyColumns => Settings.PrimaryKeyColumns;
    public string? SyncFrequency => Settings.SyncFrequency;
    public string? SyncTimeOfDay => Settings.SyncTimeOfDay;
    public IReadOnlyList<string>? EnabledColumns => Settings.EnabledColumns;
    public System.Text.Json.Nodes.JsonArray? RowFilters => Settings.RowFilters;
    public string? CdcTableMode => Settings.CdcTableMode;
    public IReadOnlyList<AvailableColumn> AvailableColumns => Facts.Columns;
}
