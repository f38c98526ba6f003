//! Every output format, from one [`View`]: the live HTML snippet for iframes, the SVG
//! badge, JSON, plain text, the live-update event payload, the index page and the 404.
//!
//! Everything that comes from a user (status text, JID) goes through [`escape`] in HTML
//! and SVG and through serde_json in JSON; the snippet's style and script are constants,
//! so the Content-Security-Policy can pin them by hash and allow nothing else.

use std::fmt::Write;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::view::View;

/// Width and height (CSS pixels) of the iframe the READMEs and the index page recommend:
/// one line of 14 px text is about 25 px high with the padding; 32 leaves room for fonts
/// with taller glyphs (emoji). tests/test_webstatus_embed.py renders it in Chromium.
pub const IFRAME_SIZE: (u32, u32) = (260, 32);

/// Longest status text on the SVG badge, in characters.
const BADGE_STATUS_CHARS: usize = 48;

/// The snippet's stylesheet (pinned by hash in the CSP). One line whatever the status: the
/// show text stays whole, a long status message or address ends in an ellipsis (the address
/// gives up its room first), so the documented iframe size ([`IFRAME_SIZE`]) never clips.
pub const SNIPPET_STYLE: &str = "html,body{margin:0;padding:0;background:transparent}\
body{font:14px/1.4 system-ui,-apple-system,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif;color:#1f2328}\
.ws{display:flex;align-items:center;gap:.45em;padding:.2em .35em;white-space:nowrap;overflow:hidden}\
.dot{flex:none;width:.75em;height:.75em;border-radius:50%;background:#8c959f}\
.ws-chat .dot,.ws-available .dot{background:#2da44e}.ws-away .dot{background:#bf8700}\
.ws-xa .dot{background:#bc4c00}.ws-dnd .dot{background:#cf222e}.ws-unknown .dot{background:#afb8c1}\
.show{flex:none;font-weight:600}.status,.jid{min-width:0;overflow:hidden;text-overflow:ellipsis;color:#59636e}\
.jid{flex-shrink:100;font-size:.9em}[hidden]{display:none!important}";

/// The snippet's live-update script (pinned by hash in the CSP): Server-Sent Events from
/// `<page>/events`, and a reload every minute when they are unavailable.
pub const SNIPPET_SCRIPT: &str = "(function(){\
var root=document.getElementById(\"ws\");\
function put(id,value){var el=document.getElementById(id);el.textContent=value||\"\";el.hidden=!value;}\
function apply(d){root.className=\"ws ws-\"+d.css;root.setAttribute(\"data-show\",d.show);\
put(\"ws-show\",d.text);put(\"ws-status\",d.status);put(\"ws-jid\",d.jid);}\
function later(){setTimeout(function(){location.reload();},60000);}\
if(!window.EventSource){later();return;}\
var es=new EventSource(location.pathname.replace(/\\/+$/,\"\")+\"/events\");\
es.onmessage=function(e){try{apply(JSON.parse(e.data));}catch(x){}};\
es.onerror=function(){if(es.readyState===2){later();}};\
})();";

const INDEX_STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;color:#1f2328}\
code,pre{background:#f6f8fa;border-radius:4px;padding:.1em .3em}pre{padding:.6em;overflow:auto}";

fn sha256_source(text: &str) -> String {
    format!(
        "'sha256-{}'",
        STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// CSP of the HTML snippet: only our own style and script, live updates from our origin,
/// and framing allowed from anywhere (that is its purpose).
pub static SNIPPET_CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; style-src {}; script-src {}; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors *",
        sha256_source(SNIPPET_STYLE),
        sha256_source(SNIPPET_SCRIPT)
    )
});

/// CSP of the index page: our style only, no framing.
pub static INDEX_CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; style-src {}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
        sha256_source(INDEX_STYLE)
    )
});

/// CSP of everything else (SVG, JSON, text, 404): nothing may load or run, no framing.
pub const LOCKED_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// Escapes text for HTML and XML content and attribute values (the framework's one escaper).
pub use xmpp_component::escape_markup as escape;

/// The iframe snippet: dot, show text, then status and JID if the user shows them.
pub fn html(view: &View) -> String {
    let mut out = String::with_capacity(
        1200 + SNIPPET_STYLE.len()
            + SNIPPET_SCRIPT.len()
            + view.status.as_ref().map_or(0, |s| s.len() * 2),
    );
    out.push_str(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><meta name=\"referrer\" content=\"no-referrer\">\
         <title>XMPP status</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"60\"></noscript><style>",
    );
    out.push_str(SNIPPET_STYLE);
    let display = view.display;
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "</style></head><body><div id=\"ws\" class=\"ws ws-{}\" data-show=\"{}\">\
         <span class=\"dot\" aria-hidden=\"true\"></span>\
         <span id=\"ws-show\" class=\"show\">{}</span>",
        display.css(),
        display.key(),
        display.text()
    );
    optional_span(&mut out, "ws-status", "status", view.status.as_deref());
    optional_span(&mut out, "ws-jid", "jid", view.jid.as_deref());
    out.push_str("</div><script>");
    out.push_str(SNIPPET_SCRIPT);
    out.push_str("</script></body></html>\n");
    out
}

fn optional_span(out: &mut String, id: &str, class: &str, text: Option<&str>) {
    let _ = write!(out, "<span id=\"{id}\" class=\"{class}\"");
    match text {
        Some(text) => {
            out.push('>');
            out.push_str(&escape(text));
        }
        None => out.push_str(" hidden>"),
    }
    out.push_str("</span>");
}

/// A flat badge: label (the JID if shown, else "xmpp") and the state, coloured.
pub fn svg(view: &View) -> String {
    let label = view.jid.as_deref().unwrap_or("xmpp");
    let mut value = view.display.text().to_owned();
    if let Some(status) = &view.status {
        value.push_str(": ");
        let mut chars = status.chars();
        value.extend(chars.by_ref().take(BADGE_STATUS_CHARS));
        if chars.next().is_some() {
            value.push('…');
        }
    }
    let value = value.replace(['\n', '\t'], " ");
    let (lw, vw) = (text_width(label) + 12, text_width(&value) + 12);
    let width = lw + vw;
    let (label, value) = (escape(label), escape(&value));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"20\" role=\"img\" \
         aria-label=\"{label}: {value}\"><title>{label}: {value}</title>\
         <linearGradient id=\"s\" x2=\"0\" y2=\"100%\"><stop offset=\"0\" stop-color=\"#bbb\" \
         stop-opacity=\".1\"/><stop offset=\"1\" stop-opacity=\".1\"/></linearGradient>\
         <clipPath id=\"r\"><rect width=\"{width}\" height=\"20\" rx=\"3\" fill=\"#fff\"/></clipPath>\
         <g clip-path=\"url(#r)\"><rect width=\"{lw}\" height=\"20\" fill=\"#555\"/>\
         <rect x=\"{lw}\" width=\"{vw}\" height=\"20\" fill=\"{color}\"/>\
         <rect width=\"{width}\" height=\"20\" fill=\"url(#s)\"/></g>\
         <g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,Geneva,DejaVu Sans,sans-serif\" \
         font-size=\"11\"><text x=\"{lx}\" y=\"14\">{label}</text>\
         <text x=\"{vx}\" y=\"14\">{value}</text></g></svg>\n",
        color = view.display.color(),
        lx = lw / 2,
        vx = lw + vw / 2,
    )
}

/// Rough rendered width in pixels of `text` in 11px Verdana.
fn text_width(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | ' ' => 4,
            'm' | 'w' | 'M' | 'W' | '@' => 10,
            c if c.is_ascii() => 7,
            c if (c as u32) >= 0x2E80 => 12,
            _ => 8,
        })
        .sum()
}

#[derive(Serialize)]
struct JsonView<'a> {
    show: &'static str,
    status: Option<&'a str>,
    jid: Option<&'a str>,
    since: Option<String>,
}

/// `{"show":..,"status":..,"jid":..,"since":..}`; hidden or missing values are `null`.
pub fn json(view: &View) -> String {
    let body = JsonView {
        show: view.display.key(),
        status: view.status.as_deref(),
        jid: view.jid.as_deref(),
        since: view.since.map(rfc3339),
    };
    // Serialising plain strings and options cannot fail.
    let mut out = serde_json::to_string(&body).unwrap_or_default();
    out.push('\n');
    out
}

#[derive(Serialize)]
struct EventView<'a> {
    show: &'static str,
    css: &'static str,
    text: &'static str,
    status: Option<&'a str>,
    jid: Option<&'a str>,
    since: Option<String>,
}

/// The live-update payload: the JSON fields plus what the snippet displays.
pub fn event(view: &View) -> String {
    let body = EventView {
        show: view.display.key(),
        css: view.display.css(),
        text: view.display.text(),
        status: view.status.as_deref(),
        jid: view.jid.as_deref(),
        since: view.since.map(rfc3339),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// One line: `[jid: ]Show[: status]`.
pub fn text(view: &View) -> String {
    let mut out = String::new();
    if let Some(jid) = &view.jid {
        out.push_str(jid);
        out.push_str(": ");
    }
    out.push_str(view.display.text());
    if let Some(status) = &view.status {
        out.push_str(": ");
        out.push_str(&status.replace(['\n', '\r'], " "));
    }
    out.push('\n');
    out
}

/// The body of every 404.
pub const NOT_FOUND: &str = "Not found\n";

/// The index page: what this is and how to register.
pub fn index(domain: &str, public_url: &str) -> String {
    let d = escape(domain);
    let u = escape(public_url);
    let (w, h) = IFRAME_SIZE;
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Web presence for XMPP</title><style>{INDEX_STYLE}</style></head><body>\
         <h1>Web presence for XMPP</h1>\
         <p>Show your XMPP (Jabber) presence on your web page: an iframe, an SVG badge, JSON \
         or plain text, updated live.</p>\
         <h2>Register</h2><ul>\
         <li><a href=\"xmpp:{d}?register\">Register with {d}</a> from your client \
         (service discovery, in-band registration), or</li>\
         <li>add <code>{d}</code> to your contacts, or</li>\
         <li>send it the chat message <code>register</code> (<code>help</code> lists the \
         commands).</li></ul>\
         <p>Then approve its request to see your presence. It sends you your private URL; \
         your address is never part of it. Your status message and address are shown only \
         if you switch them on. <a href=\"xmpp:{d}?unregister\">Unregister</a> at any time.</p>\
         <h2>Embed</h2>\
         <pre>&lt;iframe src=\"{u}/status/TOKEN\" width=\"{w}\" height=\"{h}\" \
         style=\"border:0\" title=\"XMPP status\"&gt;&lt;/iframe&gt;\n\
         &lt;img src=\"{u}/status/TOKEN.svg\" alt=\"XMPP status\"&gt;\n\
         {u}/status/TOKEN.json\n{u}/status/TOKEN.txt</pre>\
         </body></html>\n"
    )
}

/// Unix seconds as RFC 3339 UTC (`2024-05-01T12:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Display;

    /// A view in a given state, for tests.
    fn sample(display: Display, status: Option<&str>, jid: Option<&str>) -> View {
        View {
            display,
            status: status.map(str::to_owned),
            jid: jid.map(str::to_owned),
            since: Some(1_700_000_000),
        }
    }

    const XSS: &str = "<script>alert(1)</script>";

    #[test]
    fn user_text_is_inert_in_html() {
        let view = sample(Display::Away, Some(XSS), Some("a'b\"c@x"));
        let page = html(&view);
        assert!(!page.contains(XSS));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a&apos;b&quot;c@x"));
        // Only our own script element.
        assert_eq!(page.matches("<script").count(), 1);
    }

    #[test]
    fn user_text_is_inert_in_svg() {
        let view = sample(Display::Dnd, Some(XSS), None);
        let badge = svg(&view);
        assert!(!badge.contains("<script"));
        assert!(badge.contains("&lt;script&gt;"));
        assert!(badge.contains("Do not disturb"));
        assert!(badge.contains("#cf222e"));
    }

    #[test]
    fn json_is_valid_and_exact() {
        let view = sample(Display::Away, Some(XSS), None);
        let value: serde_json::Value = serde_json::from_str(&json(&view)).expect("valid JSON");
        assert_eq!(
            value,
            serde_json::json!({"show": "away", "status": XSS, "jid": null, "since": "2023-11-14T22:13:20Z"})
        );
        let hidden = sample(Display::NotShared, None, None);
        let value: serde_json::Value = serde_json::from_str(&json(&hidden)).expect("valid JSON");
        assert_eq!(value["show"], "offline");
        let event: serde_json::Value = serde_json::from_str(&event(&hidden)).expect("event");
        assert_eq!(event["text"], "Not shared");
    }

    #[test]
    fn every_show_text() {
        for (display, text) in [
            (Display::Available, "Available"),
            (Display::Away, "Away"),
            (Display::Dnd, "Do not disturb"),
            (Display::Xa, "Extended away"),
            (Display::Chat, "Free for chat"),
            (Display::Offline, "Offline"),
        ] {
            let view = sample(display, None, None);
            assert!(html(&view).contains(&format!(">{text}<")), "{text}");
            assert_eq!(self::text(&view), format!("{text}\n"));
        }
    }

    #[test]
    fn hidden_parts_are_absent() {
        let page = html(&sample(Display::Available, None, None));
        assert!(page.contains("id=\"ws-status\" class=\"status\" hidden></span>"));
        assert!(page.contains("id=\"ws-jid\" class=\"jid\" hidden></span>"));
        assert_eq!(
            text(&sample(Display::Away, Some("lunch"), Some("a@b"))),
            "a@b: Away: lunch\n"
        );
    }

    #[test]
    fn csp_pins_the_inline_code() {
        assert!(SNIPPET_CSP.contains("script-src 'sha256-"));
        assert!(SNIPPET_CSP.contains("frame-ancestors *"));
        assert!(!SNIPPET_CSP.contains("unsafe"));
        assert!(INDEX_CSP.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn index_escapes_and_links() {
        let page = index("ws.example<", "https://x");
        assert!(page.contains("xmpp:ws.example&lt;?register"));
    }
}
