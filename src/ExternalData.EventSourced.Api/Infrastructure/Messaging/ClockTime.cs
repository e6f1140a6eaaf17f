using JasperFx.CodeGeneration;
using JasperFx.CodeGeneration.Frames;
using JasperFx.CodeGeneration.Model;

namespace ExternalData.EventSourced.Infrastructure.Messaging;

/// <summary>
/// Where a handler or endpoint takes <c>DateTimeOffset now</c> (or <c>DateTime</c>), Wolverine's generated code reads the
/// machine clock by default. This source makes it read the registered <see cref="TimeProvider"/> instead, so every
/// handler, generated or not, sees one clock, and a test that moves the clock moves it for all of them.
/// </summary>
public sealed class ClockTimeSource : IVariableSource
{
    public bool Matches(Type type) => type == typeof(DateTimeOffset) || type == typeof(DateTime);

    public Variable Create(Type type) => new ClockTimeFrame(type).Time;

    /// <summary>Puts this source ahead of the built-in one that reads the machine clock.</summary>
    public static void Use(GenerationRules rules)
    {
        foreach (var builtIn in rules.Sources.OfType<NowTimeVariableSource>().ToList()) rules.Sources.Remove(builtIn);
        rules.Sources.Insert(0, new ClockTimeSource());
    }
}

/// <summary><c>var now = clock.GetUtcNow();</c> with the clock resolved like any other dependency.</summary>
public sealed class ClockTimeFrame : SyncFrame
{
    private Variable? _clock;

    public ClockTimeFrame(Type type) => Time = new Variable(type, "now", this);

    public Variable Time { get; }

    public override IEnumerable<Variable> FindVariables(IMethodVariables chain)
    {
        _clock = chain.FindVariable(typeof(TimeProvider));
        yield return _clock;
    }

    public override void GenerateCode(GeneratedMethod method, ISourceWriter writer)
    {
        var read = Time.VariableType == typeof(DateTime) ? ".UtcDateTime" : "";
        writer.Write($"var {Time.Usage} = {_clock!.Usage}.{nameof(TimeProvider.GetUtcNow)}(){read};");
        Next?.GenerateCode(method, writer);
    }
}
