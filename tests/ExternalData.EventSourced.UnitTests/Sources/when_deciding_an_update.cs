using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Sources;
using JasperFx.Events;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

/// <summary>Given the folded events, when the pure Patch decider runs, then these events (no host, no database).</summary>
public sealed class when_deciding_an_update
{
    // Marten sets Version from the stream; one event folded means version 1.
    private static Source GivenSource()
    {
        var source = Source.Create(when_folding_a_source.Created());
        source.Version = 1;
        return source;
    }

    private static UpdateSource Command(UpdateSource command) => command with { SourceId = when_folding_a_source.SourceId, Caller = when_folding_a_source.Caller };

    private static SourceChange NoConfigChange(Source source) => new(source.JobInputs, null, null, false);

    [Fact]
    public void a_new_description_is_one_event_naming_the_change()
    {
        var source = GivenSource();

        var updated = UpdateSourceHandler.Decide(Command(new UpdateSource(null, "nightly", null, null, null, null, null)), source,
            NoConfigChange(source), Given.Now);

        updated.ShouldNotBeNull();
        updated.ChangedFields.ShouldBe(["description"]);
        updated.Description.ShouldBe("nightly");
        updated.Prefix.ShouldBe("prod");
        updated.Secrets.ShouldBeNull();
        updated.UpdatedBy.Name.ShouldBe("alice");
        updated.UpdatedVia.ShouldBe("api");
        updated.UpdatedAt.ShouldBe(Given.Now);
        var after = source.Folded([updated]);
        after.Description.ShouldBe("nightly");
        after.Version.ShouldBe(2);
    }

    [Fact]
    public void nothing_changed_appends_nothing()
    {
        var source = GivenSource();

        var updated = UpdateSourceHandler.Decide(Command(new UpdateSource("prod", null, true, null, "warehouse", "Postgres", "mcp")), source,
            NoConfigChange(source), Given.Now);

        updated.ShouldBeNull();
    }

    [Fact]
    public void new_secrets_and_config_travel_sealed_in_the_event()
    {
        var source = GivenSource();
        var sealedSecrets = new SealedSecrets("bm9uY2U=", "bmV3");
        var change = NoConfigChange(source) with { PublicConfig = new JsonObject { ["host"] = "db2.example.com" }, NewSecrets = sealedSecrets, ConfigChanged = true };

        var updated = UpdateSourceHandler.Decide(Command(new UpdateSource(null, null, null, new JsonObject(), null, null, null)), source, change, Given.Now);

        updated.ShouldNotBeNull();
        updated.ChangedFields.ShouldBe(["job_inputs"]);
        updated.Secrets.ShouldBe(sealedSecrets);
        updated.JobInputs["host"]!.GetValue<string>().ShouldBe("db2.example.com");
    }

    [Theory]
    [InlineData("{\"host\":\"evil.example.com\"}", true)]
    [InlineData("{\"port\":6543}", true)]
    [InlineData("{\"database\":\"other\"}", true)]
    [InlineData("{\"host\":\"evil.example.com\",\"password\":\"again\"}", false)]
    [InlineData("{\"schema\":\"sales\"}", false)]
    [InlineData("{\"host\":\"db.example.com\"}", false)]
    public void moving_the_connection_target_needs_the_secrets_again(string incomingJson, bool refused)
    {
        var definition = Given.Postgres.Definition;
        var stored = new JsonObject { ["host"] = "db.example.com", ["port"] = 5432, ["database"] = "app", ["user"] = "u", ["password"] = "stored" };
        var incoming = JsonNode.Parse(incomingJson)!.AsObject();

        UpdateSourceHandler.CarriesSecretsToNewTarget(definition, stored, definition.Config.Merge(stored, incoming), incoming).ShouldBe(refused);
    }

    [Fact]
    public void the_full_config_lays_secrets_back_into_nested_blocks()
    {
        var combined = StoredConfig.Combine(
            new JsonObject { ["host"] = "h", ["auth_method"] = new JsonObject { ["selection"] = "api_key" } },
            new JsonObject { ["password"] = "p", ["auth_method"] = new JsonObject { ["api_key"] = "k" } });

        combined.ToJsonString().ShouldBe("{\"host\":\"h\",\"auth_method\":{\"selection\":\"api_key\",\"api_key\":\"k\"},\"password\":\"p\"}");
    }

    [Fact]
    public void delete_is_one_event_and_shreds_the_data_key()
    {
        var source = GivenSource();
        var command = new DeleteSource(source.Id) { Caller = when_folding_a_source.Caller with { Channel = "mcp" } };

        var (outcome, events, op, messages, cancelled) = DeleteSourceHandler.Handle(command, source, DeleteSourceHandler.Check(command, source), RunningSyncs.None, Given.Now);

        outcome.Problem.ShouldBeNull();
        events.ShouldHaveSingleItem().ShouldBe(new SourceDeleted(source.Id, when_folding_a_source.Alice, "mcp", Given.Now));
        // The op itself is Wolverine's; the integration test proves the key is gone after a real delete.
        op.GetType().Name.ShouldStartWith("Delete");
        op.GetType().GenericTypeArguments.ShouldBe([typeof(DataKey)]);
        messages.ShouldBeEmpty();
        cancelled.Appends.ShouldBeEmpty("nothing was running");
    }

    [Fact]
    public void delete_cancels_the_running_syncs_as_the_caller_in_the_same_transaction()
    {
        var source = GivenSource();
        var command = new DeleteSource(source.Id) { Caller = when_folding_a_source.Caller };
        var (schemaId, jobId) = (Guid.NewGuid(), Guid.NewGuid());

        var (_, _, _, _, cancelled) = DeleteSourceHandler.Handle(command, source, DeleteSourceHandler.Check(command, source),
            new RunningSyncs([new RunningSync(schemaId, jobId)]), Given.Now);

        cancelled.Appends.ShouldBe([
            (schemaId, new SyncRunCancelled(schemaId, jobId, "Cancelled: the source was deleted.", when_folding_a_source.Alice, command.Caller.Channel, Given.Now)),
            (jobId, new SyncJobCancelled(jobId, "Cancelled: the source was deleted.", when_folding_a_source.Alice, command.Caller.Channel, Given.Now)),
        ]);
    }

    [Fact]
    public void delete_of_a_cdc_source_keeps_the_key_for_its_clean_up()
    {
        var source = GivenSource();
        source.Cdc = new CdcSettings("posthog", "posthog_abc", "posthog_pub_abc", "0/1", true, 1024, 10240, Given.Now);
        var command = new DeleteSource(source.Id) { Caller = when_folding_a_source.Caller };

        var (outcome, events, op, messages, cancelled) = DeleteSourceHandler.Handle(command, source, DeleteSourceHandler.Check(command, source), RunningSyncs.None, Given.Now);

        outcome.Problem.ShouldBeNull();
        events.ShouldHaveSingleItem().ShouldBeOfType<SourceDeleted>().CleanupPending.ShouldBeTrue();
        op.GetType().Name.ShouldNotStartWith("Delete");
        messages.ShouldHaveSingleItem().ShouldBe(new CleanUpDeletedSource(source.Id, source.Version + 1, 1, command.Caller));
    }

    [Fact]
    public void a_stale_if_match_is_refused_before_anything_is_decided()
    {
        var source = GivenSource();
        var outcome = DeleteSourceHandler.Check(new DeleteSource(source.Id) { ExpectedVersion = 7, Caller = when_folding_a_source.Caller }, source);

        outcome.Problem!.Status.ShouldBe(409);
        outcome.Problem.Extensions["code"].ShouldBe("stale_version");
        DeleteSourceHandler.Check(new DeleteSource(source.Id) { Caller = when_folding_a_source.Caller }, null).Problem!.Status.ShouldBe(404);
    }
}
