using ExternalData.EventSourced.Sources;
using Mono.Cecil;
using Mono.Cecil.Cil;
using NetArchTest.Rules;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Architecture;

/// <summary>
/// The map in docs/architecture.md, held by the compiled code (its type references, method bodies included):
/// Infrastructure and Shared know no feature, Shared knows no Infrastructure, no slice names a concrete source type,
/// and the Sources use cases call each other in one direction only.
/// </summary>
public sealed class when_checking_what_may_call_what
{
    private const string Root = "ExternalData.EventSourced";
    private static readonly System.Reflection.Assembly Api = typeof(Source).Assembly;

    // NetArchTest matches whole namespace segments: "Sources" does not match "SourceTypes".
    private static readonly string[] Features = [$"{Root}.Sources", $"{Root}.Credentials", $"{Root}.Audit", $"{Root}.Catalogue", $"{Root}.Mcp"];
    private static readonly string[] ConcreteSourceTypes = [$"{Root}.SourceTypes.Postgres", $"{Root}.SourceTypes.Stripe"];

    private static void ShouldHold(TestResult result, string rule) =>
        result.IsSuccessful.ShouldBeTrue($"{rule}; broken by: {string.Join(", ", result.FailingTypeNames ?? [])}");

    [Fact]
    public void infrastructure_imports_no_feature() => ShouldHold(
        Types.InAssembly(Api).That().ResideInNamespace($"{Root}.Infrastructure").ShouldNot().HaveDependencyOnAny(Features).GetResult(),
        "Infrastructure must not know a feature");

    [Fact]
    public void shared_imports_neither_a_feature_nor_infrastructure() => ShouldHold(
        Types.InAssembly(Api).That().ResideInNamespace($"{Root}.Shared").ShouldNot().HaveDependencyOnAny([.. Features, $"{Root}.Infrastructure"]).GetResult(),
        "Shared holds domain-neutral contracts only");

    [Fact]
    public void no_slice_imports_a_concrete_source_type() => ShouldHold(
        Types.InAssembly(Api).That().ResideInNamespaceMatching($@"^{Root.Replace(".", @"\.")}\.(Sources|Credentials|Audit|Catalogue|Mcp|Infrastructure|Shared)(\..*)?$")
            .ShouldNot().HaveDependencyOnAny(ConcreteSourceTypes).GetResult(),
        "slices reach source types through their capability interfaces (ISourceType, IChangeDataCapture, IWebhookProvider)");

    /// <summary>The Sources feature keeps one namespace and a folder per use case; the folders are read from the debug
    /// symbols (where each type's code is), the references from the IL.</summary>
    [Fact]
    public void the_sources_use_cases_call_each_other_in_one_direction_only()
    {
        var graph = SourcesFolderGraph();

        // The feature root (aggregate, events, rules shared by several use cases) needs no use case, so a shared piece
        // can never close a cycle through it. The feature's composition (SourcesConfiguration) wires them all up.
        graph.Where(e => e.From == "").ShouldBeEmpty($"the Sources root reaches into use cases: {Describe(graph.Where(e => e.From == ""))}");

        var cycle = FindCycle(graph);
        cycle.ShouldBeNull($"use cases call each other in a circle: {string.Join(" → ", cycle ?? [])}; edges: {Describe(graph.Where(e => cycle?.Contains(e.From) == true && cycle.Contains(e.To)))}");
    }

    private sealed record Edge(string From, string To, string Because);

    private static string Describe(IEnumerable<Edge> edges) => string.Join("; ", edges.Select(e => $"{e.From}/ → {e.To}/ ({e.Because})"));

    private static List<Edge> SourcesFolderGraph()
    {
        using var module = ModuleDefinition.ReadModule(Api.Location, new ReaderParameters { ReadSymbols = true });
        var sources = module.Types.Where(t => t.Namespace == $"{Root}.Sources" && t.Name != nameof(SourcesConfiguration)).ToList();
        var folders = sources.Select(t => (Type: t, Folder: FolderOf(t))).Where(t => t.Folder is not null).ToDictionary(t => t.Type.FullName, t => t.Folder!);

        var edges = new HashSet<Edge>();
        foreach (var type in sources.Where(t => folders.ContainsKey(t.FullName)))
        {
            var from = folders[type.FullName];
            foreach (var used in References(type).Select(Outermost).Distinct())
                if (folders.TryGetValue(used, out var to) && to != from)
                    edges.Add(new Edge(from, to, $"{type.Name} uses {used[(used.LastIndexOf('.') + 1)..]}"));
        }

        // One reason per pair of folders is enough to read.
        return edges.GroupBy(e => (e.From, e.To)).Select(g => g.First()).ToList();
    }

    /// <summary>The folder under Sources/ that holds the type's code ("" for the root), from its methods' sequence points.</summary>
    private static string? FolderOf(TypeDefinition type)
    {
        var document = AllTypes(type).SelectMany(t => t.Methods)
            .Where(m => m.HasBody && m.DebugInformation.HasSequencePoints)
            .Select(m => m.DebugInformation.SequencePoints.First(p => !p.IsHidden).Document.Url.Replace('\\', '/'))
            .FirstOrDefault();
        if (document is null) return null;
        var relative = document[(document.LastIndexOf("/Sources/", StringComparison.Ordinal) + "/Sources/".Length)..];
        return relative.Contains('/') ? relative[..relative.IndexOf('/')] : "";
    }

    private static IEnumerable<TypeDefinition> AllTypes(TypeDefinition type) => new[] { type }.Concat(type.NestedTypes.SelectMany(AllTypes));

    private static IEnumerable<TypeReference> References(TypeDefinition root)
    {
        foreach (var type in AllTypes(root))
        {
            if (type.BaseType is { } baseType) yield return baseType;
            foreach (var i in type.Interfaces) yield return i.InterfaceType;
            foreach (var f in type.Fields) yield return f.FieldType;
            foreach (var p in type.Properties) yield return p.PropertyType;
            foreach (var m in type.Methods)
            {
                yield return m.ReturnType;
                foreach (var p in m.Parameters) yield return p.ParameterType;
                if (!m.HasBody) continue;
                foreach (var v in m.Body.Variables) yield return v.VariableType;
                foreach (var instruction in m.Body.Instructions)
                {
                    switch (instruction.Operand)
                    {
                        case TypeReference t: yield return t; break;
                        case MethodReference method:
                            yield return method.DeclaringType;
                            if (method is GenericInstanceMethod generic) foreach (var a in generic.GenericArguments) yield return a;
                            break;
                        case FieldReference field: yield return field.DeclaringType; break;
                    }
                }
            }
        }
    }

    /// <summary>The full name of the top-level type a reference names (nested, generic and array types unwrapped).</summary>
    private static string Outermost(TypeReference type)
    {
        while (type is TypeSpecification spec && type is not GenericInstanceType) type = spec.ElementType;
        if (type is GenericInstanceType generic) type = generic.ElementType;
        while (type.DeclaringType is not null) type = type.DeclaringType;
        return type.FullName;
    }

    private static List<string>? FindCycle(List<Edge> edges)
    {
        var next = edges.ToLookup(e => e.From, e => e.To);
        var state = new Dictionary<string, int>();
        var path = new List<string>();

        List<string>? Visit(string node)
        {
            state[node] = 1;
            path.Add(node);
            foreach (var to in next[node])
            {
                if (state.GetValueOrDefault(to) == 1) return [.. path.SkipWhile(p => p != to), to];
                if (state.GetValueOrDefault(to) == 0 && Visit(to) is { } found) return found;
            }

            path.RemoveAt(path.Count - 1);
            state[node] = 2;
            return null;
        }

        foreach (var node in edges.Select(e => e.From).Distinct())
            if (state.GetValueOrDefault(node) == 0 && Visit(node) is { } cycle)
                return cycle;
        return null;
    }
}
