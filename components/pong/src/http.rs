//! The HTTP side (`--http ADDR`): the leaderboard as HTML and JSON, and the server's
//! counters (including tick lateness) as JSON for monitoring and the benchmark.
//!
//! - `GET /leaderboard`: an HTML table of the best players;
//! - `GET /leaderboard.json[?max=N]`: the same rows as JSON;
//! - `GET /metrics`: [`crate::metrics::Snapshot`] as JSON.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::leaderboard::{Entry, Leaderboard};
use crate::metrics::{Metrics, Snapshot};

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
}

/// The HTTP service: every route, ready for `axum::serve` or `oneshot` in tests.
pub fn app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/leaderboard") }),
        )
        .route("/leaderboard", get(leaderboard_html))
        .route("/leaderboard.json", get(leaderboard_json))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The one error type of the HTTP side.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A query parameter is out of range.
    #[error("max must be a number from 1 to {MAX_ROWS}")]
    BadMax,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, self.to_string()).into_response()
    }
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
) -> Result<Json<Vec<Entry>>, AppError> {
    Ok(Json(state.store.top(rows.limit()?)))
}

async fn leaderboard_html(
    State(state): State<AppState>,
    Query(rows): Query<Rows>,
) -> Result<Html<String>, AppError> {
    let rows = state.store.top(rows.limit()?);
    Ok(Html(render(&rows)))
}

async fn metrics(State(state): State<AppState>) -> Json<Snapshot> {
    Json(state.metrics.snapshot())
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The leaderboard page.
pub fn render(rows: &[Entry]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>XMPPong leaderboard</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{padding:.3em .8em;border-bottom:1px solid #ccc;text-align:right}\
         td:nth-child(2),th:nth-child(2){text-align:left}</style></head><body>\
         <h1>XMPPong leaderboard</h1>\n",
    );
    if rows.is_empty() {
        html.push_str("<p>No games played yet.</p>\n");
    } else {
        html.push_str(
            "<table><thead><tr><th>#</th><th>player</th><th>wins</th><th>losses</th>\
             <th>points</th><th>against</th></tr></thead><tbody>\n",
        );
        for (rank, row) in rows.iter().enumerate() {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                rank + 1,
                escape(&row.jid),
                row.stats.wins,
                row.stats.losses,
                row.stats.points,
                row.stats.points_against
            ));
        }
        html.push_str("</tbody></table>\n");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaderboard::{GameResult, MemoryStore};
    use axum::body::Body;
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
        AppState {
            store,
            metrics: Arc::new(Metrics::default()),
        }
    }

    async fn get(uri: &str) -> (StatusCode, String) {
        let response = app(state().await)
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn leaderboard_as_json_and_escaped_html() {
        let (status, json) = get("/leaderboard.json").await;
        assert_eq!(status, StatusCode::OK);
        let rows: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(rows[0]["jid"], "alice@localhost");
        assert_eq!(rows[0]["wins"], 1);
        assert_eq!(rows[1]["losses"], 1);
        let (status, html) = get("/leaderboard").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("alice@localhost"));
        assert!(html.contains("&lt;script&gt;@evil") && !html.contains("<script>"));
        let (status, _) = get("/leaderboard.json?max=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, metrics) = get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(metrics.contains("tick_lateness_p99_ms"));
    }
}
