//! The component against the in-process `TestServer`: handshake, echo of stanzas, the
//! outbound queue across a reconnect, over-cap and malformed input, stream errors,
//! dead-link detection and graceful shutdown.

use std::time::Duration;

use tokio::sync::oneshot;
use xmpp_component::testing::TestServer;
use xmpp_component::xmpp_parsers::jid::Jid;
use xmpp_component::xmpp_parsers::message::Message;
use xmpp_component::{Component, Config, Error, Handle, Router, Secret};

const DOMAIN: &str = "echo.localhost";
const SECRET: &str = "test-secret";

fn config(server: &TestServer) -> Config {
    let mut config =
        Config::new(server.addr().to_string(), DOMAIN, Secret::new(SECRET)).expect("config");
    config.backoff_min = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(200);
    config
}

fn jid(s: &str) -> Jid {
    Jid::new(s).expect("test JID")
}

/// A router that answers every message with a chat message carrying the same body.
fn echo_router() -> Router {
    Router::new().message(|handle: Handle, msg: Message| async move {
        let mut reply = Message::chat(msg.from.clone());
        reply.bodies = msg.bodies.clone();
        reply.id = msg.id.clone();
        handle.send(reply).await
    })
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    async fn stop(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("component stops in time")
            .expect("component task")
    }
}

fn start(component: Component) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(component.run(async move {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        task,
    }
}

/// Accepts the component and waits until it has processed the handshake (a ping round trip).
async fn accept_and_sync(server: &mut TestServer) {
    server.accept().await.expect("handshake");
    server
        .send_xml(&format!(
            "<iq xmlns='jabber:component:accept' type='get' id='sync' from='alice@localhost/a' \
             to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await
        .expect("send ping");
    let pong = server.recv().await.expect("ping reply");
    assert_eq!(pong.attr("type"), Some("result"));
    assert_eq!(pong.attr("id"), Some("sync"));
}

fn message(id: &str, body: &str) -> String {
    format!(
        "<message xmlns='jabber:component:accept' from='alice@localhost/a' to='{DOMAIN}' \
         type='chat' id='{id}'><body>{body}</body></message>"
    )
}

fn body(element: &xmpp_component::minidom::Element) -> Option<String> {
    element
        .get_child("body", "jabber:component:accept")
        .map(|b| b.text())
}

#[tokio::test]
async fn handshake_then_echo() {
    let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let running = start(Component::new(config(&server), echo_router()));
    server.accept().await.expect("handshake");
    server
        .send_xml(&message("m1", "hello"))
        .await
        .expect("send");
    let reply = server.recv().await.expect("echo");
    assert_eq!(reply.attr("to"), Some("alice@localhost/a"));
    assert_eq!(reply.attr("from"), Some(DOMAIN));
    assert_eq!(reply.attr("id"), Some("m1"));
    assert_eq!(body(&reply).as_deref(), Some("hello"));
    running.stop().await.expect("clean stop");
}

#[tokio::test]
async fn queue_survives_a_reconnect_in_order() {
    let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let component = Component::new(config(&server), Router::new());
    let handle = component.handle();
    let running = start(component);
    server.accept().await.expect("first handshake");
    server.drop_connection();
    // Sent while the link is down (or just dropping): must all arrive after the reconnect.
    for n in 0..50 {
        let msg = Message::chat(Some(jid("bob@localhost")))
            .with_body(Default::default(), format!("n{n}"));
        handle.send(msg).await.expect("queued");
    }
    server.accept().await.expect("reconnected");
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let element = server.recv().await.expect("queued stanza");
        seen.push(body(&element).unwrap_or_default());
    }
    let expected: Vec<String> = (0..50).map(|n| format!("n{n}")).collect();
    assert_eq!(seen, expected);
    let metrics = handle.metrics();
    assert_eq!(metrics.connections, 2);
    assert_eq!(metrics.stanzas_sent, 50);
    assert_eq!(metrics.queued, 0);
    running.stop().await.expect("clean stop");
}

/// The writer holds a small batch of shared (fan-out) messages for one scheduler round
/// to write more at once: bursts from many tasks still arrive whole, each task's in its
/// order, and a lone message after them is not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_bursts_from_many_tasks_arrive_whole_and_in_order() {
    use xmpp_component::xmpp_parsers::message::MessageType;
    use xmpp_component::{SharedMessage, SharedPayload};

    let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let component = Component::new(config(&server), Router::new());
    let handle = component.handle();
    let running = start(component);
    server.accept().await.expect("handshake");
    let (tasks, each) = (20, 30);
    let senders: Vec<_> = (0..tasks)
        .map(|task| {
            let handle = handle.clone();
            tokio::spawn(async move {
                for seq in 0..each {
                    let payload = SharedPayload::from_trusted_xml(format!(
                        "<body xmlns='jabber:component:accept'>{task}:{seq}</body>"
                    ));
                    let to = jid(&format!("p{task}@localhost"));
                    let message = SharedMessage::new(to, MessageType::Headline, payload);
                    handle.send(message).await.expect("queued");
                    if seq % 5 == 4 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.expect("sender task");
    }
    handle
        .send(
            Message::chat(Some(jid("bob@localhost"))).with_body(Default::default(), "last".into()),
        )
        .await
        .expect("queued");
    let mut next_seq = vec![0; tasks];
    for _ in 0..tasks * each {
        let element = server.recv().await.expect("fan-out stanza");
        let text = body(&element).expect("body");
        let (task, seq) = text.split_once(':').expect("task:seq");
        let (task, seq): (usize, usize) = (task.parse().expect("task"), seq.parse().expect("seq"));
        assert_eq!(
            element.attr("to"),
            Some(format!("p{task}@localhost").as_str())
        );
        assert_eq!(seq, next_seq[task], "task {task} out of order");
        next_seq[task] += 1;
    }
    let last = server.recv().await.expect("the lone message");
    assert_eq!(body(&last).as_deref(), Some("last"));
    assert_eq!(handle.metrics().stanzas_sent, (tasks * each + 1) as u64);
    running.stop().await.expect("clean stop");
}

#[tokio::test]
async fn stanzas_older_than_the_queue_ttl_are_dropped_not_sent() {
    let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let mut config = config(&server);
    config.queue_ttl = Some(Duration::from_millis(300));
    let component = Component::new(config, Router::new());
    let handle = component.handle();
    let running = start(component);
    server.accept().await.expect("first handshake");
    server.drop_connection();
    // Let the component notice the drop, so the next stanzas wait in the queue.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let chat = |body: &str| {
        Message::chat(Some(jid("bob@localhost"))).with_body(Default::default(), body.into())
    };
    handle.send(chat("stale 1")).await.expect("queued");
    handle.send(chat("stale 2")).await.expect("queued");
    tokio::time::sleep(Duration::from_millis(500)).await;
    handle.send(chat("fresh")).await.expect("queued");
    server.accept().await.expect("reconnected");
    let first = server.recv().await.expect("the fresh stanza");
    assert_eq!(body(&first).as_deref(), Some("fresh"));
    server
        .expect_silence(Duration::from_millis(200))
        .await
        .expect("the stale ones never come");
    assert_eq!(handle.metrics().stanzas_expired, 2);
    running.stop().await.expect("clean stop");
}

/// Stanzas over the size or depth cap are the sender's problem: each is skipped and
/// answered (`policy-violation`), counted, and the link stays up. Before the cap, a 30,000
/// deep payload overflowed the stack and an oversized one ended the connection.
#[tokio::test]
async fn stanzas_over_the_caps_are_answered_and_the_link_stays_up() {
    let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let mut config = config(&server);
    config.max_stanza_size = 64 * 1024;
    let running = start(Component::new(config, echo_router()));
    accept_and_sync(&mut server).await;
    let deep = format!("{}{}", "<a>".repeat(30_000), "</a>".repeat(30_000));
    let over_deep_iq = format!(
        "<iq xmlns='jabber:component:accept' type='get' id='deep' from='mallory@evil/x' \
         to='{DOMAIN}'><q xmlns='urn:q'>{deep}</q></iq>"
    );
    server.send_xml(&over_deep_iq).await.expect("send");
    let reply = server.recv().await.expect("iq error");
    assert_eq!(reply.attr("type"), Some("error"));
    assert_eq!(reply.attr("id"), Some("deep"));
    assert_eq!(reply.attr("to"), Some("mallory@evil/x"));
    let condition = |e: &xmpp_component::minidom::Element| {
        e.get_child("error", "jabber:component:accept")
            .and_then(|error| {
                error.get_child("policy-violation", "urn:ietf:params:xml:ns:xmpp-stanzas")
            })
            .is_some()
    };
    assert!(condition(&reply), "{reply:?}");
    server
        .send_xml(&message("big", &"x".repeat(100_000)))
        .await
        .expect("send");
    let bounce = server.recv().await.expect("error message");
    assert_eq!(bounce.name(), "message");
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(bounce.attr("id"), Some("big"));
    assert!(condition(&bounce), "{bounce:?}");
    // The same connection goes on: the next message is echoed.
    server
        .send_xml(&message("small", "ok"))
        .await
        .expect("send");
    assert_eq!(
        body(&server.recv().await.expect("echo")).as_deref(),
        Some("ok")
    );
    assert_eq!(server.accepted(), 1, "no reconnect");
    running.stop().await.expect("clean stop");
}

#[tokio::test]
async fn malformed_xml_ends_the_connection_and_it_comes_back() {
    let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let running = start(Component::new(config(&server), echo_router()));
    accept_and_sync(&mut server).await;
    server
        .send_raw(b"<message><body>x</bod></message>")
        .await
        .expect("send");
    let error = server.recv().await.expect("stream error");
    assert!(
        error
            .get_child("not-well-formed", "urn:ietf:params:xml:ns:xmpp-streams")
            .is_some(),
        "got {error:?}"
    );
    server.accept().await.expect("reconnected");
    server.send_xml(&message("m", "again")).await.expect("send");
    assert_eq!(
        body(&server.recv().await.expect("echo")).as_deref(),
        Some("again")
    );
    running.stop().await.expect("clean stop");
}

#[tokio::test]
async fn conflict_is_retried_but_not_authorized_is_fatal() {
    let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let running = start(Component::new(config(&server), echo_router()));
    server.accept().await.expect("handshake");
    server
        .send_stream_error("conflict", "Replaced by new connection")
        .await
        .expect("send error");
    server.accept().await.expect("retried after conflict");
    running.stop().await.expect("clean stop");

    let wrong = TestServer::bind(DOMAIN, "another-secret")
        .await
        .expect("bind");
    let mut server = wrong;
    let component = Component::new(config(&server), echo_router());
    let task = tokio::spawn(component.run(std::future::pending()));
    assert!(server.accept().await.is_err(), "token must not match");
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("gives up quickly")
        .expect("task");
    match result {
        Err(error @ Error::Stream(_)) => {
            assert!(error.is_fatal());
            assert!(error.hint().unwrap_or_default().contains("secret"));
        }
        other => panic!("expected a fatal stream error, got {other:?}"),
    }
}

#[tokio::test]
async fn silent_server_is_pinged_then_dropped() {
    let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let mut config = config(&server);
    config.ping_after = Duration::from_millis(200);
    config.ping_timeout = Duration::from_millis(300);
    let running = start(Component::new(config, echo_router()));
    server.accept().await.expect("handshake");
    let ping = server.recv().await.expect("a ping after silence");
    assert_eq!(ping.name(), "iq");
    assert_eq!(ping.attr("to"), Some("localhost"));
    assert!(ping.get_child("ping", "urn:xmpp:ping").is_some());
    // We do not answer: the component must give up on this link and dial again.
    server
        .accept_within(Duration::from_secs(3))
        .await
        .expect("reconnects after the dead link");
    running.stop().await.expect("clean stop");
}

#[tokio::test]
async fn shutdown_flushes_the_queue_and_closes_the_stream() {
    let mut server = TestServer::bind(DOMAIN, SECRET).await.expect("bind");
    let component = Component::new(config(&server), Router::new());
    let handle = component.handle();
    let running = start(component);
    accept_and_sync(&mut server).await;
    for n in 0..100 {
        let msg = Message::chat(Some(jid("bob@localhost")))
            .with_body(Default::default(), format!("n{n}"));
        handle.try_send(msg).expect("queued");
    }
    running.stop().await.expect("clean stop");
    let mut count = 0;
    loop {
        match server.recv().await {
            Ok(_) => count += 1,
            Err(xmpp_component::testing::TestError::Closed) => break,
            Err(other) => panic!("expected the stream to close, got {other}"),
        }
    }
    assert_eq!(
        count, 100,
        "every queued stanza is written before </stream:stream>"
    );
}
