using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Stripe;
using Microsoft.Extensions.Options;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.SourceTypes;

/// <summary>What a Stripe field lands as (SYNC.md §1), which tables incremental is offered for, and what a delivery carries.</summary>
public sealed class when_typing_stripe_objects
{
    private static readonly StripeSourceType Stripe = new(new StaticOptions());
    private static readonly JsonObject Config = new() { ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = "rk_test_x" } };

    [Fact]
    public void unix_times_are_timestamps_amounts_integers_nested_values_jsonb()
    {
        var read = Stripe.OpenObjects(Config, "Customer");
        read.WarehouseTypeOf("created", JsonValue.Create(1_700_000_000L)).ShouldBe("timestamp with time zone");
        read.WarehouseTypeOf("canceled_at", JsonValue.Create(1_700_000_000L)).ShouldBe("timestamp with time zone");
        read.WarehouseTypeOf("current_period_end", JsonValue.Create(1_700_000_000L)).ShouldBe("timestamp with time zone");
        read.WarehouseTypeOf("amount", JsonValue.Create(1999L)).ShouldBe("bigint");
        read.WarehouseTypeOf("percent_off", JsonValue.Create(12.5m)).ShouldBe("numeric");
        read.WarehouseTypeOf("email", JsonValue.Create("a@b.c")).ShouldBe("text");
        read.WarehouseTypeOf("livemode", JsonValue.Create(false)).ShouldBe("boolean");
        read.WarehouseTypeOf("address", new JsonObject { ["city"] = "Lisbon" }).ShouldBe("jsonb");
        read.WarehouseTypeOf("preferred_locales", new JsonArray("en")).ShouldBe("jsonb");
    }

    [Fact]
    public void incremental_is_offered_where_stripe_sends_update_events_about_the_tables_own_objects()
    {
        Stripe.OpenObjects(Config, "Customer").HasChangeLog.ShouldBeTrue();
        Stripe.OpenObjects(Config, "Subscription").HasChangeLog.ShouldBeTrue();
        Stripe.OpenObjects(Config, "BalanceTransaction").HasChangeLog.ShouldBeFalse("its events are about transfers");
        Stripe.OpenObjects(Config, "Discount").HasChangeLog.ShouldBeFalse("webhook only: no list to merge into");
        Stripe.OpenObjects(Config, "Discount").Listable.ShouldBeFalse();
        Stripe.OpenObjects(Config, "SubscriptionItem").HasChangeLog.ShouldBeFalse("no account-wide list");
    }

    [Fact]
    public void a_deletion_event_carries_the_objects_last_state_flagged_deleted()
    {
        var change = Stripe.ChangeOf("""{"id":"evt_1","object":"event","type":"customer.deleted","created":1700000100,"data":{"object":{"id":"cus_1","object":"customer","email":"a@b.c","deleted":true}}}""")!;
        change.ObjectId.ShouldBe("cus_1");
        change.Deleted.ShouldBeTrue();
        change.Created.ShouldBe(1_700_000_100);
        change.Object["email"]!.GetValue<string>().ShouldBe("a@b.c");
        change.Object.ContainsKey("deleted").ShouldBeFalse("the flag is the warehouse's _ph_deleted, not a column");
        Stripe.ChangeOf("""{"id":"evt_2","type":"customer.updated","data":{}}""").ShouldBeNull();
        Stripe.ChangeOf("not json").ShouldBeNull();
    }

    private sealed class StaticOptions : IOptionsMonitor<StripeOptions>
    {
        public StripeOptions CurrentValue { get; } = new();
        public StripeOptions Get(string? name) => CurrentValue;
        public IDisposable? OnChange(Action<StripeOptions, string?> listener) => null;
    }
}
