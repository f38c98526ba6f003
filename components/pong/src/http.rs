//! The HTTP side (`--http ADDR`): the browser client, the leaderboard as HTML and JSON, and
//! the server's counters (including tick lateness) as JSON for monitoring and the benchmark.
//!
//! - `GET /[?game=NAME][&ws=URL]`: the web client (see [`crate::web`]);
//! - `GET /app/FILE`: its embedded modules, stylesheet and icon;
//! - `GET /leaderboard`: an HTML table of the best players;
//! - `GET /leaderboard.json[?max=N]`: the same rows as JSON;
//! - `GET /metrics`: [`crate::metrics::Snapshot`] as JSON.
//!
//! Players are listed by nickname or masked address, never by full JID unless they opted in
//! ([`crate::profiles`]). Every response carries `X-Content-Type-Options: nosniff`; HTML
//! pages a strict Content-Security-Policy, `Referrer-Policy: no-referrer` and no framing.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::leaderboard::{Leaderboard, Stats};
use crate::metrics::Metrics;
use crate::profiles::Profiles;
use crate::web::{self, PLAIN_PAGE_CSP, WebClient, escape};

/// Rows shown when `max` is not given, and the most ever shown.
const DEFAULT_ROWS: usize = 50;
const MAX_ROWS: usize = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The leaderboard (reads come from its in-memory snapshot, never from disk).
    pub store: Leaderboard,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// Nicknames and opt-ins: how players are listed.
    pub profiles: Arc<Profiles>,
    /// The browser client's settings.
    pub web: Arc<WebClient>,
}

/// The HTTP service: every route, ready for `axum::serve` or `oneshot` in tests.
pub fn app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .route("/app/{name}", get(asset))
        .route("/leaderboard", get(leaderboard_html))
        .route("/leaderboard.json", get(leaderboard_json))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(with_safe_headers))
        .with_state(state)
}

/// The one error type of the HTTP side.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A query parameter is out of range.
    #[error("max must be a number from 1 to {MAX_ROWS}")]
    BadMax,
    /// No such file.
    #[error("not found")]
    NotFound,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match self {
            AppError::BadMax => StatusCode::BAD_REQUEST,
            AppError::NotFound => StatusCode::NOT_FOUND,
        };
        (status, self.to_string()).into_response()
    }
}

/// Headers on every response (errors and extractor rejections included): no MIME
/// sniffing, no referrer leaks, revalidate.
async fn with_safe_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// An HTML page with its CSP and no framing.
fn html_page(body: String, csp: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let csp = HeaderValue::from_str(csp)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The page's query, read leniently (any parameter, repeated or not): it is the page's
/// business; only `ws` matters here, for the CSP.
async fn index(
    State(state): State<AppState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let ws = query
        .iter()
        .find(|(k, _)| k == "ws")
        .map(|(_, v)| v.as_str());
    let page = state.web.page(ws);
    html_page(page.html, &page.csp)
}

async fn asset(Path(name): Path<String>) -> Result<Response, AppError> {
    let asset = web::asset(&name).ok_or(AppError::NotFound)?;
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    Ok(response)
}

/// A leaderboard row as the public sees it (see [`crate::profiles`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicEntry {
    /// Nickname, else the full address (opted in), else the masked address.
    pub name: String,
    /// The full bare JID, only for players who opted in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jid: Option<String>,
    /// The record.
    #[serde(flatten)]
    pub stats: Stats,
}

fn public_rows(state: &AppState, limit: usize) -> Vec<PublicEntry> {
    state
        .store
        .top(limit)
        .into_iter()
        .map(|entry| {
            let listing = state.profiles.listing(&entry.jid);
            PublicEntry {
                name: listing.name,
                jid: listing.address,
                stats: entry.stats,
            }
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct Rows {
    max: Option<usize>,
}

impl Rows {
    fn limit(&self) -> Result<usize, AppError> {
        match self.max {
            None => Ok(DEFAULT_ROWS),
            Some(n) if (1..=MAX_ROWS).contains(&n) => Ok(n),
            Some(_) => Err(AppError::BadMax),
        }
    }
}

async fn leaderboard_json(
    State(state): State<AppState>,
    Query(rows): Query<Rows>,
) -> Result<Response, AppError> {
    Ok(Json(public_rows(&state, rows.limit()?)).into_response())
}

async fn leaderboard_html(
    State(state): State<AppState>,
    Query(rows): Query<Rows>,
) -> Result<Response, AppError> {
    let rows = public_rows(&state, rows.limit()?);
    Ok(html_page(render(&rows), PLAIN_PAGE_CSP))
}

async fn metrics(State(state): State<AppState>) -> Json<crate::metrics::Snapshot> {
    Json(state.metrics.snapshot())
}

/// The leaderboard page.
pub fn render(rows: &[PublicEntry]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>XMPPong leaderboard</title>\
         <link rel=\"stylesheet\" href=\"/app/pong.css\">\
         <link rel=\"icon\" href=\"/app/icon.svg\"></head><body class=\"board\">\
         <h1>XMPPong leaderboard</h1>\n\
         <p><a href=\"/\">Play XMPPong in your browser</a></p>\n",
    );
    if rows.is_empty() {
        html.push_str("<p>No games played yet.</p>\n");
    } else {
        html.push_str(
            "<table><thead><tr><th>#</th><th>player</th><th>wins</th><th>losses</th>\
             <th>points</th><th>against</th></tr></thead><tbody>\n",
        );
        for (rank, row) in rows.iter().enumerate() {
            let name = match &row.jid {
                Some(jid) if *jid != row.name => format!("{} ({})", escape(&row.name), escape(jid)),
                _ => escape(&row.name),
            };
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                rank + 1,
                name,
                row.stats.wins,
                row.stats.losses,
                row.stats.points,
                row.stats.points_against
            ));
        }
        html.push_str("</tbody></table>\n");
        html.push_str(
            "<p class=\"note\">Players are listed by the nickname they chose, else by the \
             first part of their address; full addresses only for those who asked.</p>\n",
        );
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaderboard::{GameResult, MemoryStore};
    use crate::profiles::ProfileUpdate;
    use axum::body::Body;
    use axum::http::HeaderMap;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn state() -> AppState {
        let store = Leaderboard::open(Arc::new(MemoryStore::new()))
            .await
            .expect("leaderboard");
        store
            .record(GameResult {
                winner: "alice@localhost".into(),
                loser: "<script>@evil".into(),
                winner_points: 3,
                loser_points: 1,
            })
            .await
            .expect("record");
        store
            .record(GameResult {
                winner: "carol@localhost".into(),
                loser: "dave@localhost".into(),
                winner_points: 3,
                loser_points: 2,
            })
            .await
            .expect("record");
        let profiles = Profiles::in_memory();
        let set = |jid: &str, nick: Option<&str>, show_jid: bool| {
            let update = ProfileUpdate {
                nick: Some(nick.map(str::to_owned)),
                show_jid: Some(show_jid),
            };
            profiles.update(jid, &update).expect("profile");
        };
        set("alice@localhost", Some("Ally <b>"), false);
        set("carol@localhost", None, true);
        AppState {
            store,
            metrics: Arc::new(Metrics::default()),
            profiles: Arc::new(profiles),
            web: Arc::new(
                WebClient::new(web::DEFAULT_WEBSOCKET_URL, "pong.localhost").expect("url"),
            ),
        }
    }

    async fn get_response(uri: &str) -> (StatusCode, HeaderMap, String) {
        let response = app(state().await)
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(uri: &str) -> (StatusCode, String) {
        let (status, _, body) = get_response(uri).await;
        (status, body)
    }

    #[tokio::test]
    async fn leaderboard_shows_nicknames_and_masked_addresses() {
        let (status, json) = get("/leaderboard.json").await;
        assert_eq!(status, StatusCode::OK);
        let rows: serde_json::Value = serde_json::from_str(&json).expect("json");
        let by_name = |name: &str| {
            rows.as_array()
                .and_then(|rows| rows.iter().find(|r| r["name"] == name))
                .cloned()
                .unwrap_or_else(|| panic!("no row {name} in {rows}"))
        };
        assert_eq!(by_name("Ally <b>")["wins"], 1);
        assert!(by_name("Ally <b>").get("jid").is_none(), "not opted in");
        assert_eq!(by_name("<script>@…")["losses"], 1);
        assert_eq!(by_name("carol@localhost")["jid"], "carol@localhost");
        assert_eq!(by_name("dave@…")["losses"], 1);
        assert!(!json.contains("alice@localhost") && !json.contains("dave@localhost"));
        let (status, headers, html) = get_response("/leaderboard").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("Ally &lt;b&gt;") && !html.contains("alice@localhost"));
        assert!(html.contains("&lt;script&gt;@…") && !html.contains("<script>"));
        assert!(html.contains("href=\"/\""), "links to the web client");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let csp = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("csp");
        assert!(csp.starts_with("default-src 'none'") && !csp.contains("unsafe"));
        let (status, headers, _) = get_response("/leaderboard.json?max=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let (status, headers, _) = get_response("/leaderboard?max=abc").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "an extractor's rejection");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let (status, metrics) = get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(metrics.contains("tick_lateness_p99_ms"));
    }

    #[tokio::test]
    async fn the_web_client_is_served_with_a_strict_policy() {
        let (status, headers, html) = get_response("/?game=friday").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("<canvas") && html.contains("/app/main.mjs"));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let csp = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("csp");
        assert!(csp.contains(&format!("connect-src {};", web::DEFAULT_WEBSOCKET_URL)));
        assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe"));
        let (status, _, _) = get_response("/?ws=a&ws=b&game=%3Cx%3E&x").await;
        assert_eq!(status, StatusCode::OK, "any query is the page's business");
        let (_, headers, _) = get_response("/?ws=wss://chat.example.org/ws").await;
        let csp = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("csp");
        assert!(csp.contains(" wss://chat.example.org/ws;"), "{csp}");
        for asset in web::ASSETS {
            let (status, headers, body) = get_response(&format!("/app/{}", asset.name)).await;
            assert_eq!(status, StatusCode::OK, "{}", asset.name);
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(body, asset.body);
        }
        let (status, headers, _) = get_response("/app/nope.mjs").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let (status, _) = get("/app/..%2Fmain.rs").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
