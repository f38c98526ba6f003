//! Load benchmark of the real `xmpp-pong` binary: this process plays the XMPP server
//! (the framework's `TestServer`) and thousands of simulated players over loopback.
//!
//! Run: `cargo bench -p xmpp-pong` (env `BENCH_GAMES` = comma-separated game counts,
//! default `500,1000,2000,4000`; `BENCH_SECONDS` = measurement window, default 10;
//! `BENCH_MOVES_PER_SEC` = paddle moves each player sends per second, default 2;
//! `BENCH_THREADS` = the component's `--worker-threads`, default 2; `BENCH_READER` = how
//! this process reads the component's output, see [`ReaderKind`]; `BENCH_WRITES=0` turns
//! off the background leaderboard traffic).
//!
//! For each game count: start `xmpp-pong`, check in 2 × N players (matchmaking pairs
//! them), wait until N games run, let them settle, then measure for the window:
//! outgoing stanzas per second (counted by the component and by this reader), the
//! component's CPU (utime + stime from /proc), its tick-schedule lateness (the `/metrics`
//! histogram of the window, i.e. the difference of two snapshots), its RSS and RSS per
//! game, and stanzas dropped on a full queue. The component and this process share the
//! machine's cores; the table says how much CPU each used.
//!
//! Meanwhile, in the background, the leaderboard is written once a second: every second
//! two more players start a named game and the pair of the second before forfeits, so
//! one result goes through the writer into sled (`--data` is a temporary directory:
//! batch, flush, fsync) while the 30 Hz games tick; and `/leaderboard.json` is read once a
//! second. The `writes` column counts the results written in the window.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use xmpp_component::testing::{ServerReader, ServerWriter, TestServer};

const DOMAIN: &str = "pong.localhost";
const SECRET: &str = "bench-secret";
const NS: &str = "xmpp:game:pong";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `xmpp-pong`; killed when dropped.
struct Pong(Child);

impl Drop for Pong {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// GET `path` on the component's HTTP port; the JSON body.
fn get_json(port: u16, path: &str) -> Result<serde_json::Value, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or("no HTTP body")?;
    serde_json::from_str(body).map_err(|e| format!("{e}: {body:.200}"))
}

/// (utime + stime) in seconds, and VmRSS in KiB, of `pid`.
fn proc_stats(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / 100.0, rss))
}

fn self_cpu() -> f64 {
    proc_stats(std::process::id()).map_or(0.0, |(cpu, _)| cpu)
}

fn buckets(metrics: &serde_json::Value) -> HashMap<u64, u64> {
    metrics["tick_lateness_buckets_us"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| Some((r[0].as_u64()?, r[1].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Percentile (ms) of the histogram difference `after - before`.
fn window_percentile(before: &HashMap<u64, u64>, after: &HashMap<u64, u64>, p: f64) -> f64 {
    let mut diff: Vec<(u64, u64)> = after
        .iter()
        .map(|(k, v)| (*k, v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect();
    diff.sort();
    let total: u64 = diff.iter().map(|(_, v)| v).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((total as f64) * p).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (upper_us, n) in diff {
        seen += n;
        if seen >= rank {
            return upper_us as f64 / 1000.0;
        }
    }
    0.0
}

fn field(metrics: &serde_json::Value, name: &str) -> u64 {
    metrics[name].as_u64().unwrap_or(0)
}

/// How this process reads the component's output (`BENCH_READER`).
///
/// At 2,000 games the component sends some 180,000 stanzas a second. Building a
/// `minidom` element of each (`parsed`, the framework's `TestServer`) takes a whole core
/// of this process and still reads only ~59,000 a second; even rxml's bare tokenizer
/// took 95% of one for 134,000 a second. On a 2-core machine the bench, not the
/// component, becomes the bottleneck: the component's queue to the server fills and its
/// ticks wait for the core the reader holds. `raw` (the default) counts stanzas by byte
/// patterns, costing next to nothing, and keeps the first [`RECORDED`] bytes of the
/// stream, which rxml's tokenizer checks after the level: the output is well-formed XML
/// and the pattern count agrees.
#[derive(Clone, Copy, PartialEq)]
enum ReaderKind {
    Parsed,
    Raw,
}

impl ReaderKind {
    fn from_env() -> Result<Self, String> {
        match std::env::var("BENCH_READER").as_deref() {
            Err(_) | Ok("raw") => Ok(ReaderKind::Raw),
            Ok("parsed") => Ok(ReaderKind::Parsed),
            Ok(other) => Err(format!("BENCH_READER={other}: want raw or parsed")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ReaderKind::Parsed => "parsed",
            ReaderKind::Raw => "raw",
        }
    }
}

/// How much of the stream the raw reader keeps for the well-formedness check.
const RECORDED: usize = 32 << 20;

/// The server side of the component connection: the framework's `TestServer`, or a
/// socket read by a byte counter (see [`ReaderKind`]).
enum Reader {
    Parsed(Box<ServerReader>),
    Raw(OwnedReadHalf),
}

enum Writer {
    Parsed(ServerWriter),
    Raw(OwnedWriteHalf),
}

impl Writer {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Writer::Parsed(w) => w.send_raw(bytes).await.map_err(|e| e.to_string()),
            Writer::Raw(w) => w.write_all(bytes).await.map_err(|e| e.to_string()),
        }
    }
}

/// Listens for the component; returns its address and a future accepting it.
async fn listen(kind: ReaderKind) -> Result<(String, Listener), String> {
    if kind == ReaderKind::Raw {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        Ok((addr, Listener::Raw(listener)))
    } else {
        let server = TestServer::bind(DOMAIN, SECRET)
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            server.addr().to_string(),
            Listener::Parsed(Box::new(server)),
        ))
    }
}

enum Listener {
    Parsed(Box<TestServer>),
    Raw(tokio::net::TcpListener),
}

impl Listener {
    async fn accept(self) -> Result<(Reader, Writer), String> {
        match self {
            Listener::Parsed(mut server) => {
                server.accept().await.map_err(|e| e.to_string())?;
                let (r, w) = server.take_connection().map_err(|e| e.to_string())?;
                Ok((Reader::Parsed(Box::new(r)), Writer::Parsed(w)))
            }
            Listener::Raw(listener) => {
                let (socket, _) = listener.accept().await.map_err(|e| e.to_string())?;
                socket.set_nodelay(true).map_err(|e| e.to_string())?;
                let (mut r, mut w) = socket.into_split();
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // The stream header ends with the first '>' after "<stream:stream".
                while !String::from_utf8_lossy(&seen).contains("<stream:stream")
                    || !seen.ends_with(b">")
                {
                    let n = r.read(&mut buf).await.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("component closed during the header".into());
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let id = "raw-bench";
                w.write_all(
                    format!(
                        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
                     xmlns:stream='http://etherx.jabber.org/streams' id='{id}' from='{DOMAIN}'>"
                    )
                    .as_bytes(),
                )
                .await
                .map_err(|e| e.to_string())?;
                let want = xmpp_component::handshake_token(id, SECRET);
                let mut seen = Vec::new();
                while !String::from_utf8_lossy(&seen).contains("</handshake>") {
                    let n = r.read(&mut buf).await.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("component closed during the handshake".into());
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                if !String::from_utf8_lossy(&seen).contains(&want) {
                    return Err("wrong handshake token".into());
                }
                w.write_all(b"<handshake/>")
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((Reader::Raw(r), Writer::Raw(w)))
            }
        }
    }
}

/// Reads until `stop`, counting stanzas and ball positions; the raw reader returns the
/// first [`RECORDED`] bytes it read.
async fn read_all(
    reader: Reader,
    received: Arc<AtomicU64>,
    balls: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<Vec<u8>, String> {
    let mut recording = Vec::new();
    match reader {
        Reader::Parsed(mut reader) => {
            while !stop.load(Relaxed) {
                match reader.recv_batch(Duration::from_millis(500)).await {
                    Ok(batch) => {
                        let mut n_ball = 0;
                        for element in &batch {
                            let is_ball = element
                                .children()
                                .find(|c| c.name() == "pong")
                                .and_then(|p| p.children().find(|c| c.name() == "action"))
                                .is_some_and(|a| a.text() == "ballposition");
                            n_ball += u64::from(is_ball);
                        }
                        received.fetch_add(batch.len() as u64, Relaxed);
                        balls.fetch_add(n_ball, Relaxed);
                    }
                    Err(xmpp_component::testing::TestError::Timeout(_)) => continue,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        Reader::Raw(mut socket) => {
            let mut buf = vec![0u8; 256 * 1024];
            let mut carry = 0usize;
            while !stop.load(Relaxed) {
                let n = socket
                    .read(&mut buf[carry..])
                    .await
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                if recording.len() < RECORDED {
                    recording.extend_from_slice(&buf[carry..carry + n]);
                }
                let data = &buf[..carry + n];
                received.fetch_add(occurrences(data, MESSAGE), Relaxed);
                balls.fetch_add(occurrences(data, BALL), Relaxed);
                // Keep a short tail so a pattern split across reads is counted once.
                carry = 24.min(data.len());
                let tail = data.len() - carry;
                buf.copy_within(tail..tail + carry, 0);
                // Do not count the kept tail twice: remove its matches from this round.
                let kept = &buf[..carry];
                received.fetch_sub(occurrences(kept, MESSAGE), Relaxed);
                balls.fetch_sub(occurrences(kept, BALL), Relaxed);
            }
        }
    }
    Ok(recording)
}

/// What the raw reader counts: the start of a message, the end of a ball position.
const MESSAGE: &[u8] = b"<message";
const BALL: &[u8] = b"ballposition</action>";

/// How often `pattern` occurs in `data`.
fn occurrences(data: &[u8], pattern: &[u8]) -> u64 {
    data.windows(pattern.len())
        .filter(|w| *w == pattern)
        .count() as u64
}

/// Tokenizes `recording` (the stream after the handshake, possibly cut mid-stanza) with
/// rxml's `RawParser`: an error on any byte that is not well-formed XML. Returns the
/// `<message/>` stanzas (closed under the stream element) and the
/// `<action>ballposition</action>` among them.
fn check_well_formed(recording: &[u8]) -> Result<(u64, u64), String> {
    use rxml::Parse;
    use rxml::error::EndOrError;
    use rxml::parser::{RawEvent, RawParser};

    let mut parser = RawParser::new();
    // The stream header went by before the handshake; give the parser one to nest in.
    let header: &[u8] = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
                          xmlns='jabber:component:accept'>";
    let (mut messages, mut balls, mut depth) = (0, 0, 0usize);
    let (mut in_message, mut in_action, mut action_text) = (false, false, String::new());
    for mut data in [header, recording] {
        loop {
            match parser.parse(&mut data, false) {
                Ok(Some(RawEvent::ElementHeadOpen(_, (_, name)))) => {
                    depth += 1;
                    if depth == 2 {
                        in_message = name.as_str() == "message";
                    }
                    in_action = name.as_str() == "action";
                    action_text.clear();
                }
                Ok(Some(RawEvent::Text(_, text))) if in_action => action_text.push_str(&text),
                Ok(Some(RawEvent::ElementFoot(_))) => {
                    balls += u64::from(in_action && action_text == "ballposition");
                    in_action = false;
                    depth -= 1;
                    messages += u64::from(depth == 1 && in_message);
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err("the component ended its stream".into()),
                Err(EndOrError::NeedMoreData) => break,
                Err(EndOrError::Error(e)) => return Err(format!("not well-formed XML: {e}")),
            }
        }
    }
    Ok((messages, balls))
}

/// Checks the raw reader's recording: well-formed, and counted alike by the byte
/// patterns (a stanza cut at the end of the recording is counted by them only).
fn check_recording(recording: &[u8]) -> Result<(), String> {
    let (parsed, balls) = check_well_formed(recording)?;
    let (messages, ball_patterns) = (
        occurrences(recording, MESSAGE),
        occurrences(recording, BALL),
    );
    if parsed == 0
        || balls == 0
        || messages.abs_diff(parsed) > 1
        || ball_patterns.abs_diff(balls) > 1
    {
        return Err(format!(
            "recording: rxml counted {parsed} messages, {balls} ball positions; \
             the byte patterns {messages} and {ball_patterns}"
        ));
    }
    Ok(())
}

struct Row {
    games: usize,
    sent_per_s: f64,
    received_per_s: f64,
    pong_cpu: f64,
    bench_cpu: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max_window: f64,
    rss_mib: f64,
    kib_per_game: f64,
    dropped: u64,
    skipped: u64,
    writes: u64,
}

async fn run_level(
    games: usize,
    seconds: u64,
    moves_per_sec: f64,
    reader: ReaderKind,
) -> Result<Row, String> {
    let (addr, listener) = listen(reader).await?;
    let http = free_port()?;
    let writes = std::env::var("BENCH_WRITES").map_or(true, |v| v != "0");
    let data =
        TempDir(std::env::temp_dir().join(format!("pong-bench-{}-{games}", std::process::id())));
    let mut command = Command::new(env!("CARGO_BIN_EXE_xmpp-pong"));
    if writes {
        command.arg("--data").arg(&data.0);
    }
    let child = command
        .args(["--server", &addr, "--domain", DOMAIN])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--log", "warn", "--idle-timeout", "3600"])
        .args(["--points-to-win", "1000000"])
        .args([
            "--worker-threads",
            &std::env::var("BENCH_THREADS").unwrap_or_else(|_| "2".into()),
        ])
        .env("XMPP_COMPONENT_SECRET", SECRET)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start xmpp-pong: {e}"))?;
    let pong = Pong(child);
    let pid = pong.0.id();
    let (reader, mut writer) = listener.accept().await?;

    // Reader: count everything.
    let received = Arc::new(AtomicU64::new(0));
    let balls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reading = tokio::spawn(read_all(
        reader,
        received.clone(),
        balls.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = proc_stats(pid).map_or(0, |(_, rss)| rss);

    // Check in 2N players; consecutive check-ins are paired by matchmaking.
    let players = games * 2;
    for chunk in (0..players).collect::<Vec<_>>().chunks(200) {
        let mut batch = String::with_capacity(chunk.len() * 200);
        for i in chunk {
            batch.push_str(&format!(
                "<message from='p{i}@localhost/bench' to='{DOMAIN}'><pong xmlns='{NS}'>\
                 <action>playercheckingin</action></pong></message>"
            ));
        }
        writer.send(batch.as_bytes()).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let started = Instant::now();
    loop {
        let m = get_json(http, "/metrics")?;
        if field(&m, "games_running") as usize >= games {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "only {} of {games} games running after 60 s",
                field(&m, "games_running")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Inputs: every player moves its paddle `moves_per_sec` times a second.
    let moving = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let slices = 20usize;
            let mut interval = tokio::time::interval(Duration::from_millis(50));
            let mut round = 0usize;
            while !stop.load(Relaxed) {
                interval.tick().await;
                let per_slice = ((players as f64) * moves_per_sec / slices as f64).ceil() as usize;
                let mut batch = String::with_capacity(per_slice * 220);
                if writes && round.is_multiple_of(slices) {
                    // A leaderboard write a second: pair k starts a game, pair k-1 (whose
                    // game has run a second) forfeits. The HTTP read runs beside it.
                    let k = round / slices;
                    for side in ["a", "b"] {
                        batch.push_str(&format!(
                            "<message from='w{k}{side}@localhost/bench' to='bg{k}@{DOMAIN}'>\
                             <pong xmlns='{NS}'><action>playercheckingin</action></pong></message>"
                        ));
                    }
                    if k > 0 {
                        batch.push_str(&format!(
                            "<message from='w{}b@localhost/bench' to='{DOMAIN}'><pong xmlns='{NS}'>\
                             <action>leave</action></pong></message>",
                            k - 1
                        ));
                    }
                    tokio::task::spawn_blocking(move || {
                        get_json(http, "/leaderboard.json?max=100")
                    });
                }
                for k in 0..per_slice {
                    let i = (round * per_slice + k) % players;
                    let y = (round * 37 + i * 11) % 500;
                    batch.push_str(&format!(
                        "<message from='p{i}@localhost/bench' to='{DOMAIN}'><pong xmlns='{NS}'>\
                         <action>paddleposition</action><y>{y}</y></pong></message>"
                    ));
                }
                round += 1;
                if writer.send(batch.as_bytes()).await.is_err() {
                    break;
                }
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await; // settle
    let m0 = get_json(http, "/metrics")?;
    let (cpu0, _) = proc_stats(pid).ok_or("no /proc for xmpp-pong")?;
    let bench0 = self_cpu();
    let recv0 = received.load(Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let m1 = get_json(http, "/metrics")?;
    let (cpu1, rss) = proc_stats(pid).ok_or("no /proc for xmpp-pong")?;
    let bench1 = self_cpu();
    let recv1 = received.load(Relaxed);
    stop.store(true, Relaxed);
    moving.abort();
    let recording = reading
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reader: {e}"))?;
    if !recording.is_empty() {
        check_recording(&recording)?;
    }
    drop(pong);

    let (b0, b1) = (buckets(&m0), buckets(&m1));
    let delta = |name| field(&m1, name).saturating_sub(field(&m0, name));
    Ok(Row {
        games,
        sent_per_s: delta("stanzas_sent") as f64 / elapsed,
        received_per_s: (recv1 - recv0) as f64 / elapsed,
        pong_cpu: (cpu1 - cpu0) / elapsed * 100.0,
        bench_cpu: (bench1 - bench0) / elapsed * 100.0,
        p50: window_percentile(&b0, &b1, 0.50),
        p99: window_percentile(&b0, &b1, 0.99),
        p999: window_percentile(&b0, &b1, 0.999),
        max_window: window_percentile(&b0, &b1, 1.0),
        rss_mib: rss as f64 / 1024.0,
        kib_per_game: rss.saturating_sub(rss_before) as f64 / games as f64,
        dropped: delta("stanzas_dropped"),
        skipped: delta("ticks_skipped"),
        writes: delta("games_finished"),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let levels: Vec<usize> = std::env::var("BENCH_GAMES")
        .unwrap_or_else(|_| "500,1000,2000,4000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let moves: f64 = env_or("BENCH_MOVES_PER_SEC", 2.0);
    let reader = ReaderKind::from_env()?;
    let threads = std::env::var("BENCH_THREADS").unwrap_or_else(|_| "2".into());
    println!(
        "xmpp-pong load: 30 Hz, {seconds} s window per level, {moves} paddle moves/s per player, \
         reader {}, xmpp-pong --worker-threads {threads}; component and bench share {} cores",
        reader.name(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>6} | {:>10} {:>10} | {:>8} {:>8} | {:>7} {:>7} {:>7} {:>7} | {:>8} {:>9} | {:>7} {:>7} | {:>6}",
        "games",
        "sent/s",
        "recv/s",
        "pong%",
        "bench%",
        "p50ms",
        "p99ms",
        "p999ms",
        "maxms",
        "RSS MiB",
        "KiB/game",
        "dropped",
        "skipped",
        "writes"
    );
    for games in levels {
        let row = run_level(games, seconds, moves, reader).await?;
        println!(
            "{:>6} | {:>10.0} {:>10.0} | {:>7.0}% {:>7.0}% | {:>7.1} {:>7.1} {:>7.1} {:>7.1} | {:>8.1} {:>9.1} | {:>7} {:>7} | {:>6}",
            row.games,
            row.sent_per_s,
            row.received_per_s,
            row.pong_cpu,
            row.bench_cpu,
            row.p50,
            row.p99,
            row.p999,
            row.max_window,
            row.rss_mib,
            row.kib_per_game,
            row.dropped,
            row.skipped,
            row.writes
        );
    }
    Ok(())
}
