using System.Collections.Frozen;
using System.Reflection;
using JasperFx.Events;

namespace ExternalData.EventSourced.Shared;

/// <summary>A fact recorded in an event stream. Every event type carries it, so a test can enumerate them all and
/// prove each is folded by its aggregate or said to change nothing there.</summary>
public interface IDomainEvent;

/// <summary>
/// A document's fold, taken from its own conventional methods, the ones Marten's generated code calls when it stores
/// the document: <c>Create(e)</c>, <c>Apply(e)</c> (instance, on the document) or <c>Apply(e, doc)</c> (static, on a
/// projection), and <c>ShouldDelete(e)</c>, each taking the event or <c>IEvent&lt;T&gt;</c>. Marten has no fold a
/// pure decision can call in memory, so this one calls the same methods: an as-of read, a decision's answer and a
/// rebuild can never disagree, and there is no second list of event types to forget one in.
/// </summary>
public sealed class EventFold<TDoc> where TDoc : class
{
    private delegate TDoc? Step(TDoc? doc, IEvent @event);

    private readonly FrozenDictionary<Type, Step> _steps;

    /// <param name="methodsOn">The type whose public methods fold the document: the document itself, or its projection.</param>
    public EventFold(Type methodsOn)
    {
        var steps = new Dictionary<Type, Step>();
        var creates = new Dictionary<Type, MethodInfo>();
        var applies = new Dictionary<Type, MethodInfo>();
        var deletes = new Dictionary<Type, MethodInfo>();
        foreach (var method in methodsOn.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
        {
            var target = method.Name switch { "Create" => creates, "Apply" => applies, "ShouldDelete" => deletes, _ => null };
            if (target is null || method.GetParameters() is not [var first, ..]) continue;
            target[EventTypeOf(first.ParameterType)] = method;
        }

        foreach (var type in creates.Keys.Concat(applies.Keys).Concat(deletes.Keys).Distinct())
        {
            creates.TryGetValue(type, out var create);
            applies.TryGetValue(type, out var apply);
            deletes.TryGetValue(type, out var delete);
            steps[type] = (doc, e) =>
            {
                if (delete is not null && doc is not null && (bool)Invoke(delete, doc, e)!) return null;
                if (doc is null) return create is null ? null : (TDoc?)Invoke(create, null, e);
                if (apply is null) return doc;
                var applied = Invoke(apply, doc, e);
                return apply.ReturnType == typeof(void) ? doc : (TDoc?)applied;
            };
        }

        _steps = steps.ToFrozenDictionary();
    }

    /// <summary>The event types this fold reacts to.</summary>
    public IReadOnlyCollection<Type> EventTypes => _steps.Keys;

    public bool Handles(Type eventType) => _steps.ContainsKey(eventType);

    /// <summary>The document after <paramref name="event"/>: created, changed, left as it was (an event it has no method
    /// for), or null (deleted, or an event before its creation).</summary>
    public TDoc? Apply(TDoc? doc, IEvent @event) => _steps.TryGetValue(@event.EventType, out var step) ? step(doc, @event) : doc;

    /// <summary>An event not yet stored, wrapped as the stream will hold it at <paramref name="version"/>.</summary>
    public static IEvent Wrap(object data, long version)
    {
        var wrapped = (IEvent)Activator.CreateInstance(typeof(Event<>).MakeGenericType(data.GetType()), data)!;
        wrapped.Version = version;
        return wrapped;
    }

    private static Type EventTypeOf(Type parameter) =>
        parameter.IsGenericType && parameter.GetGenericTypeDefinition() == typeof(IEvent<>) ? parameter.GetGenericArguments()[0] : parameter;

    private static object? Invoke(MethodInfo method, TDoc? doc, IEvent e)
    {
        var parameters = method.GetParameters();
        var arguments = new object?[parameters.Length];
        arguments[0] = parameters[0].ParameterType.IsInstanceOfType(e) && !parameters[0].ParameterType.IsInstanceOfType(e.Data) ? e : e.Data;
        for (var i = 1; i < parameters.Length; i++)
            arguments[i] = parameters[i].ParameterType == typeof(TDoc) ? doc : throw new InvalidOperationException($"{method.DeclaringType?.Name}.{method.Name} takes a {parameters[i].ParameterType.Name}, which a fold cannot supply.");
        return method.Invoke(method.IsStatic ? null : doc, arguments);
    }
}
