using System.Text;
using System.Text.Encodings.Web;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Configuration;

namespace ExternalData.EventSourced.Credentials.ConnectPage;

/// <summary>
/// The connect page's HTML, rendered from the source type's own field definitions (the same ones that validate the
/// config), so the form can never ask for something the service would not accept. No external assets: the script
/// and style are the service's own, and the page's Content-Security-Policy forbids anything else.
/// </summary>
public static class ConnectPageHtml
{
    private static readonly HtmlEncoder Html = HtmlEncoder.Default;

    public static string Form(SourceTypeDefinition type, DateTimeOffset expiresAt)
    {
        var fields = new StringBuilder();
        foreach (var field in type.Fields) Field(fields, field, prefix: "");
        return Page($"Connect {type.Label}", $"""
            <h1>Connect {E(type.Label)}</h1>
            <p>Enter the credentials for this {E(type.Label)} source. They are checked, encrypted and stored for one setup; nobody who sent you this link sees them.
               This link works once, until {E(expiresAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm 'UTC'", System.Globalization.CultureInfo.InvariantCulture))}.</p>
            <form id="connect-form" novalidate>
            {fields}
              <p id="form-error" class="error" role="alert" hidden></p>
              <button type="submit" id="submit">Save credentials</button>
            </form>
            <div id="success" role="status" hidden>
              <h2>Credentials saved</h2>
              <p>You can close this page. Your assistant will finish the setup with credential id <code id="credential-id"></code>.</p>
            </div>
            """);
    }

    public static string Gone() => Page("Link no longer valid", """
        <h1>This link can no longer be used</h1>
        <p>It has already been used, or it has expired. Ask whoever sent it for a new link.</p>
        """);

    public static string NotFound() => Page("Link not found", """
        <h1>This link is not valid</h1>
        <p>Check that you copied the whole link, or ask for a new one.</p>
        """);

    private static void Field(StringBuilder html, SourceField field, string prefix)
    {
        var path = prefix + field.Name;
        var id = "f-" + path.Replace('.', '-');
        var required = field.Required ? " required aria-required=\"true\"" : "";
        var mark = field.Required ? " <span aria-hidden=\"true\">*</span>" : "";
        switch (field)
        {
            case InputField input:
                var described = input.Caption is null ? "" : $" aria-describedby=\"{id}-caption\"";
                var placeholder = input.Placeholder is null ? "" : $" placeholder=\"{E(input.Placeholder)}\"";
                html.Append($"""<div class="field"><label for="{id}">{E(input.Label)}{mark}</label>""");
                html.Append(input.InputType == "textarea"
                    ? $"""<textarea id="{id}" name="{E(path)}"{required}{described}{placeholder}></textarea>"""
                    : $"""<input id="{id}" name="{E(path)}" type="{InputType(input)}" autocomplete="off" spellcheck="false"{required}{described}{placeholder}>""");
                if (input.Caption is not null) html.Append($"""<p class="caption" id="{id}-caption">{E(input.Caption)}</p>""");
                html.Append($"""<p class="field-error" id="{id}-error" hidden></p></div>""");
                break;
            case SelectField select:
                html.Append($"""<div class="field"><label for="{id}">{E(select.Label)}{mark}</label><select id="{id}" name="{E(path)}.selection" data-select="{E(path)}"{required}>""");
                foreach (var option in select.Options)
                    html.Append($"""<option value="{E(option.Value)}"{(option.Value == select.DefaultValue ? " selected" : "")}>{E(option.Label)}</option>""");
                html.Append("</select></div>");
                foreach (var option in select.Options.Where(o => o.Fields.Count > 0))
                {
                    var active = option.Value == select.DefaultValue;
                    html.Append($"""<fieldset data-option-of="{E(path)}" data-option="{E(option.Value)}"{(active ? "" : " disabled hidden")}><legend>{E(option.Label)}</legend>""");
                    foreach (var nested in option.Fields) Field(html, nested, path + ".");
                    html.Append("</fieldset>");
                }

                break;
            case SshTunnelField:
                html.Append("""<p class="caption">SSH tunnels are not supported yet: connect to a host reachable from this service.</p>""");
                break;
            case SwitchGroupField group:
                html.Append($"""<div class="field switch"><input id="{id}" name="{E(path)}.enabled" type="checkbox" data-switch="{E(path)}"{(group.Default ? " checked" : "")}><label for="{id}">{E(group.Label)}</label></div>""");
                html.Append($"""<fieldset data-switch-of="{E(path)}"{(group.Default ? "" : " disabled hidden")}><legend>{E(group.Label)}</legend>""");
                foreach (var nested in group.Fields) Field(html, nested, path + ".");
                html.Append("</fieldset>");
                break;
        }
    }

    private static string InputType(InputField input) => input.IsSecret ? "password" : input.InputType == "number" ? "number" : "text";

    private static string E(string text) => Html.Encode(text);

    private static string Page(string title, string body) => $"""
        <!doctype html>
        <html lang="en">
        <head>
          <meta charset="utf-8">
          <meta name="viewport" content="width=device-width, initial-scale=1">
          <meta name="referrer" content="no-referrer">
          <title>{E(title)}</title>
          <link rel="icon" href="/connect/assets/icon.svg" type="image/svg+xml">
          <link rel="stylesheet" href="/connect/assets/connect.css">
          <script src="/connect/assets/connect.js" defer></script>
        </head>
        <body>
        <main>
        {body}
        </main>
        </body>
        </html>
        """;
}
