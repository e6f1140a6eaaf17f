using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>A thin HTTP client over the in-process server: sends JSON exactly as a client would write it.</summary>
public sealed class ApiClient(HttpClient http, string? apiKey)
{
    public async Task<ApiResponse> SendAsync(HttpMethod method, string url, object? body = null, IDictionary<string, string>? headers = null)
    {
        using var request = new HttpRequestMessage(method, url);
        if (apiKey is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        foreach (var (name, value) in headers ?? new Dictionary<string, string>()) request.Headers.TryAddWithoutValidation(name, value);
        if (body is not null)
        {
            var json = body switch { string s => s, JsonNode n => n.ToJsonString(), _ => System.Text.Json.JsonSerializer.Serialize(body) };
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }

        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return new ApiResponse(response.StatusCode, text, response.Content.Headers.ContentType?.MediaType, response.Headers.Location?.ToString());
    }

    public Task<ApiResponse> GetAsync(string url) => SendAsync(HttpMethod.Get, url);
    public Task<ApiResponse> PostAsync(string url, object body) => SendAsync(HttpMethod.Post, url, body);
    public Task<ApiResponse> PatchAsync(string url, object body, IDictionary<string, string>? headers = null) => SendAsync(HttpMethod.Patch, url, body, headers);
    public Task<ApiResponse> DeleteAsync(string url) => SendAsync(HttpMethod.Delete, url);
}

public sealed record ApiResponse(HttpStatusCode Status, string Text, string? ContentType, string? Location)
{
    public JsonNode Json => JsonNode.Parse(Text)!;

    public ApiResponse ShouldHaveStatus(HttpStatusCode expected)
    {
        Status.ShouldBe(expected, Text);
        return this;
    }

    /// <summary>A problem response: the status, <c>application/problem+json</c>, and PostHog's fields.</summary>
    public ApiResponse ShouldBeProblem(HttpStatusCode expected, string detail, string? attr = null)
    {
        ShouldHaveStatus(expected);
        ContentType.ShouldBe("application/problem+json");
        var json = Json;
        json["detail"]!.GetValue<string>().ShouldBe(detail);
        json["message"]!.GetValue<string>().ShouldBe(detail);
        json["status"]!.GetValue<int>().ShouldBe((int)expected);
        json["type"].ShouldNotBeNull();
        json["code"].ShouldNotBeNull();
        if (attr is not null) json["attr"]!.GetValue<string>().ShouldBe(attr);
        return this;
    }
}
