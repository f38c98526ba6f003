//! The `--metrics` listener against the in-process `TestServer`: `/health` follows the
//! XMPP link (503 with a reason while it is down, 200 once it is back) and `/metrics` is
//! Prometheus text that counts the stanzas going through.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use xmpp_component::minidom::Element;
use xmpp_component::observe;
use xmpp_component::testing::TestServer;
use xmpp_component::xmpp_parsers::message::Message;
use xmpp_component::{Component, Config, Handle, Router, Secret};

const DOMAIN: &str = "echo.localhost";
const SECRET: &str = "test-secret";
/// Upper bound for anything this test waits for.
const WAIT: Duration = Duration::from_secs(10);

/// A loopback port nobody listens on right now.
fn free_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    probe.local_addr().expect("probe address")
}

/// `GET path` on the metrics listener: the status code and the body, or `None` while
/// nothing listens.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut socket = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(WAIT, socket.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Polls `path` until `check` accepts the answer (bounded by [`WAIT`]); returns it.
async fn poll(
    addr: SocketAddr,
    path: &str,
    what: &str,
    check: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Some((status, body)) = get(addr, path).await {
            if check(status, &body) {
                return body;
            }
            last = Some((status, body));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path}: never {what}; last answer {last:?}");
}

/// Parses Prometheus text (format 0.0.4) into `series → value`, failing on any line that
/// is neither a `# HELP`/`# TYPE` comment nor `name{labels} value`.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind));
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("series and value");
        let name = key.split('{').next().unwrap_or(key);
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        assert!(
            typed.contains(name) || typed.iter().any(|family| name.starts_with(family.as_str())),
            "{name} has no # TYPE line before it"
        );
        if let Some(labels) = key.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in {line:?}"
            );
        }
        let value: f64 = value.parse().expect("numeric sample value");
        series.insert(key.to_owned(), value);
    }
    series
}

fn message(id: &str) -> String {
    format!(
        "<message xmlns='jabber:component:accept' from='alice@localhost/a' to='{DOMAIN}' \
         type='chat' id='{id}'><body>hi</body></message>"
    )
}

#[tokio::test]
async fn health_follows_the_link_and_metrics_count_stanzas() {
    let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let metrics_addr = free_port();
    let mut config =
        Config::new(server.addr().to_string(), DOMAIN, Secret::new(SECRET)).expect("config");
    config.backoff_min = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(200);
    config.metrics = Some(metrics_addr);
    let router = Router::new().message(|handle: Handle, msg: Message| async move {
        let mut reply = Message::chat(msg.from.clone());
        reply.bodies = msg.bodies.clone();
        handle.send(reply).await
    });
    let mut component = Component::new(config, router);
    component.registry_mut().register_collector(observe::gauge(
        "test_answer",
        "A component's own gauge.",
        || 42,
    ));
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(component.run(async move {
        let _ = stopped.await;
    }));

    // Dialled but not yet accepted: the link is not up.
    let body = poll(
        metrics_addr,
        "/health",
        "503 before the handshake",
        |s, _| s == 503,
    )
    .await;
    assert!(body.starts_with("down: connecting to "), "{body:?}");

    server.accept().await.expect("handshake");
    let body = poll(metrics_addr, "/health", "200 once linked", |s, _| s == 200).await;
    assert_eq!(
        body,
        format!("up: linked to {} as {DOMAIN}\n", server.addr())
    );

    server.send_xml(&message("m1")).await.expect("send");
    let echo: Element = server.recv().await.expect("echo");
    assert_eq!(echo.attr("to"), Some("alice@localhost/a"));
    let text = poll(metrics_addr, "/metrics", "counting the echo", |s, body| {
        s == 200 && body.contains("xmpp_component_stanzas_sent_total{kind=\"message\"} 1\n")
    })
    .await;
    let series = parse_prometheus(&text);
    assert_eq!(
        series["xmpp_component_stanzas_received_total{kind=\"message\"}"],
        1.0
    );
    assert_eq!(
        series["xmpp_component_stanzas_received_total{kind=\"iq\"}"],
        0.0
    );
    assert_eq!(series["xmpp_component_link_up"], 1.0);
    // Every handler run (the echo among them) is in the histogram.
    let runs = series["xmpp_component_handler_latency_seconds_count"];
    assert!(runs >= 1.0, "{runs}");
    assert_eq!(
        series["xmpp_component_handler_latency_seconds_bucket{le=\"+Inf\"}"],
        runs
    );
    assert_eq!(series["xmpp_component_rate_limited_senders_total"], 0.0);
    assert_eq!(series["xmpp_component_connections_total"], 1.0);
    assert_eq!(series["xmpp_component_reconnects_total"], 0.0);
    assert_eq!(series["xmpp_component_queue_depth"], 0.0);
    assert_eq!(series["test_answer"], 42.0);

    // The server drops the link and does not complete another handshake.
    server.drop_connection();
    let body = poll(metrics_addr, "/health", "503 after the drop", |s, _| {
        s == 503
    })
    .await;
    assert!(
        body.starts_with("down: ") && body.ends_with('\n'),
        "{body:?}"
    );
    assert_eq!(body.lines().count(), 1, "one-line reason: {body:?}");
    assert!(body.contains("closed"), "names the cause: {body:?}");
    let text = poll(metrics_addr, "/metrics", "link_up 0", |_, body| {
        body.contains("xmpp_component_link_up 0\n")
    })
    .await;
    parse_prometheus(&text);

    server.accept().await.expect("reconnected");
    poll(
        metrics_addr,
        "/health",
        "200 after the reconnect",
        |s, _| s == 200,
    )
    .await;
    let series = parse_prometheus(&poll(metrics_addr, "/metrics", "200", |s, _| s == 200).await);
    assert_eq!(series["xmpp_component_reconnects_total"], 1.0);
    assert_eq!(series["xmpp_component_link_up"], 1.0);

    let _ = stop.send(());
    tokio::time::timeout(WAIT, running)
        .await
        .expect("component stops in time")
        .expect("component task")
        .expect("clean stop");
    assert!(
        get(metrics_addr, "/health").await.is_none(),
        "the metrics listener stops with the component"
    );
}

#[tokio::test]
async fn an_unusable_metrics_address_is_a_configuration_error() {
    let server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut config =
        Config::new(server.addr().to_string(), DOMAIN, Secret::new(SECRET)).expect("config");
    config.metrics = Some(taken.local_addr().expect("address"));
    let result = Component::new(config, Router::new())
        .run(std::future::pending())
        .await;
    match result {
        Err(error) => {
            assert!(error.is_fatal(), "{error}");
            assert!(error.to_string().contains("--metrics"), "{error}");
        }
        Ok(()) => panic!("a taken --metrics address must not be ignored"),
    }
}
