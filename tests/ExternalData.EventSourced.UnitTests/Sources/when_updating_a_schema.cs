using System.Text.Json.Nodes;
using ExternalData.EventSourced.Sources;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

public sealed class when_updating_a_schema
{
    private static readonly SourceSchema Orders = when_folding_a_source.Orders;

    private static SourceSchema WebhookOnly => new()
    {
        Id = Guid.NewGuid(), Name = "Discount", Settings = Orders.Settings with { SyncType = null, ShouldSync = false },
        Facts = Orders.Facts with { Capabilities = Orders.Facts.Capabilities with { WebhookOnly = true, SupportsWebhooks = true } },
    };

    [Fact]
    public void only_present_keys_change_and_the_changed_fields_are_named()
    {
        var (result, changed, reason) = SchemaUpdate.Apply(Orders, JsonNode.Parse("{\"sync_frequency\":\"1hour\",\"should_sync\":true}")!.AsObject(), direct: false);

        reason.ShouldBeNull();
        result.ShouldBe(Orders.Settings with { SyncFrequency = "1hour" });
        changed.ShouldBe(["sync_frequency"]);
    }

    [Fact]
    public void turning_off_a_cursor_sync_type_keeps_the_cursor_for_later()
    {
        var (result, changed, _) = SchemaUpdate.Apply(Orders, JsonNode.Parse("{\"sync_type\":\"full_refresh\"}")!.AsObject(), direct: false);

        result!.SyncType.ShouldBe("full_refresh");
        result.IncrementalField.ShouldBe("updated_at");
        changed.ShouldBe(["sync_type"]);
    }

    [Theory]
    [InlineData("{\"should_sync\":true,\"sync_type\":null}", "Sync type must be set up first before enabling schema")]
    [InlineData("{\"sync_frequency\":\"1min\"}", "A 1-minute sync frequency is only available for CDC schemas. The fastest frequency for other sync types is 5 minutes.")]
    [InlineData("{\"sync_type\":\"webhook\"}", "orders does not support webhook sync")]
    [InlineData("{\"incremental_field_type\":null}", "Incremental schemas given do not have an incremental field type set")]
    [InlineData("{\"sync_time_of_day\":\"12:00\"}", "Invalid sync time of day")]
    [InlineData("{\"cdc_table_mode\":\"mirror\"}", "\"mirror\" is not a valid choice for cdc_table_mode")]
    [InlineData("{\"enabled_columns\":[1,2]}", "enabled_columns must be a list of column names")]
    public void refuses_with_the_reason(string entry, string reason) =>
        SchemaUpdate.Apply(Orders, JsonNode.Parse(entry)!.AsObject(), direct: false).Reason.ShouldBe(reason);

    [Fact]
    public void a_webhook_only_table_takes_only_webhook_sync()
    {
        SchemaUpdate.Apply(WebhookOnly, JsonNode.Parse("{\"sync_type\":\"append\"}")!.AsObject(), direct: false).Reason
            .ShouldBe("Discount can only be synced via webhooks — pick the Webhook sync method.");
        SchemaUpdate.Apply(WebhookOnly, JsonNode.Parse("{\"sync_type\":\"webhook\",\"should_sync\":true}")!.AsObject(), direct: false).Reason.ShouldBeNull();
    }

    [Fact]
    public void a_direct_source_has_no_sync_settings()
    {
        SchemaUpdate.Apply(Orders, JsonNode.Parse("{\"sync_type\":\"full_refresh\"}")!.AsObject(), direct: true).Reason
            .ShouldBe("sync settings are not available for direct query sources; only should_sync and enabled_columns apply");
        SchemaUpdate.Apply(new SourceSchema { Id = Orders.Id, Name = Orders.Name, Facts = Orders.Facts, Settings = Orders.Settings with { SyncType = null } }, JsonNode.Parse("{\"should_sync\":true,\"enabled_columns\":[\"id\"]}")!.AsObject(), direct: true)
            .Reason.ShouldBeNull();
    }
}
