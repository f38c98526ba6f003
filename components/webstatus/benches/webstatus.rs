//! The issue's three performance figures for `xmpp-webstatus`, with 10,000 registered users:
//!
//! 1. memory per registered user beyond the store's own cache: exact live heap (jemalloc
//!    `stats.allocated`) before and after loading the live table, then after one online
//!    resource with a status text per user;
//! 2. presence stanzas ingested per second through the framework's `TestServer` (this
//!    process plays the server; every stanza is counted as applied, not just sent);
//! 3. HTTP `GET /status/{token}` requests per second and p99 latency, with `wrk` (Debian
//!    package) over random tokens of the 10,000, or a built-in keep-alive load generator
//!    when `wrk` is missing.
//!
//! Run: `cargo bench -p xmpp-webstatus`. Environment: `BENCH_USERS` (10000),
//! `BENCH_PRESENCES` (300000), `BENCH_HTTP_SECS` (10), `BENCH_HTTP_CONNECTIONS` (32),
//! `BENCH_WRK_THREADS` (2), `BENCH_LOADGEN=builtin` to skip wrk.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use tikv_jemalloc_ctl::{epoch, stats};
use tokio_util::sync::CancellationToken;
use xmpp_component::testing::TestServer;
use xmpp_component::{Component, Config, Secret};
use xmpp_webstatus::presence::Show;
use xmpp_webstatus::registry::Update;
use xmpp_webstatus::store::{Consent, Options, SledStore, Store, UserRecord};
use xmpp_webstatus::{App, HttpState, Registry, Settings, Token, http, service};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const DOMAIN: &str = "webstatus.localhost";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn live_heap() -> usize {
    // Refreshes jemalloc's cached statistics; both calls only fail if stats are compiled out.
    let _ = epoch::advance();
    stats::allocated::read().unwrap_or_default()
}

fn records(users: usize) -> Vec<UserRecord> {
    (0..users)
        .map(|i| UserRecord {
            jid: format!("user{i}@example.org"),
            token: Token::generate(),
            options: Options {
                show_status_msg: i % 2 == 0,
                show_full_jid: i % 3 == 0,
            },
            consent: Consent::Granted,
            registered_at: 1_700_000_000,
        })
        .collect()
}

fn settings() -> Settings {
    Settings {
        domain: DOMAIN.into(),
        public_url: "https://status.example.org".into(),
        probe_rate: 1_000_000,
        probe_timeout: Duration::from_secs(3600),
        limits: Default::default(),
    }
}

fn main() {
    let users = env_or("BENCH_USERS", 10_000);
    let dir = std::env::temp_dir().join(format!("webstatus-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = Arc::new(SledStore::open(&dir, 16 << 20).expect("sled"));
    let all = records(users);
    store.put_many(&all).expect("store");
    let tokens: Vec<Token> = all.iter().map(|r| r.token).collect();
    drop(all);
    println!("xmpp-webstatus benchmark: {users} registered users (sled, 16 MiB cache)\n");

    memory(&store, users);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = App::new(store.clone(), settings()).expect("app");
    runtime.block_on(ingest(&app, users));
    http_bench(&runtime, &app, &tokens, &dir);
    drop(app);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

/// Live heap of the in-memory table beyond what the store itself holds.
fn memory(store: &Arc<SledStore>, users: usize) {
    // Warm the store's cache so its growth is not counted as ours.
    drop(store.load_all().expect("load"));
    drop(store.load_all().expect("load"));
    let before = live_heap();
    let registry = Registry::new();
    registry.load(store.load_all().expect("load"));
    let loaded = live_heap();
    for i in 0..users {
        registry.apply(
            &format!("user{i}@example.org"),
            Update::Available {
                resource: "laptop-7f3a",
                show: Show::Away,
                status: Some("In a meeting until 3pm, back soon"),
                priority: 1,
                since: 1_700_000_000,
            },
        );
    }
    let online = live_heap();
    let per = |bytes: usize| bytes as f64 / users as f64;
    println!("memory beyond the store's cache (exact live heap, jemalloc):");
    println!(
        "  registered, presence unknown:      {:7.0} bytes/user",
        per(loaded.saturating_sub(before))
    );
    println!(
        "  + one resource with a status text: {:7.0} bytes/user   (target <= 1024)\n",
        per(online.saturating_sub(before))
    );
    drop(registry);
}

/// Presence stanzas through a real XEP-0114 connection until every one is applied.
async fn ingest(app: &App, users: usize) {
    let total = env_or("BENCH_PRESENCES", 300_000);
    let mut server = TestServer::bind(DOMAIN, "bench").await.expect("bind");
    let config =
        Config::new(server.addr().to_string(), DOMAIN, Secret::new("bench")).expect("config");
    let component = Component::new(config, service::router(app.clone(), None));
    let stop = CancellationToken::new();
    let running = tokio::spawn(component.run(stop.clone().cancelled_owned()));
    server.accept().await.expect("handshake");
    let (mut reader, mut writer) = server.take_connection().expect("connection");
    // The component probes everyone on connect; read and discard its output.
    let drain =
        tokio::spawn(
            async move { while reader.recv_batch(Duration::from_secs(3600)).await.is_ok() {} },
        );
    let shows = [
        "",
        "<show>away</show>",
        "<show>dnd</show>",
        "<show>xa</show>",
        "<show>chat</show>",
    ];
    let mut chunks = Vec::new();
    let mut chunk = String::with_capacity(1 << 20);
    for n in 0..total {
        let user = n % users;
        let resource = if n % 7 == 0 { "phone" } else { "laptop" };
        if n % 11 == 10 {
            chunk.push_str(&format!(
                "<presence from='user{user}@example.org/{resource}' to='{DOMAIN}' type='unavailable'/>"
            ));
        } else {
            chunk.push_str(&format!(
                "<presence from='user{user}@example.org/{resource}' to='{DOMAIN}'>{}\
                 <status>status number {n}</status><priority>{}</priority></presence>",
                shows[n % shows.len()],
                n % 3
            ));
        }
        if chunk.len() > 64 * 1024 {
            chunks.push(std::mem::take(&mut chunk));
        }
    }
    chunks.push(chunk);
    let registry = Arc::clone(app.registry());
    let start_count = registry.updates_applied();
    let start = Instant::now();
    for chunk in &chunks {
        writer.send_raw(chunk.as_bytes()).await.expect("send");
    }
    let target = start_count + total as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while registry.updates_applied() < target {
        assert!(Instant::now() < deadline, "presences not applied in time");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = start.elapsed();
    println!("presence ingestion through the framework's TestServer (one XEP-0114 connection):");
    println!(
        "  {total} stanzas applied in {:.3} s: {:.0} stanzas/s   (target >= 100000)\n",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    stop.cancel();
    let _ = running.await;
    drain.abort();
}

fn http_bench(
    runtime: &tokio::runtime::Runtime,
    app: &App,
    tokens: &[Token],
    dir: &std::path::Path,
) {
    let shutdown = CancellationToken::new();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = http::app(HttpState::new(app, shutdown.clone(), 10_000));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let serving =
        axum::serve(listener, router).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = runtime.spawn(async move { serving.await });
    let secs = env_or("BENCH_HTTP_SECS", 10);
    let connections = env_or("BENCH_HTTP_CONNECTIONS", 32);
    let token_file = dir.join("tokens.txt");
    let list: String = tokens.iter().map(|t| format!("{t}\n")).collect();
    std::fs::write(&token_file, list).expect("token file");
    // Warm-up and sanity check.
    let (status, body) = get_once(addr, &format!("/status/{}", tokens[0]));
    assert_eq!(status, 200, "{body}");
    // Our share of a request: lookup + privacy filter + HTML rendering, no HTTP.
    let rounds = 1_000_000;
    let t0 = Instant::now();
    let mut bytes = 0;
    for i in 0..rounds {
        if let Some(view) = app.registry().view(&tokens[(i * 7919) % tokens.len()]) {
            bytes += xmpp_webstatus::render::html(&view).len();
        }
    }
    println!(
        "lookup + render of the HTML snippet ({} bytes): {:.0} ns each, one thread",
        bytes / rounds,
        t0.elapsed().as_nanos() as f64 / rounds as f64
    );
    let builtin = std::env::var("BENCH_LOADGEN").is_ok_and(|v| v == "builtin");
    // BENCH_HTTP_FORMATS=",.svg,.json" adds formats; the default is the HTML snippet.
    let formats = std::env::var("BENCH_HTTP_FORMATS").unwrap_or_default();
    for suffix in formats.split(',') {
        println!(
            "HTTP GET /status/{{token}}{suffix} ({}, random tokens of {}):",
            if suffix.is_empty() {
                "HTML snippet"
            } else {
                suffix
            },
            tokens.len()
        );
        if builtin || !wrk(addr, &token_file, suffix, secs, connections) {
            builtin_loadgen(addr, tokens, suffix, secs, connections);
        }
    }
    shutdown.cancel();
    let _ = runtime.block_on(server);
}

const WRK_SCRIPT: &str = r#"
-- Requests are formatted once per thread, so wrk spends its CPU on sending, not on Lua.
local requests = {}
local suffix = os.getenv("WEBSTATUS_SUFFIX") or ""
for line in io.lines(os.getenv("WEBSTATUS_TOKENS")) do
  requests[#requests + 1] = wrk.format("GET", "/status/" .. line .. suffix)
end
local counter = 0
request = function()
  counter = counter + 1
  return requests[(counter * 7919) % #requests + 1]
end
"#;

/// Runs wrk; false if it is not installed.
fn wrk(
    addr: SocketAddr,
    tokens: &std::path::Path,
    suffix: &str,
    secs: usize,
    connections: usize,
) -> bool {
    let script = tokens.with_file_name("wrk.lua");
    std::fs::write(&script, WRK_SCRIPT).expect("script");
    let threads = env_or("BENCH_WRK_THREADS", 2);
    let output = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(format!("http://{addr}"))
        .env("WEBSTATUS_TOKENS", tokens)
        .env("WEBSTATUS_SUFFIX", suffix)
        .stderr(Stdio::inherit())
        .output();
    let Ok(output) = output else {
        println!("  (wrk not found: using the built-in load generator)");
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.trim().to_owned())
            .unwrap_or_default()
    };
    println!(
        "  wrk, {threads} threads, {connections} connections, {secs} s, same 2 cores as the server"
    );
    println!("  {}   (target >= 50000)", field("Requests/sec"));
    println!("  latency {}   (target p99 <= 5 ms)", field("99%"));
    println!("  latency {} | {}", field("50%"), field("90%"));
    let errors = field("Non-2xx");
    if !errors.is_empty() {
        println!("  !! {errors}");
    }
    true
}

fn get_once(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Keep-alive connections on threads, one request at a time each; latency per request.
fn builtin_loadgen(
    addr: SocketAddr,
    tokens: &[Token],
    suffix: &str,
    secs: usize,
    connections: usize,
) {
    let tokens: Arc<Vec<String>> = Arc::new(tokens.iter().map(Token::to_string).collect());
    let deadline = Instant::now() + Duration::from_secs(secs as u64);
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let tokens = Arc::clone(&tokens);
            let suffix = suffix.to_owned();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("connect");
                stream.set_nodelay(true).ok();
                let mut latencies = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut n = c;
                while Instant::now() < deadline {
                    n = (n + 7919) % tokens.len();
                    let t0 = Instant::now();
                    write!(
                        stream,
                        "GET /status/{}{suffix} HTTP/1.1\r\nHost: bench\r\n\r\n",
                        tokens[n]
                    )
                    .expect("write");
                    read_response(&mut stream, &mut buf);
                    latencies.push(t0.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    all.sort();
    let p = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!("  built-in load generator, {connections} keep-alive connections, {secs} s");
    println!(
        "  Requests/sec: {:.0}   (target >= 50000)",
        all.len() as f64 / secs as f64
    );
    println!(
        "  latency p50 {:?}, p99 {:?}   (target p99 <= 5 ms)",
        p(0.50),
        p(0.99)
    );
}

/// Reads one HTTP/1.1 response with a Content-Length body.
fn read_response(stream: &mut TcpStream, buf: &mut [u8]) {
    let mut have = 0;
    loop {
        let n = stream.read(&mut buf[have..]).expect("read");
        assert!(n > 0, "server closed the connection");
        have += n;
        let text = &buf[..have];
        if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&text[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if have >= end + 4 + length {
                return;
            }
        }
    }
}
