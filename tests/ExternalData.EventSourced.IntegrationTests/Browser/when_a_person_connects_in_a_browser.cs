using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Microsoft.Playwright;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Browser;

/// <summary>
/// The agent-safe flow as a person meets it, in a real headless Chromium (Debian's, never a downloaded one) against
/// the service as a real process: connect link → page → stored_credentials → setup → the link is spent.
/// </summary>
public sealed class when_a_person_connects_in_a_browser(AppFixture app) : IntegrationContext(app), IAsyncLifetime
{
    public const string Chromium = "/usr/lib/chromium/chromium";
    private ServiceProcess _service = null!;
    private IPlaywright _playwright = null!;
    private IBrowser _browser = null!;

    public async Task InitializeAsync()
    {
        File.Exists(Chromium).ShouldBeTrue($"Chromium is expected at {Chromium} (apt-get install chromium; .ci/run does this)");
        _service = await ServiceProcess.StartAsync(App);
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Chromium,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        });
    }

    public async Task DisposeAsync()
    {
        if (_browser is not null) await _browser.DisposeAsync();
        _playwright?.Dispose();
        if (_service is not null) await _service.DisposeAsync();
    }

    private async Task<string> ConnectUrlAsync()
    {
        var link = (await Api.GetAsync($"{Sources}connect_link/?source_type=Postgres")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        // Issued by the in-process node, opened on the real process: the link is valid on every node.
        return _service.BaseUrl + new Uri(link["connect_url"]!.GetValue<string>()).AbsolutePath;
    }

    private static string ScreenshotPath(string name)
    {
        var folder = Path.Combine(AppContext.BaseDirectory, "screenshots");
        Directory.CreateDirectory(folder);
        return Path.Combine(folder, name);
    }

    [Fact]
    public async Task a_person_fills_the_form_and_the_agent_finishes_the_setup_with_only_the_id()
    {
        var url = await ConnectUrlAsync();
        var page = await _browser.NewPageAsync();
        var problems = new List<string>();
        page.Console += (_, message) => { if (message.Type == "error") problems.Add(message.Text); };
        var response = await page.GotoAsync(url);
        response!.Status.ShouldBe(200);

        // Every control has an accessible name.
        var unnamed = await page.EvaluateAsync<string[]>(
            "() => [...document.querySelectorAll('input, select, textarea')].filter(e => !e.labels || e.labels.length === 0).map(e => e.name)");
        unnamed.ShouldBeEmpty();
        (await page.GetByRole(AriaRole.Heading, new() { Name = "Connect Postgres" }).CountAsync()).ShouldBe(1);

        // Required fields are checked in the page before anything is sent.
        await page.GetByRole(AriaRole.Button, new() { Name = "Save credentials" }).ClickAsync();
        (await page.Locator("#form-error").TextContentAsync()).ShouldBe("Fill in the required fields.");

        await page.GetByLabel("Host").FillAsync(App.Source.Host);
        await page.GetByLabel("Port").FillAsync(App.Source.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await page.GetByLabel("Database").FillAsync(App.Source.Name);
        await page.GetByLabel("User").FillAsync(SourceDatabase.Reader);
        await page.GetByLabel("Password").FillAsync("wrong-password-in-browser");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save credentials" }).ClickAsync();
        var error = page.Locator("#form-error");
        await error.WaitForAsync(new() { State = WaitForSelectorState.Visible });
        await Assertions.Expect(error).Not.ToHaveTextAsync("Fill in the required fields.");
        (await page.ContentAsync()).ShouldNotContain("wrong-password-in-browser");
        await page.ScreenshotAsync(new() { Path = ScreenshotPath("connect-page-refused.png"), FullPage = true });

        await page.GetByLabel("Password").FillAsync(App.Source.ReaderPassword);
        await page.GetByLabel("Schema").FillAsync("public");
        await page.GetByRole(AriaRole.Button, new() { Name = "Save credentials" }).ClickAsync();
        var success = page.GetByRole(AriaRole.Status);
        await Assertions.Expect(success).ToContainTextAsync("Credentials saved");
        var shownId = await page.Locator("#credential-id").TextContentAsync();
        await page.ScreenshotAsync(new() { Path = ScreenshotPath("connect-page-success.png"), FullPage = true });
        (await page.ContentAsync()).ShouldNotContain(App.Source.ReaderPassword);

        // The agent's side: it finds the id and sets the source up, never having seen a secret.
        var stored = (await Api.GetAsync($"{Sources}stored_credentials/?source_type=Postgres")).Json.AsArray().ShouldHaveSingleItem()!;
        stored["credential_id"]!.GetValue<string>().ShouldBe(shownId);
        (await Api.PostAsync($"{Sources}setup/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = new JsonObject { ["credential_id"] = shownId } }))
            .ShouldHaveStatus(HttpStatusCode.Created);

        var reopened = await _browser.NewPageAsync();
        (await reopened.GotoAsync(url))!.Status.ShouldBe(410);
        await Assertions.Expect(reopened.GetByRole(AriaRole.Heading)).ToHaveTextAsync("This link can no longer be used");
        await reopened.ScreenshotAsync(new() { Path = ScreenshotPath("connect-page-gone.png") });
        problems.Where(p => !p.Contains("400", StringComparison.Ordinal)).ShouldBeEmpty("no script error beyond the refused first try");
    }

    [Fact]
    public async Task the_form_works_from_the_keyboard_alone()
    {
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(await ConnectUrlAsync());

        // Tab walks the fields in order; typing fills the focused one; Enter submits.
        var values = new Dictionary<string, string>
        {
            ["connection_string"] = "", ["host"] = App.Source.Host, ["port"] = App.Source.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["database"] = App.Source.Name, ["user"] = SourceDatabase.Reader, ["password"] = App.Source.ReaderPassword, ["schema"] = "public",
        };
        foreach (var (name, value) in values)
        {
            await page.Keyboard.PressAsync("Tab");
            (await page.EvaluateAsync<string>("() => document.activeElement.name")).ShouldBe(name);
            if (value.Length > 0) await page.Keyboard.TypeAsync(value);
        }

        await page.Keyboard.PressAsync("Enter");
        await Assertions.Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Credentials saved");
        await page.ScreenshotAsync(new() { Path = ScreenshotPath("connect-page-keyboard.png"), FullPage = true });
        (await Api.GetAsync($"{Sources}stored_credentials/")).Json.AsArray().Count.ShouldBe(1);
    }
}
