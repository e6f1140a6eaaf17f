using System.Text.Json.Nodes;
using ExternalData.EventSourced.Credentials;
using ExternalData.EventSourced.Credentials.ConnectLinks;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using JasperFx.Events;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

/// <summary>One fold per aggregate: an event type that no fold handles, and that nobody said changes nothing, fails
/// here rather than being silently ignored by an as-of read or a decision's answer.</summary>
public sealed class when_listing_every_event_type
{
    private static readonly IReadOnlyList<Type> EventTypes = typeof(Source).Assembly.GetTypes()
        .Where(t => typeof(IDomainEvent).IsAssignableFrom(t) && t is { IsInterface: false, IsAbstract: false }).ToList();

    /// <summary>The other streams' aggregates: their events do not concern a source.</summary>
    private static readonly EventFold<CredentialStash> Stash = new(typeof(CredentialStash));
    private static readonly EventFold<ConnectLink> Link = new(typeof(ConnectLink));
    private static readonly EventFold<SchemaSync> SchemaSyncs = new(typeof(SchemaSync));
    private static readonly EventFold<SyncJob> Jobs = new(typeof(SyncJobProjection));

    [Fact]
    public void every_event_type_is_folded_by_its_aggregate_or_said_to_change_nothing()
    {
        EventTypes.Count.ShouldBeGreaterThan(20, "the scan found the event types");
        var unhandled = EventTypes.Where(t => !Source.Fold.Handles(t) && !Source.EventsThatChangeNothing.Contains(t)
                                              && !Stash.Handles(t) && !Link.Handles(t) && !SchemaSyncs.Handles(t) && !Jobs.Handles(t)).ToList();
        unhandled.ShouldBeEmpty("add an Apply method to the aggregate whose stream records it, or list it in Source.EventsThatChangeNothing");
    }

    [Fact]
    public void the_source_fold_handles_exactly_the_event_types_its_methods_name()
    {
        Source.Fold.EventTypes.ShouldBeSubsetOf(EventTypes);
        Source.Fold.Handles(typeof(SourceCreated)).ShouldBeTrue();
        Source.Fold.Handles(typeof(SourceDeleted)).ShouldBeTrue();
        Source.Fold.Handles(typeof(CredentialsStashed)).ShouldBeFalse("a stash's events are another stream's");
        Source.EventsThatChangeNothing.ShouldAllBe(t => !Source.Fold.Handles(t), "an event is either folded or said to change nothing, not both");
    }

    [Fact]
    public void every_event_type_has_a_sentence_in_the_history()
    {
        foreach (var type in EventTypes)
        {
            var instance = System.Runtime.CompilerServices.RuntimeHelpers.GetUninitializedObject(type);
            string summary;
            try
            {
                summary = SourceHistoryEndpoint.Summary(instance);
            }
            catch (Exception e) when (e is NullReferenceException or ArgumentNullException)
            {
                continue; // a case matched, and read a member the uninitialised instance lacks (the default case reads none)
            }

            summary.ShouldNotBe(type.Name, $"{type.Name} has no sentence in SourceHistoryEndpoint.Summary");
        }
    }

    [Fact]
    public void a_fold_creates_applies_and_deletes_through_the_documents_own_methods()
    {
        var created = when_folding_a_source.Created();
        var source = Source.After(null, EventFold<Source>.Wrap(created, 1))!;
        source.Prefix.ShouldBe("prod");
        source.Version.ShouldBe(1);

        var updated = new SourceUpdated(source.Id, ["description"], "prod", "nightly", true, new JsonObject(), null, when_folding_a_source.Alice, "api", Given.Now.AddMinutes(1));
        source = Source.After(source, EventFold<Source>.Wrap(updated, 2))!;
        source.Description.ShouldBe("nightly");
        source.UpdatedAt.ShouldBe(Given.Now.AddMinutes(1));
        source.Version.ShouldBe(2);

        Source.After(source, EventFold<Source>.Wrap(new SourceDeleted(source.Id, when_folding_a_source.Alice, "api", Given.Now), 3)).ShouldBeNull();
        Source.After(null, EventFold<Source>.Wrap(updated, 1)).ShouldBeNull("nothing exists before its creation");
    }

    [Fact]
    public void a_system_caller_is_recorded_as_the_service_and_shown_as_such()
    {
        var caller = Caller.System("1", "scheduler", "corr", "scheduled run");
        caller.Actor.Name.ShouldBe("system:scheduler");
        caller.Actor.ApiKeyId.ShouldBe(Guid.Empty);
        caller.Channel.ShouldBe(Channel.System);
        Channel.Requestable.ShouldNotContain(Channel.System, "a request may not claim the service did it");

        // History and the audit feed read actor and channel from the event's metadata, as CallerMetadata stamps them.
        var e = EventFold<Source>.Wrap(new CredentialsExpired(Guid.NewGuid(), Given.Now, caller.Actor, caller.Channel), 2);
        e.Headers = new Dictionary<string, object> { ["actor_name"] = caller.Actor.Name, ["created_via"] = caller.Channel };
        var entry = SourceHistoryEndpoint.Entry(e, ApiJson.Options);
        entry.Actor.ShouldBe(new HistoryActor(null, "system:scheduler"));
        entry.CreatedVia.ShouldBe("system");
        entry.Data!["expired_by"]!["name"]!.GetValue<string>().ShouldBe("system:scheduler");
    }
}
