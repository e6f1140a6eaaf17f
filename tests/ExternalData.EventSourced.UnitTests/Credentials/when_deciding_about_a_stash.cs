using System.Text.Json.Nodes;
using ExternalData.EventSourced.Credentials;
using ExternalData.EventSourced.Credentials.ConnectLinks;
using ExternalData.EventSourced.Credentials.Expiring;
using ExternalData.EventSourced.Credentials.Stashing;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using ExternalData.EventSourced.SourceTypes.Discovery;
using ExternalData.EventSourced.UnitTests.Sources;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Credentials;

public sealed class when_deciding_about_a_stash
{
    private static readonly NewStash Draft = new(Guid.Parse("01a2176c-0000-7000-8000-0000000000aa"), "Postgres", new SealedSecrets("bm9uY2U=", "c2VhbGVk"),
        new DataKey { Id = Guid.Parse("01a2176c-0000-7000-8000-0000000000aa"), MasterKeyId = "k1", WrappedKey = "d3JhcHBlZA==" });

    [Fact]
    public void a_stash_records_who_and_how_and_schedules_its_own_expiry()
    {
        var (stashed, expiry) = StashCredentialsHandler.Decide(when_folding_a_source.Caller with { Channel = "web" }, Draft, Given.Now, TimeSpan.FromHours(24));

        stashed.ExpiresAt.ShouldBe(Given.Now.AddHours(24));
        stashed.StashedVia.ShouldBe("web");
        stashed.StashedBy.Name.ShouldBe("alice");
        stashed.Payload.ShouldBe(Draft.Payload);
        expiry.Message.ShouldBe(new ExpireCredentials(Draft.Id, Given.Now.AddHours(24), "1"));
        expiry.Options!.ScheduledTime.ShouldBe(Given.Now.AddHours(24));
    }

    [Fact]
    public void a_stash_is_usable_until_it_expires_or_is_consumed()
    {
        var stash = CredentialStash.Create(new CredentialsStashed(Draft.Id, "1", "Postgres", Draft.Payload, when_folding_a_source.Alice, "api", Given.Now, Given.Now.AddHours(24)));
        stash.IsUsableAt(Given.Now.AddHours(23)).ShouldBeTrue();
        stash.IsUsableAt(Given.Now.AddHours(24)).ShouldBeFalse();

        stash.Apply(new CredentialsConsumed(Draft.Id, Guid.NewGuid(), when_folding_a_source.Alice, "mcp", Given.Now));
        stash.IsUsableAt(Given.Now).ShouldBeFalse();
        stash.Payload.ShouldBeNull("a consumed stash keeps no sealed payload in its write model");
    }

    [Fact]
    public void expiry_fires_once_at_its_time_and_waits_again_when_early()
    {
        var stash = CredentialStash.Create(new CredentialsStashed(Draft.Id, "1", "Postgres", Draft.Payload, when_folding_a_source.Alice, "api", Given.Now, Given.Now.AddHours(24)));
        var message = new ExpireCredentials(Draft.Id, stash.ExpiresAt);

        var (early, _, again) = ExpireCredentialsHandler.Handle(message, stash, Given.Now.AddHours(1));
        early.ShouldBeEmpty();
        again.ShouldHaveSingleItem();

        var (due, shred, none) = ExpireCredentialsHandler.Handle(message, stash, Given.Now.AddHours(25));
        var expired = due.ShouldHaveSingleItem().ShouldBeOfType<CredentialsExpired>();
        expired.ExpiredBy.ShouldBe(Actor.System("credential-expiry"), "nobody asked for it: the service records its own expiries");
        expired.ExpiredVia.ShouldBe(Channel.System);
        shred.GetType().Name.ShouldStartWith("Delete");
        none.ShouldBeEmpty();

        stash.Apply(new CredentialsExpired(Draft.Id, Given.Now.AddHours(25)));
        ExpireCredentialsHandler.Handle(message, stash, Given.Now.AddHours(26)).Item1.ShouldBeEmpty();
    }

    [Fact]
    public void a_connect_link_is_single_use_and_expires()
    {
        var link = ConnectLink.Create(new ConnectLinkIssued(Guid.NewGuid(), "1", "Postgres", when_folding_a_source.Alice, "api", Given.Now, Given.Now.AddHours(1)));
        link.IsUsableAt(Given.Now.AddMinutes(59)).ShouldBeTrue();
        link.IsUsableAt(Given.Now.AddHours(1)).ShouldBeFalse();
        link.Apply(new ConnectLinkSpent(link.Id, Guid.NewGuid(), Given.Now));
        link.IsUsableAt(Given.Now).ShouldBeFalse();
    }

    [Theory]
    [InlineData(new[] { "created_at", "updated_at", "id" }, true, "incremental", "updated_at")]
    [InlineData(new[] { "id", "created_at" }, true, "incremental", "created_at")]
    [InlineData(new[] { "id" }, true, "incremental", "id")]
    [InlineData(new string[0], true, "full_refresh", null)]
    [InlineData(new[] { "created" }, false, "append", "created")]
    public void setup_defaults_follow_posthogs_ranking(string[] cursors, bool incremental, string syncType, string? field)
    {
        var table = new DiscoveredTable("t", null, null, [], cursors.Select(c => new IncrementalField(c, "integer", c, "integer")).ToList(),
            incremental, true, true, false, false, 1, ["id"], null, null);

        var settings = SyncTypeRules.DefaultFor(table);
        (settings.ShouldSync, settings.SyncType, settings.IncrementalField).ShouldBe((true, syncType, field));
        settings.PrimaryKeyColumns.ShouldBe(["id"]);
        SyncTypeRules.DefaultFor(table with { PermissionError = "no SELECT" }).ShouldSync.ShouldBeFalse();
        SyncTypeRules.DefaultFor(table with { WebhookOnly = true }).SyncType.ShouldBeNull();
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
