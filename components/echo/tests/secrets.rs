//! The real `xmpp-echo` binary and the secret: the documented precedence holds through
//! clap (a `--secret-file` flag beats `XMPP_COMPONENT_SECRET`), and neither secret appears
//! anywhere in a full run's logs, at the most verbose level.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use xmpp_component::testing::TestServer;

const DOMAIN: &str = "echo.localhost";
const RIGHT: &str = "right-secret-4f9a";
const WRONG: &str = "wrong-secret-77c1";

#[tokio::test]
async fn secret_file_flag_beats_the_environment_and_no_secret_is_logged() {
    let mut server = TestServer::bind(DOMAIN, RIGHT).await.expect("bind");
    let dir = std::env::temp_dir().join(format!("echo-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{RIGHT}\n")).expect("write secret");
    let mut echo = tokio::process::Command::new(env!("CARGO_BIN_EXE_xmpp-echo"))
        .args(["--server", &server.addr().to_string(), "--domain", DOMAIN])
        .arg("--secret-file")
        .arg(&secret_file)
        .args(["--log", "trace"])
        .env("XMPP_COMPONENT_SECRET", WRONG)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start xmpp-echo");
    // With the environment's secret the handshake would fail (BadHandshake).
    server
        .accept_within(Duration::from_secs(20))
        .await
        .expect("handshake with the secret from --secret-file");
    server
        .send_xml(&format!(
            "<message xmlns='jabber:component:accept' from='alice@localhost/a' to='{DOMAIN}' \
             type='chat' id='m1'><body>hello</body></message>"
        ))
        .await
        .expect("send");
    let echoed = server.recv().await.expect("echo");
    assert_eq!(echoed.attr("id"), Some("m1"));
    echo.start_kill().expect("stop xmpp-echo");
    echo.wait().await.expect("exit");
    let mut logs = String::new();
    if let Some(mut out) = echo.stdout.take() {
        out.read_to_string(&mut logs).await.expect("stdout");
    }
    if let Some(mut err) = echo.stderr.take() {
        err.read_to_string(&mut logs).await.expect("stderr");
    }
    assert!(logs.contains("connect"), "trace logs were captured: {logs}");
    for secret in [RIGHT, WRONG] {
        assert!(
            !logs.contains(secret),
            "secret {secret} leaked into the logs"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}
