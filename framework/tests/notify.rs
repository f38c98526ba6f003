//! systemd notifications: a component started with `NOTIFY_SOCKET` (as under a
//! `Type=notify` unit) reports `READY=1` once, after its first handshake with the
//! `TestServer`, `WATCHDOG=1` while connected, its status across a reconnect, and
//! `STOPPING=1` on shutdown.
//!
//! The component runs in a child process (this test binary, running the ignored test
//! `child_component_under_systemd`), because the environment of the current process
//! cannot be changed without `unsafe`. The parent plays systemd: it binds the datagram
//! socket and records what arrives.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xmpp_component::testing::TestServer;
use xmpp_component::{Component, Config, Router, Secret};

const DOMAIN: &str = "echo.localhost";
const SECRET: &str = "test-secret";

#[test]
fn ready_watchdog_status_and_stopping_reach_notify_socket() {
    let socket_path = std::env::temp_dir().join(format!("xc-notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");

    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "child_component_under_systemd",
            "--nocapture",
        ])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    let status = loop {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            continue;
        }
        if let Some(status) = child.try_wait().expect("child status") {
            // Drain what the child sent just before exiting.
            while let Ok(n) = socket.recv(&mut buf) {
                messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child still running after 30 s; got {messages:?}");
        }
    };
    let _ = std::fs::remove_file(&socket_path);
    let output = child.wait_with_output().expect("child output");
    assert!(
        status.success(),
        "child failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let index = |what: &str| messages.iter().position(|m| m.contains(what));
    let ready = index("READY=1").unwrap_or_else(|| panic!("no READY=1 in {messages:?}"));
    assert_eq!(
        messages.iter().filter(|m| m.contains("READY=1")).count(),
        1,
        "READY=1 exactly once, even after a reconnect: {messages:?}"
    );
    assert!(
        messages[ready].contains(&format!("STATUS=connected as {DOMAIN}")),
        "{messages:?}"
    );
    assert_eq!(
        index("WATCHDOG=1").map(|w| w > ready),
        Some(true),
        "watchdog pings start after READY=1: {messages:?}"
    );
    let pings = messages.iter().filter(|m| *m == "WATCHDOG=1\n").count();
    assert!(
        pings >= 3,
        "about 10 pings in 1 s at WatchdogSec=0.2 s: {messages:?}"
    );
    let lost = index("STATUS=reconnecting").unwrap_or_else(|| panic!("{messages:?}"));
    let back = messages[lost..]
        .iter()
        .position(|m| m.contains("STATUS=connected"))
        .map(|i| i + lost)
        .unwrap_or_else(|| panic!("no status after the reconnect: {messages:?}"));
    assert!(lost > ready && back > lost);
    assert_eq!(
        messages.last().map(String::as_str),
        Some("STOPPING=1\n"),
        "{messages:?}"
    );
}

/// The component side, run by the test above in a child process.
#[test]
#[ignore = "run as a child process by ready_watchdog_status_and_stopping_reach_notify_socket"]
fn child_component_under_systemd() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
        let mut config =
            Config::new(server.addr().to_string(), DOMAIN, Secret::new(SECRET)).expect("config");
        config.backoff_min = Duration::from_millis(20);
        config.backoff_max = Duration::from_millis(100);
        let component = Component::new(config, Router::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(component.run(async move {
            let _ = stopped.await;
        }));

        server.accept().await.expect("first handshake");
        tokio::time::sleep(Duration::from_millis(600)).await; // watchdog pings while up
        server.drop_connection();
        server
            .accept()
            .await
            .expect("handshake after the reconnect");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("component stops in time")
            .expect("component task")
            .expect("clean shutdown");
    });
}
