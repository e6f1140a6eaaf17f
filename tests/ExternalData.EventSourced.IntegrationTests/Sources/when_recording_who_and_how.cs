using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using JasperFx.Events;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;
using ExternalData.EventSourced.Infrastructure.Messaging;

namespace ExternalData.EventSourced.IntegrationTests.Sources;

/// <summary>The channel and the actor of every change land in the event body and in the event metadata alike, and
/// the correlation id of the request ties them together.</summary>
public sealed class when_recording_who_and_how(AppFixture app) : IntegrationContext(app)
{
    private async Task<IReadOnlyList<IEvent>> StreamAsync(string id)
    {
        await using var session = App.Host.Services.GetRequiredService<IDocumentStore>().QuerySession(ProjectId);
        return await session.Events.FetchStreamAsync(Guid.Parse(id));
    }

    private static (string? Channel, string? ActorId, string? ActorName) Metadata(IEvent e) =>
        (e.Headers?[CallerMetadata.CreatedViaHeader]?.ToString(), e.Headers?[CallerMetadata.ActorIdHeader]?.ToString(), e.Headers?[CallerMetadata.ActorNameHeader]?.ToString());

    [Theory]
    [InlineData(null, "api")]
    [InlineData("api", "api")]
    [InlineData("mcp", "mcp")]
    [InlineData("web", "web")]
    public async Task a_create_says_its_channel_in_the_body_and_the_metadata(string? createdVia, string expected)
    {
        var body = CreateBody();
        body["created_via"] = createdVia;
        var created = (await Api.SendAsync(HttpMethod.Post, Sources, body, new Dictionary<string, string> { ["X-Request-Id"] = $"req-{expected}" }))
            .ShouldHaveStatus(HttpStatusCode.Created).Json;
        created["created_via"]!.GetValue<string>().ShouldBe(expected);

        var events = await StreamAsync(created["id"]!.GetValue<string>());
        var sourceCreated = events[0].Data.ShouldBeOfType<SourceCreated>();
        sourceCreated.CreatedVia.ShouldBe(expected);
        events.Skip(1).Select(e => e.Data).OfType<SchemaAdded>().ShouldAllBe(a => a.AddedVia == expected);
        foreach (var e in events)
        {
            Metadata(e).ShouldBe((expected, sourceCreated.CreatedBy.ApiKeyId.ToString(), sourceCreated.CreatedBy.Name));
            e.CorrelationId.ShouldBe($"req-{expected}");
            e.CausationId.ShouldNotBeNullOrEmpty();
        }
    }

    [Fact]
    public async Task updates_bulk_updates_refreshes_and_deletes_carry_the_caller_too()
    {
        var created = await CreateSourceAsync();
        var id = created["id"]!.GetValue<string>();
        var orders = created["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "orders")!["id"]!.GetValue<string>();
        var key = await App.IssueKeyAsync("auditor-bot", ExternalData.EventSourced.Infrastructure.Auth.Scopes.All, [ProjectId]);
        var bot = App.Client(key);

        (await bot.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "by the bot" })).ShouldHaveStatus(HttpStatusCode.OK);
        (await bot.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/",
            new JsonObject { ["schemas"] = new JsonArray(new JsonObject { ["id"] = orders, ["sync_frequency"] = "1hour" }) })).ShouldHaveStatus(HttpStatusCode.OK);
        (await bot.SendAsync(HttpMethod.Post, $"{SourceUrl(id)}refresh_schemas/")).ShouldHaveStatus(HttpStatusCode.OK);
        (await bot.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);

        var later = (await StreamAsync(id)).Skip(CreatedVersion).ToList();
        later.Select(e => e.Data.GetType().Name).ShouldBe(["SourceUpdated", "SchemasBulkUpdated", "SchemasRefreshed", "SourceDeleted"]);
        var bodies = later.Select(e => e.Data switch
        {
            SourceUpdated u => (u.UpdatedBy, u.UpdatedVia),
            SchemasBulkUpdated b => (b.UpdatedBy, b.UpdatedVia),
            SchemasRefreshed r => (r.RefreshedBy, r.RefreshedVia),
            SourceDeleted d => (d.DeletedBy, d.DeletedVia),
            _ => throw new InvalidOperationException(),
        }).ToList();
        bodies.ShouldAllBe(b => b.Item1.Name == "auditor-bot" && b.Item2 == "api");
        foreach (var (e, (actor, channel)) in later.Zip(bodies)) Metadata(e).ShouldBe((channel, actor.ApiKeyId.ToString(), actor.Name));
    }
}
