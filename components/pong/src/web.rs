//! The browser client served at `/`: a page and a few ES modules (in `components/pong/web/`),
//! embedded in the binary with `include_str!`, so `xmpp-pong` alone serves a working client
//! (no files to install, nothing from a CDN).
//!
//! The page logs in to the player's own XMPP server over WebSocket (RFC 7395) and speaks
//! `xmpp:game:pong` to this component through it; this server never sees a password or a
//! client's XMPP. It only tells the page where to connect (`--websocket-url`, as a `<meta>`)
//! and pins that endpoint in the page's Content-Security-Policy: scripts and styles from this
//! origin only, no inline code, `connect-src` naming exactly the WebSocket endpoint(s), and
//! Trusted Types so no string can reach an HTML sink (the one policy, `xmppong-xml`, feeds
//! incoming XMPP frames to the XML parser).

use std::fmt::Write as _;

/// One embedded file under `/app/`.
#[derive(Debug)]
pub struct Asset {
    /// File name after `/app/`.
    pub name: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the client, by name.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "main.mjs",
        content_type: JS,
        body: include_str!("../web/main.mjs"),
    },
    Asset {
        name: "xml.mjs",
        content_type: JS,
        body: include_str!("../web/xml.mjs"),
    },
    Asset {
        name: "protocol.mjs",
        content_type: JS,
        body: include_str!("../web/protocol.mjs"),
    },
    Asset {
        name: "sasl.mjs",
        content_type: JS,
        body: include_str!("../web/sasl.mjs"),
    },
    Asset {
        name: "xmpp.mjs",
        content_type: JS,
        body: include_str!("../web/xmpp.mjs"),
    },
    Asset {
        name: "game.mjs",
        content_type: JS,
        body: include_str!("../web/game.mjs"),
    },
    Asset {
        name: "view.mjs",
        content_type: JS,
        body: include_str!("../web/view.mjs"),
    },
    Asset {
        name: "input.mjs",
        content_type: JS,
        body: include_str!("../web/input.mjs"),
    },
    Asset {
        name: "pong.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/pong.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../web/icon.svg"),
    },
];

const INDEX: &str = include_str!("../web/index.html");

/// The default of `--websocket-url`: Prosody's `mod_websocket` on the local dev stack.
pub const DEFAULT_WEBSOCKET_URL: &str = "ws://127.0.0.1:5280/xmpp-websocket";

/// The embedded file called `name`, if any.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// Why a WebSocket URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUrl {
    /// Not `ws://` or `wss://`.
    #[error("must start with ws:// or wss://")]
    Scheme,
    /// A character that has no place in a CSP source (or a URL we would connect to).
    #[error("must be a plain URL: letters, digits and - . _ ~ : / % only, no query")]
    Characters,
    /// No host, or too long.
    #[error("must name a host and be at most 512 characters")]
    Shape,
}

/// Checks a WebSocket endpoint: `ws://` or `wss://`, a host, and only characters that are
/// safe both in a URL and as a Content-Security-Policy source (no spaces, `;`, `,`, quotes,
/// query or fragment). The page applies the same rule to `?ws=`.
pub fn check_websocket_url(url: &str) -> Result<(), BadUrl> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or(BadUrl::Scheme)?;
    if !rest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~:/%".contains(c))
    {
        return Err(BadUrl::Characters);
    }
    if rest.is_empty() || rest.starts_with(['/', ':']) || url.len() > 512 {
        return Err(BadUrl::Shape);
    }
    Ok(())
}

/// The page's settings.
#[derive(Debug, Clone)]
pub struct WebClient {
    websocket_url: String,
    domain: String,
}

/// The page for one request: its HTML and the CSP that goes with it.
#[derive(Debug, Clone)]
pub struct Page {
    /// The document.
    pub html: String,
    /// The `Content-Security-Policy` header value.
    pub csp: String,
}

impl WebClient {
    /// A client that connects to `websocket_url` and plays at the component `domain`.
    pub fn new(websocket_url: &str, domain: &str) -> Result<Self, BadUrl> {
        check_websocket_url(websocket_url)?;
        Ok(WebClient {
            websocket_url: websocket_url.to_owned(),
            domain: domain.to_owned(),
        })
    }

    /// The configured WebSocket endpoint.
    pub fn websocket_url(&self) -> &str {
        &self.websocket_url
    }

    /// The page. `ws` is the page's `?ws=` (another server, chosen by the person who
    /// opens it): when it is a valid endpoint, the CSP allows it too; otherwise it is
    /// ignored here, and the page says so.
    pub fn page(&self, ws: Option<&str>) -> Page {
        let html = INDEX
            .replace("{{websocket}}", &escape(&self.websocket_url))
            .replace("{{domain}}", &escape(&self.domain));
        let mut connect = self.websocket_url.clone();
        if let Some(other) = ws.filter(|url| check_websocket_url(url).is_ok())
            && other != self.websocket_url
        {
            let _ = write!(connect, " {other}");
        }
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src {connect}; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'; require-trusted-types-for 'script'; \
             trusted-types xmppong-xml"
        );
        Page { html, csp }
    }
}

/// CSP of the other HTML pages (the leaderboard): our stylesheet, nothing else.
pub const PLAIN_PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Escapes text for HTML content and attribute values (the framework's one escaper).
pub use xmpp_component::escape_markup as escape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_are_checked() {
        assert_eq!(check_websocket_url(DEFAULT_WEBSOCKET_URL), Ok(()));
        assert_eq!(check_websocket_url("wss://xmpp.example.org/ws"), Ok(()));
        assert_eq!(
            check_websocket_url("http://x/ws"),
            Err(BadUrl::Scheme),
            "not a WebSocket"
        );
        for bad in [
            "ws://x/ws; script-src *",
            "ws://x/ws 'unsafe-inline'",
            "ws://x/a,b",
            "ws://x/?q=1",
            "ws://x/\"",
            "ws://user@x/",
        ] {
            assert_eq!(check_websocket_url(bad), Err(BadUrl::Characters), "{bad}");
        }
        assert_eq!(check_websocket_url("ws://"), Err(BadUrl::Shape));
        assert_eq!(check_websocket_url("ws:///path"), Err(BadUrl::Shape));
    }

    #[test]
    fn the_page_names_its_endpoint_in_meta_and_csp() {
        let client = WebClient::new(DEFAULT_WEBSOCKET_URL, "pong.localhost").expect("valid");
        let page = client.page(None);
        assert!(page.html.contains(&format!(
            "name=\"xmppong-websocket\" content=\"{DEFAULT_WEBSOCKET_URL}\""
        )));
        assert!(
            page.html
                .contains("name=\"xmppong-domain\" content=\"pong.localhost\"")
        );
        assert!(!page.html.contains("{{"), "every placeholder is filled");
        assert!(
            page.csp
                .contains(&format!("connect-src {DEFAULT_WEBSOCKET_URL};"))
        );
        assert!(page.csp.contains("script-src 'self';"));
        assert!(!page.csp.contains("unsafe"));
        let other = client.page(Some("wss://chat.example.org/xmpp-websocket"));
        assert!(other.csp.contains(&format!(
            "connect-src {DEFAULT_WEBSOCKET_URL} wss://chat.example.org/xmpp-websocket;"
        )));
        let hostile = client.page(Some("ws://x/; script-src *"));
        assert_eq!(
            hostile.csp, page.csp,
            "an invalid ?ws= never reaches the CSP"
        );
        for asset in ASSETS {
            assert!(
                page.html.contains(&format!("/app/{}", asset.name)) || asset.name.ends_with(".mjs"),
                "{} is linked from the page or imported by a module",
                asset.name
            );
        }
    }

    #[test]
    fn no_module_imports_a_file_that_is_not_embedded() {
        for module in ASSETS.iter().filter(|a| a.name.ends_with(".mjs")) {
            for line in module.body.lines().filter(|l| l.starts_with("import ")) {
                let Some(target) = line.split(['"', '\'']).nth(1) else {
                    continue;
                };
                let name = target.trim_start_matches("./");
                assert!(asset(name).is_some(), "{} imports {target}", module.name);
            }
        }
        assert!(asset("../main.rs").is_none());
    }
}
