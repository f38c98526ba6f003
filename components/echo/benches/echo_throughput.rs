//! Throughput and latency of the real `xmpp-echo` binary, with this process playing the
//! server side of XEP-0114 over loopback (the framework's `TestServer`).
//!
//! Run: `cargo bench -p xmpp-echo` (env `BENCH_MESSAGES`, `BENCH_IN_FLIGHT`, `BENCH_ROUND_TRIPS`
//! override the defaults 200000 / 1000 / 20000).
//!
//! Phase 1 sends the messages with a bounded number in flight and verifies every echo (id
//! and body, each exactly once). Phase 2 pins this process and the component to core 0
//! (`taskset`) and times one-at-a-time round trips. Both phases read echoes with rxml's raw
//! parser, so the benchmark's own share of a round trip stays small. Finally the
//! component's peak RSS (VmHWM) is read from /proc.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Semaphore;
use xmpp_component::rxml::{Parse, RawEvent, RawParser};
use xmpp_component::testing::{ServerWriter, TestServer};

const DOMAIN: &str = "echo.localhost";
const SECRET: &str = "bench-secret";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn message(n: usize) -> String {
    format!(
        "<message from='user{}@localhost/bench' to='{DOMAIN}' type='chat' id='m{n}'>\
         <body>payload number {n}</body></message>",
        n % 16
    )
}

/// Reads echoes straight off the socket with rxml's raw parser (no DOM), so that the
/// benchmark's own parsing costs as little CPU as possible, and verifies each one.
struct EchoReader {
    socket: OwnedReadHalf,
    lexer: RawParser,
    buffer: Vec<u8>,
    depth: usize,
    attrs: (Option<String>, Option<String>, Option<String>),
    in_body: bool,
    body: String,
}

impl EchoReader {
    fn new(socket: OwnedReadHalf) -> Self {
        let mut lexer = RawParser::new();
        // The component's stream header was consumed by the TestServer: open a stand-in root.
        let mut root: &[u8] = b"<root>";
        while let Ok(Some(_)) = lexer.parse(&mut root, false) {}
        EchoReader {
            socket,
            lexer,
            buffer: Vec::with_capacity(1 << 16),
            depth: 1,
            attrs: (None, None, None),
            in_body: false,
            body: String::new(),
        }
    }

    /// Reads what is available and returns the sequence numbers of the verified echoes.
    async fn read(&mut self, out: &mut Vec<usize>) -> Result<(), String> {
        self.buffer.clear();
        let n = tokio::time::timeout(
            Duration::from_secs(10),
            self.socket.read_buf(&mut self.buffer),
        )
        .await
        .map_err(|_| "no echo within 10 s".to_owned())?
        .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("component closed the connection".into());
        }
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.lex(&buffer, out);
        self.buffer = buffer;
        result
    }

    fn lex(&mut self, mut data: &[u8], out: &mut Vec<usize>) -> Result<(), String> {
        loop {
            match self.lexer.parse(&mut data, false) {
                Ok(Some(event)) => self.event(event, out)?,
                Ok(None) => return Err("stream ended".into()),
                Err(xmpp_component::rxml::error::EndOrError::NeedMoreData) => return Ok(()),
                Err(e) => return Err(format!("bad XML from the component: {e:?}")),
            }
        }
    }

    fn event(&mut self, event: RawEvent, out: &mut Vec<usize>) -> Result<(), String> {
        match event {
            RawEvent::ElementHeadOpen(_, (_, name)) => {
                self.depth += 1;
                self.in_body = self.depth == 3 && name.as_str() == "body";
            }
            RawEvent::Attribute(_, (None, name), value) if self.depth == 2 => match name.as_str() {
                "id" => self.attrs.0 = Some(value),
                "to" => self.attrs.1 = Some(value),
                "from" => self.attrs.2 = Some(value),
                _ => {}
            },
            RawEvent::Text(_, text) if self.in_body => self.body.push_str(text.as_str()),
            RawEvent::ElementFoot(_) => {
                self.depth -= 1;
                self.in_body = false;
                if self.depth == 1 {
                    let (id, to, from) = std::mem::take(&mut self.attrs);
                    let body = std::mem::take(&mut self.body);
                    out.push(check(id, to, from, &body)?);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn check(
    id: Option<String>,
    to: Option<String>,
    from: Option<String>,
    body: &str,
) -> Result<usize, String> {
    let id = id.ok_or("echo without id")?;
    let n: usize = id
        .strip_prefix('m')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unexpected id {id:?}"))?;
    if body != format!("payload number {n}") {
        return Err(format!("echo {id} has body {body:?}"));
    }
    if to.as_deref() != Some(format!("user{}@localhost/bench", n % 16).as_str())
        || from.as_deref() != Some(DOMAIN)
    {
        return Err(format!("echo {id} is misaddressed"));
    }
    Ok(n)
}

async fn throughput(
    reader: &mut EchoReader,
    writer: ServerWriter,
    total: usize,
    in_flight: usize,
) -> Result<f64, String> {
    let window = Arc::new(Semaphore::new(in_flight));
    let sender_window = Arc::clone(&window);
    let start = Instant::now();
    let sending = tokio::spawn(async move {
        let mut writer = writer;
        let mut next = 0;
        while next < total {
            let want = (total - next).min(64);
            let Ok(permits) = sender_window.acquire_many(want as u32).await else {
                return Err("window closed".to_owned());
            };
            permits.forget();
            let mut batch = String::with_capacity(want * 160);
            for n in next..next + want {
                batch.push_str(&message(n));
            }
            writer
                .send_raw(batch.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            next += want;
        }
        Ok(writer)
    });
    let mut seen = vec![false; total];
    let mut received = 0;
    let mut batch = Vec::new();
    while received < total {
        batch.clear();
        reader
            .read(&mut batch)
            .await
            .map_err(|e| format!("after {received} echoes: {e}"))?;
        for &n in &batch {
            if n >= total || std::mem::replace(&mut seen[n], true) {
                return Err(format!("duplicate or unknown echo m{n}"));
            }
        }
        received += batch.len();
        window.add_permits(batch.len());
    }
    let elapsed = start.elapsed();
    sending
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("sender: {e}"))?;
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// Times `rounds` one-at-a-time round trips; every echo is verified like in phase 1.
async fn latency(
    reader: &mut EchoReader,
    writer: &mut ServerWriter,
    first: usize,
    rounds: usize,
) -> Result<Vec<Duration>, String> {
    let mut samples = Vec::with_capacity(rounds);
    let mut echoes = Vec::with_capacity(1);
    for n in first..first + rounds {
        let request = message(n);
        let start = Instant::now();
        writer
            .send_raw(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        echoes.clear();
        while echoes.is_empty() {
            reader.read(&mut echoes).await?;
        }
        samples.push(start.elapsed());
        if echoes != [n] {
            return Err(format!("round trip {n} got echoes {echoes:?}"));
        }
    }
    samples.sort();
    Ok(samples)
}

fn pin_to_core0(pid: u32) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &pid.to_string()])
        .stdout(Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("warning: could not pin pid {pid} with taskset");
    }
}

/// User + system CPU seconds the process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A running `xmpp-echo` process; killed when dropped.
struct Echo(std::process::Child);

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `xmpp-echo` against a fresh `TestServer` and returns the server's halves.
async fn start_echo() -> Result<(Echo, EchoReader, ServerWriter), String> {
    let mut server = TestServer::bind(DOMAIN, SECRET)
        .await
        .map_err(|e| e.to_string())?;
    let child = Command::new(env!("CARGO_BIN_EXE_xmpp-echo"))
        .args(["--server", &server.addr().to_string(), "--domain", DOMAIN])
        .args(["--log", "warn", "--rate-limit", "0"])
        .env("XMPP_COMPONENT_SECRET", SECRET)
        .spawn()
        .map_err(|e| format!("cannot start xmpp-echo: {e}"))?;
    let echo = Echo(child);
    server.accept().await.map_err(|e| e.to_string())?;
    let (reader, writer) = server.take_connection().map_err(|e| e.to_string())?;
    Ok((echo, EchoReader::new(reader.into_socket()), writer))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let total = env_or("BENCH_MESSAGES", 200_000);
    let in_flight = env_or("BENCH_IN_FLIGHT", 1_000);
    let rounds = env_or("BENCH_ROUND_TRIPS", 20_000);

    // Phase 1: throughput, both processes free to use both cores.
    let (echo, mut reader, mut writer) = start_echo().await?;
    latency(&mut reader, &mut writer, 0, 1_000).await?; // warm-up
    let cpu_before = cpu_seconds(echo.0.id());
    let rate = throughput(&mut reader, writer, total, in_flight).await?;
    let cpu = cpu_seconds(echo.0.id()).zip(cpu_before).map(|(a, b)| a - b);
    println!(
        "throughput: {total} messages, {in_flight} in flight, every echo verified: {rate:.0} msg/s"
    );
    if let Some(cpu) = cpu.filter(|c| *c > 0.0) {
        println!(
            "component CPU: {cpu:.2} s = {:.2} µs per message ({:.0} msg/s per busy core)",
            cpu * 1e6 / total as f64,
            total as f64 / cpu
        );
    }
    let throughput_rss = peak_rss_kib(echo.0.id());
    drop(reader);
    drop(echo);

    // Phase 2: latency, this process and the component pinned to core 0.
    let (echo, mut reader, mut writer) = start_echo().await?;
    pin_to_core0(echo.0.id());
    pin_to_core0(std::process::id());
    latency(&mut reader, &mut writer, 0, 1_000).await?; // warm-up
    let samples = latency(&mut reader, &mut writer, 1_000, rounds).await?;
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "latency: {rounds} round trips, one core: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        pct(1.0).as_secs_f64() * 1e6
    );
    let latency_rss = peak_rss_kib(echo.0.id());
    drop(echo);
    let mib =
        |kib: Option<u64>| kib.map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "peak RSS of xmpp-echo: {} (throughput run), {} (latency run)",
        mib(throughput_rss),
        mib(latency_rss)
    );
    Ok(())
}
