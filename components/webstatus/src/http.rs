//! The HTTP side: `fn app(state) -> Router` serves the index page, the status formats and
//! the live-update stream, with one uniform 404 for everything else.
//!
//! Unknown tokens, removed users, malformed paths, unknown formats and wrong methods all
//! get byte-identical 404 responses, so nobody can learn which JIDs are registered.
//! Every response says `Cache-Control: no-cache` and carries an `ETag` (304 on a match),
//! `nosniff`, and a CSP; only the HTML snippet may be framed. Requests are counted by
//! format and status for `--metrics`.

use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use xmpp_component::prometheus_client::metrics::counter::Counter;
use xmpp_component::prometheus_client::metrics::family::Family;

use crate::app::App;
use crate::registry::Registry;
use crate::render;
use crate::token::Token;
use crate::view::View;

/// Header values built once: the CSPs are a few hundred bytes each.
static SNIPPET_CSP: LazyLock<HeaderValue> = LazyLock::new(|| csp_value(&render::SNIPPET_CSP));
static INDEX_CSP: LazyLock<HeaderValue> = LazyLock::new(|| csp_value(&render::INDEX_CSP));
static LOCKED_CSP: HeaderValue = HeaderValue::from_static(render::LOCKED_CSP);

fn csp_value(text: &str) -> HeaderValue {
    // Our CSPs are ASCII; should one ever not be, fall back to the strictest policy.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(render::LOCKED_CSP))
}

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    registry: Arc<Registry>,
    index: Arc<str>,
    index_etag: Arc<str>,
    shutdown: CancellationToken,
    streams: Arc<Semaphore>,
    max_streams: usize,
    requests: RequestCounts,
}

/// HTTP requests by `format` (html, svg, json, text, sse, index, other) and `status`.
pub type RequestCounts = Family<Vec<(&'static str, String)>, Counter>;

impl HttpState {
    /// State for `app`; live streams end when `shutdown` fires; at most `max_streams` at once.
    pub fn new(app: &App, shutdown: CancellationToken, max_streams: usize) -> Self {
        let settings = app.settings();
        let index = render::index(&settings.domain, &settings.public_url);
        HttpState {
            registry: Arc::clone(app.registry()),
            index_etag: etag_of(&(0u8, &index)).into(),
            index: index.into(),
            shutdown,
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            requests: RequestCounts::default(),
        }
    }

    /// The request counters, for the metrics registry.
    pub fn requests(&self) -> RequestCounts {
        self.requests.clone()
    }

    /// Live (Server-Sent Events) pages open right now.
    pub fn live_pages(&self) -> usize {
        self.max_streams
            .saturating_sub(self.streams.available_permits())
    }
}

/// The whole HTTP service.
pub fn app(state: HttpState) -> Router {
    let requests = state.requests.clone();
    Router::new()
        .route("/", get(index).fallback(not_found_handler))
        .route("/status/{file}", get(status).fallback(not_found_handler))
        .route(
            "/status/{token}/events",
            get(events).fallback(not_found_handler),
        )
        .fallback(not_found_handler)
        .with_state(state)
        .layer(middleware::from_fn(move |request, next| {
            count_request(requests.clone(), request, next)
        }))
}

/// Counts one request by the format its path asks for and the status it got.
async fn count_request(requests: RequestCounts, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let format = match path.rsplit_once('.').map(|(_, ext)| ext) {
        _ if path == "/" => "index",
        _ if path.ends_with("/events") => "sse",
        Some("svg") => "svg",
        Some("json") => "json",
        Some("txt") => "text",
        _ if path.starts_with("/status/") => "html",
        _ => "other",
    };
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    requests
        .get_or_create(&vec![("format", format.to_owned()), ("status", status)])
        .inc();
    response
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Svg,
    Json,
    Text,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Svg => "image/svg+xml",
            Format::Json => "application/json",
            Format::Text => "text/plain; charset=utf-8",
        }
    }
}

/// `TOKEN`, `TOKEN.svg`, `TOKEN.json`, `TOKEN.txt`; anything else is not a status path.
fn parse_file(file: &str) -> Option<(Token, Format)> {
    let (token, format) = match file.split_once('.') {
        None => (file, Format::Html),
        Some((token, "svg")) => (token, Format::Svg),
        Some((token, "json")) => (token, Format::Json),
        Some((token, "txt")) => (token, Format::Text),
        Some(_) => return None,
    };
    Some((Token::parse(token)?, format))
}

async fn index(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    respond(
        state.index.to_string(),
        &state.index_etag,
        "text/html; charset=utf-8",
        &INDEX_CSP,
        false,
        false,
        &headers,
    )
}

async fn status(
    State(state): State<HttpState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Some((token, format)) = path.ok().and_then(|Path(file)| parse_file(&file)) else {
        return not_found();
    };
    let Some(view) = state.registry.view(&token) else {
        return not_found();
    };
    let (body, csp, frameable) = match format {
        Format::Html => (render::html(&view), &*SNIPPET_CSP, true),
        Format::Svg => (render::svg(&view), &LOCKED_CSP, false),
        Format::Json => (render::json(&view), &LOCKED_CSP, false),
        Format::Text => (render::text(&view), &LOCKED_CSP, false),
    };
    respond(
        body,
        &view_etag(format, &view),
        format.content_type(),
        csp,
        frameable,
        format == Format::Json,
        &headers,
    )
}

fn respond(
    body: String,
    etag: &str,
    content_type: &'static str,
    csp: &HeaderValue,
    frameable: bool,
    cors: bool,
    request: &HeaderMap,
) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| etag_matches(list, etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let headers = response.headers_mut();
    if !fresh {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
    common_headers(headers, frameable);
    if cors {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    response
}

fn common_headers(headers: &mut HeaderMap, frameable: bool) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !frameable {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
}

/// A strong validator for one format of one view. The output is a pure function of the
/// format, the view and this binary's templates, so hashing those (not the ~2 KiB body)
/// identifies the body exactly, also across restarts of the same version.
fn view_etag(format: Format, view: &View) -> String {
    etag_of(&(
        env!("CARGO_PKG_VERSION"),
        format as u8,
        view.display.key(),
        view.display.css(),
        &view.status,
        &view.jid,
        view.since,
    ))
}

fn etag_of(value: &impl Hash) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

/// `If-None-Match` uses weak comparison: `W/` prefixes are ignored; `*` matches.
fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

async fn not_found_handler() -> Response {
    not_found()
}

/// The one 404 (same status, headers and body whatever the reason).
pub fn not_found() -> Response {
    let mut response = (StatusCode::NOT_FOUND, render::NOT_FOUND).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, LOCKED_CSP.clone());
    common_headers(headers, false);
    response
}

struct Live {
    registry: Arc<Registry>,
    token: Token,
    changes: watch::Receiver<u64>,
    shutdown: CancellationToken,
    first: bool,
    _permit: OwnedSemaphorePermit,
}

async fn events(
    State(state): State<HttpState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Some(token) = path.ok().and_then(|Path(t)| Token::parse(&t)) else {
        return not_found();
    };
    let Some(changes) = state.registry.watch(&token) else {
        return not_found();
    };
    let Ok(permit) = Arc::clone(&state.streams).try_acquire_owned() else {
        let mut busy = (StatusCode::SERVICE_UNAVAILABLE, "Too many live pages\n").into_response();
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        common_headers(busy.headers_mut(), false);
        return busy;
    };
    let live = Live {
        registry: Arc::clone(&state.registry),
        token,
        changes,
        shutdown: state.shutdown.clone(),
        first: true,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        if !live.first {
            tokio::select! {
                changed = live.changes.changed() => changed.ok()?,
                () = live.shutdown.cancelled() => return None,
            }
        }
        live.first = false;
        live.changes.borrow_and_update();
        let view = live.registry.view(&live.token)?;
        let event = Event::default().data(render::event(&view));
        Some((Ok::<Event, Infallible>(event), live))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    let headers = response.headers_mut();
    common_headers(headers, false);
    headers.insert(header::CONTENT_SECURITY_POLICY, LOCKED_CSP.clone());
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::Show;
    use crate::registry::Update;
    use crate::store::Options;
    use crate::testkit::app_with;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const XSS: &str = "<script>alert(1)</script>";

    fn setup(options: Options) -> (Router, Arc<Registry>, Token) {
        setup_with(options, 10)
    }

    fn setup_with(options: Options, max_streams: usize) -> (Router, Arc<Registry>, Token) {
        let (app, tokens) = app_with(&["alice@localhost"], options, Duration::from_secs(5));
        let token = tokens[0];
        let registry = Arc::clone(app.registry());
        registry.apply(
            "alice@localhost",
            Update::Available {
                resource: "laptop",
                show: Show::Away,
                status: Some(XSS),
                priority: 0,
                since: 1_700_000_000,
            },
        );
        let router = self::app(HttpState::new(&app, CancellationToken::new(), max_streams));
        (router, registry, token)
    }

    async fn get(
        router: &Router,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn every_format_with_options() {
        let options = Options {
            show_status_msg: true,
            show_full_jid: true,
        };
        let (router, _, token) = setup(options);
        let (code, headers, body) = get(&router, &format!("/status/{token}"), &[]).await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains(">Away<"));
        assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(body.contains("alice@localhost"));
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(headers.get(header::X_FRAME_OPTIONS).is_none());
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ascii")
                .contains("frame-ancestors *")
        );

        let (code, headers, body) = get(&router, &format!("/status/{token}.json"), &[]).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let value: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(value["status"], XSS);
        assert_eq!(value["jid"], "alice@localhost");
        assert_eq!(value["show"], "away");

        let (_, headers, body) = get(&router, &format!("/status/{token}.svg"), &[]).await;
        assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert!(!body.contains("<script"));

        let (_, _, body) = get(&router, &format!("/status/{token}.txt"), &[]).await;
        assert_eq!(body, format!("alice@localhost: Away: {XSS}\n"));
    }

    #[tokio::test]
    async fn requests_are_counted_by_format_and_status() {
        let (app, tokens) = app_with(
            &["alice@localhost"],
            Options::default(),
            Duration::from_secs(5),
        );
        let state = HttpState::new(&app, CancellationToken::new(), 10);
        let requests = state.requests();
        let router = self::app(state);
        let token = tokens[0];
        for path in [
            format!("/status/{token}.svg"),
            format!("/status/{token}.svg"),
            format!("/status/{token}.json"),
            "/status/nope.txt".to_owned(),
            "/".to_owned(),
        ] {
            get(&router, &path, &[]).await;
        }
        let count = |format: &str, status: &str| {
            requests
                .get_or_create(&vec![
                    ("format", format.to_owned()),
                    ("status", status.to_owned()),
                ])
                .get()
        };
        assert_eq!(count("svg", "200"), 2);
        assert_eq!(count("json", "200"), 1);
        assert_eq!(count("text", "404"), 1);
        assert_eq!(count("index", "200"), 1);
        assert_eq!(count("html", "200"), 0);
    }

    #[tokio::test]
    async fn defaults_hide_status_and_jid() {
        let (router, _, token) = setup(Options::default());
        let (_, _, body) = get(&router, &format!("/status/{token}.json"), &[]).await;
        let value: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(value["status"], serde_json::Value::Null);
        assert_eq!(value["jid"], serde_json::Value::Null);
        let (_, _, body) = get(&router, &format!("/status/{token}"), &[]).await;
        assert!(!body.contains("alert"));
        assert!(!body.contains("alice"));
    }

    #[tokio::test]
    async fn etags_revalidate_and_change_with_the_status() {
        let (router, registry, token) = setup(Options::default());
        let path = format!("/status/{token}.svg");
        let (_, headers, _) = get(&router, &path, &[]).await;
        let etag = headers[header::ETAG].to_str().expect("ascii").to_owned();
        let (code, headers, body) = get(&router, &path, &[("if-none-match", &etag)]).await;
        assert_eq!(code, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert_eq!(headers[header::ETAG], etag.as_str());
        let weak = format!("W/{etag}");
        let (code, _, _) = get(&router, &path, &[("if-none-match", &weak)]).await;
        assert_eq!(code, StatusCode::NOT_MODIFIED);

        registry.apply("alice@localhost", Update::Unavailable { resource: None });
        let (code, headers, body) = get(&router, &path, &[("if-none-match", &etag)]).await;
        assert_eq!(code, StatusCode::OK);
        assert_ne!(headers[header::ETAG], etag.as_str());
        assert!(body.contains("Offline"));
    }

    #[tokio::test]
    async fn all_404s_are_identical() {
        let (router, registry, token) = setup(Options::default());
        let reference = get(&router, "/nope", &[]).await;
        assert_eq!(reference.0, StatusCode::NOT_FOUND);
        let unknown = Token::generate();
        let paths = [
            format!("/status/{unknown}"),
            format!("/status/{unknown}.json"),
            format!("/status/{unknown}/events"),
            format!("/status/{token}.png"),
            format!("/status/{token}.json.txt"),
            format!("/status/{token}/"),
            format!("/status/{token}/other"),
            "/status/".to_owned(),
            "/status/%FF%FE".to_owned(),
            "/status/YWxpY2VAbG9jYWxob3N0".to_owned(),
            "/status/..%2F..%2Fetc%2Fpasswd".to_owned(),
        ];
        for path in &paths {
            let got = get(&router, path, &[]).await;
            assert_eq!((got.0, &got.2), (reference.0, &reference.2), "{path}");
            let mut a: Vec<_> = got.1.iter().filter(|(n, _)| *n != header::DATE).collect();
            let mut b: Vec<_> = reference
                .1
                .iter()
                .filter(|(n, _)| *n != header::DATE)
                .collect();
            a.sort_by_key(|(n, _)| n.as_str());
            b.sort_by_key(|(n, _)| n.as_str());
            assert_eq!(a, b, "{path}");
        }
        registry.remove("alice@localhost");
        let removed = get(&router, &format!("/status/{token}"), &[]).await;
        assert_eq!((removed.0, removed.2), (reference.0, reference.2));
        let post = router
            .clone()
            .oneshot(
                Request::post(format!("/status/{unknown}"))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(post.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn index_links_to_registration() {
        let (router, _, _) = setup(Options::default());
        let (code, headers, body) = get(&router, "/", &[]).await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("xmpp:webstatus.localhost?register"));
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    }

    #[tokio::test]
    async fn live_pages_are_bounded() {
        let (router, _, token) = setup_with(Options::default(), 1);
        let path = format!("/status/{token}/events");
        let first = router
            .clone()
            .oneshot(Request::get(&path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(first.status(), StatusCode::OK);
        let (code, headers, _) = get(&router, &path, &[]).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "60");
        drop(first);
        let (code, _, _) = get(&router, &format!("/status/{token}.txt"), &[]).await;
        assert_eq!(code, StatusCode::OK, "plain pages are not limited");
    }

    #[tokio::test]
    async fn live_updates_arrive_as_events() {
        let (router, registry, token) = setup(Options::default());
        let response = router
            .clone()
            .oneshot(
                Request::get(format!("/status/{token}/events"))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut body = response.into_body();
        let first = body.frame().await.expect("frame").expect("ok");
        let first = String::from_utf8_lossy(first.data_ref().expect("data")).into_owned();
        assert!(first.contains("\"show\":\"away\""), "{first}");
        registry.apply("alice@localhost", Update::Unavailable { resource: None });
        let next = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .expect("in time")
            .expect("frame")
            .expect("ok");
        let next = String::from_utf8_lossy(next.data_ref().expect("data")).into_owned();
        assert!(next.contains("\"show\":\"offline\""), "{next}");
        registry.remove("alice@localhost");
        let end = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .expect("stream ends");
        assert!(end.is_none(), "the stream ends when the user is removed");
    }
}
