using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Credentials.ConnectLinks;
using ExternalData.EventSourced.Credentials.Expiring;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using FluentValidation;
using JasperFx.Events;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Credentials.Stashing;

/// <summary>POST external_data_sources/store_credentials/ (API.md §3 row 10, ref §5.17, §8). The connect page runs
/// this same use case with channel <c>web</c>.</summary>
public sealed record StashCredentials(string? SourceType, JsonObject? Payload) : ICommand
{
    [JsonIgnore] public Caller Caller { get; init; } = null!;
    /// <summary>Set by the connect page: the link this stash spends (single use), in the same transaction.</summary>
    [JsonIgnore] public Guid? ConnectLinkId { get; init; }

    // Wolverine logs a failed message with its ToString(): the payload holds secrets, so it is never printed.
    public override string ToString() => $"StashCredentials {{ SourceType = {SourceType}, ConnectLinkId = {ConnectLinkId}, Caller = {Caller} }}";

    public sealed class Validator : AbstractValidator<StashCredentials>
    {
        public Validator()
        {
            RuleFor(x => x.SourceType).NotEmpty().WithMessage("This field is required.").WithErrorCode("required");
            RuleFor(x => x.Payload).NotNull().WithMessage("This field is required.").WithErrorCode("required");
        }
    }
}

/// <summary>What <c>store_credentials</c> answers (ref §4.4): metadata, never the payload.</summary>
public sealed record StoredCredential(Guid CredentialId, string SourceType, DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt);

/// <summary>A checked config, sealed under a data key of its own.</summary>
public sealed record NewStash(Guid Id, string SourceType, SealedSecrets Payload, DataKey DataKey, IEventStream<ConnectLink>? Link = null);

public static class StashCredentialsHandler
{
    /// <summary>The same gate as create (<see cref="SourceConfigGate"/>: secret references refused, strings trimmed,
    /// the form's rules, host policy, a live login), then the whole config sealed. Nothing is stored on failure.</summary>
    public static async Task<Checked<NewStash>> LoadAsync(
        StashCredentials command, IValidator<StashCredentials> validator, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher,
        TimeProvider clock, CancellationToken ct)
    {
        // A connect page's link is locked first: two submissions of one page cannot both stash.
        IEventStream<ConnectLink>? link = null;
        if (command.ConnectLinkId is { } linkId)
        {
            link = await session.Events.FetchForExclusiveWriting<ConnectLink>(linkId, ct);
            if (link.Aggregate is null) return Problems.NotFound();
            if (!link.Aggregate.IsUsableAt(clock.GetUtcNow())) return ConnectLinkGone();
        }

        if (await Validation.CheckAsync(validator, command, ct) is { } invalid) return invalid;
        if (!registry.TryGet(command.SourceType, out var type))
            return Problems.Validation($"\"{command.SourceType}\" is not a valid choice.", "source_type", "invalid_choice");

        var (config, problem) = SourceConfigGate.Validate(type, command.Payload!);
        if (problem is not null) return problem;
        if (await SourceConfigGate.CheckCredentialsAsync(type, config!, ct) is { } credentials) return credentials;

        var id = Guid.CreateVersion7(clock.GetUtcNow());
        var (dataKey, key) = cipher.NewDataKey(id, clock.GetUtcNow());
        return new NewStash(id, type.Definition.Name, cipher.Seal(config!, key, id), dataKey, link);
    }

    public static ProblemDetails ConnectLinkGone() => Problems.Create(StatusCodes.Status410Gone, "gone", "connect_link_used_or_expired",
        "This link has already been used or has expired. Ask for a new one.", null);

    /// <summary>The stash's stream starts, its key is stored, and its expiry is scheduled: one transaction.</summary>
    public static (Checked<StoredCredential>, IMartenOp, IMartenOp, IMartenOp, object[]) Handle(
        StashCredentials command, Checked<NewStash> stash, TimeProvider clock, IOptions<CredentialsOptions> options)
    {
        if (stash.Problem is { } problem) return (problem, MartenOps.Nothing(), MartenOps.Nothing(), MartenOps.Nothing(), []);
        var now = clock.GetUtcNow();
        var (stashed, expiry) = Decide(command.Caller, stash.Value!, now, options.Value.TimeToLive);
        IMartenOp spend = stash.Value!.Link is { } link
            ? new AppendToLockedStream<ConnectLink>(link, new ConnectLinkSpent(link.Id, stashed.CredentialId, now))
            : MartenOps.Nothing();
        return (new StoredCredential(stashed.CredentialId, stashed.SourceType, stashed.StashedAt, stashed.ExpiresAt),
            MartenOps.StartStream<CredentialStash>(stashed.CredentialId, stashed), MartenOps.Store(stash.Value!.DataKey), spend, [expiry]);
    }

    public static (CredentialsStashed Stashed, DeliveryMessage<ExpireCredentials> Expiry) Decide(Caller caller, NewStash stash, DateTimeOffset now, TimeSpan timeToLive)
    {
        var expiresAt = now + timeToLive;
        var stashed = new CredentialsStashed(stash.Id, caller.ProjectId, stash.SourceType, stash.Payload, caller.Actor, caller.Channel, now, expiresAt);
        return (stashed, new ExpireCredentials(stash.Id, expiresAt, caller.ProjectId).ScheduledAt(expiresAt));
    }
}

public static class StashCredentialsEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/store_credentials")]
    [ProducesResponseType<StoredCredential>(StatusCodes.Status201Created)]
    public static async Task<IResult> Post(string project_id, StashCredentials command, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<StoredCredential>(command with { Caller = HttpCaller.From(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value, statusCode: StatusCodes.Status201Created);
    }
}
