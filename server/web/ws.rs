//! The terminal socket bridge: replay, then output frames one way and keystrokes/control the
//! other. Generic over `Sink`/`Stream` of [`Frame`]s so it is tested over plain channels; the
//! axum handler only converts its messages to and from [`Frame`].

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;

use crate::session::{Output, Terminal};
use crate::text;

/// Close code for "message too big" (RFC 6455).
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_POLICY: u16 = 1008;
/// Largest message a client may send (a big paste is split by the browser into many).
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Binary(Bytes),
    Text(String),
    Close(u16, String),
    /// Anything else (ping/pong): ignored by the bridge.
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Control {
    Resize { cols: u32, rows: u32 },
}

fn json(v: serde_json::Value) -> Frame {
    Frame::Text(v.to_string())
}

/// Runs one interactive client until it leaves or the terminal ends; what the server says to the
/// client is in `lang`. (The server's sockets come through [`bridge_as`]; the tests drive this.)
#[cfg(test)]
pub async fn bridge<S, R, E>(sink: S, stream: R, term: Arc<Terminal>, lang: &'static str)
where
    S: Sink<Frame> + Unpin,
    R: Stream<Item = Result<Frame, E>> + Unpin,
{
    bridge_as(sink, stream, term, lang, Mode::Interactive).await
}

/// Whether a client may type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Interactive,
    /// A read-only view (an instructor watching a learner): the same output, but its keystrokes
    /// and resizes are dropped here, before they reach the terminal, and the terminal's other
    /// clients are told someone watches.
    Viewer,
}

/// [`bridge`], as a client of `mode`.
pub async fn bridge_as<S, R, E>(mut sink: S, mut stream: R, term: Arc<Terminal>, lang: &'static str, mode: Mode)
where
    S: Sink<Frame> + Unpin,
    R: Stream<Item = Result<Frame, E>> + Unpin,
{
    let viewer = mode == Mode::Viewer;
    let att = match term.attach_as(viewer) {
        Ok(a) => a,
        Err(e) => {
            let _ = sink.send(Frame::Close(CLOSE_POLICY, e.to_string())).await;
            return;
        }
    };
    let client = att.id;
    let mut rx = att.rx;
    // Only a weak reference from here on: an ended terminal is freed (its descriptors and ring)
    // as soon as its session lets go of it, however slowly this client reads.
    let term = Arc::downgrade(&term);
    // Always sent, even empty: the client knows that its first binary message is the replay,
    // output from the past whose terminal queries it must not answer (docs/api.md).
    if sink.send(Frame::Binary(att.replay)).await.is_err() {
        if let Some(t) = term.upgrade() {
            t.detach(client);
        }
        return;
    }
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Output::Data(d)) => {
                    metrics::counter!("nsplay_ws_bytes_out_total").increment(d.len() as u64);
                    if sink.send(Frame::Binary(d)).await.is_err() { break; }
                }
                Some(Output::Notice(n)) => {
                    let m = text::render(lang, &n);
                    if sink.send(json(serde_json::json!({"type": "notice", "message": m}))).await.is_err() { break; }
                }
                Some(Output::Viewers(n)) => {
                    if sink.send(json(serde_json::json!({"type": "viewers", "count": n}))).await.is_err() { break; }
                }
                Some(Output::Exit(code)) => {
                    let _ = sink.send(json(serde_json::json!({"type": "exit", "code": code}))).await;
                    let _ = sink.send(Frame::Close(CLOSE_NORMAL, format!("exit {code}"))).await;
                    break;
                }
                None => {
                    let _ = sink.send(Frame::Close(CLOSE_GOING_AWAY, "terminal closed".into())).await;
                    break;
                }
            },
            msg = stream.next() => match msg {
                Some(Ok(Frame::Binary(_))) if viewer => {
                    metrics::counter!("nsplay_ws_viewer_input_dropped_total").increment(1);
                }
                Some(Ok(Frame::Binary(b))) => {
                    metrics::counter!("nsplay_ws_bytes_in_total").increment(b.len() as u64);
                    let Some(t) = term.upgrade() else { continue };
                    if t.write(&b).await.is_err() { continue; }
                }
                Some(Ok(Frame::Text(t))) => match serde_json::from_str::<Control>(&t) {
                    Ok(Control::Resize { .. }) if viewer => {}
                    Ok(Control::Resize { cols, rows }) => {
                        if let Some(t) = term.upgrade() { t.resize(client, cols, rows); }
                    }
                    Err(e) => {
                        let m = text::fill(text::get(lang, "notice_bad_control"), &[("error", e.to_string())]);
                        if sink.send(json(serde_json::json!({"type": "notice", "message": m}))).await.is_err() { break; }
                    }
                },
                Some(Ok(Frame::Other)) => {}
                Some(Ok(Frame::Close(..))) | None => break,
                Some(Err(_)) => {
                    // The transport refused the message (over the size limit) or broke.
                    let reason = text::fill(text::get(lang, "close_too_big"), &[("kib", (MAX_CLIENT_MESSAGE / 1024).to_string())]);
                    let _ = sink.send(Frame::Close(CLOSE_TOO_BIG, reason)).await;
                    break;
                }
            }
        }
    }
    if let Some(t) = term.upgrade() {
        t.detach(client);
    }
}

/// A client of a terminal that has ended and been freed: what [`bridge`] would have sent it
/// (an empty replay, the exit code, a Close frame).
pub async fn ended<S: Sink<Frame> + Unpin>(mut sink: S, code: i32) {
    let _ = sink.send(Frame::Binary(Bytes::new())).await;
    let _ = sink.send(json(serde_json::json!({"type": "exit", "code": code}))).await;
    let _ = sink.send(Frame::Close(CLOSE_NORMAL, format!("exit {code}"))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_channel::mpsc;
    use std::io::{Read, Write};

    /// The bridge over channels and a plain pty (no sandbox, no root): replay, keystrokes,
    /// control messages, notices and the exit sequence.
    #[tokio::test]
    async fn bridge_speaks_the_protocol_over_channels() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut slave = std::fs::File::from(pty.slave);
        slave.write_all(b"before-attach\n").unwrap();
        let term = Terminal::start(0, pty.master, None, 80, 24, None).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;

        let (to_client, mut client_rx) = mpsc::channel::<Frame>(64);
        let (mut client_tx, from_client) = mpsc::channel::<Frame>(64);
        let bridge = tokio::spawn(bridge(to_client, from_client.map(Ok::<_, ()>), term.clone(), "en"));

        let Some(Frame::Binary(replay)) = client_rx.next().await else { panic!("no replay") };
        assert!(String::from_utf8_lossy(&replay).contains("before-attach"));

        slave.write_all(b"live-output\n").unwrap();
        let Some(Frame::Binary(live)) = client_rx.next().await else { panic!("no output") };
        assert!(String::from_utf8_lossy(&live).contains("live-output"));

        client_tx.send(Frame::Binary(Bytes::from_static(b"typed\n"))).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::task::spawn_blocking(move || {
            let n = slave.read(&mut buf).unwrap();
            (buf, n, slave)
        })
        .await
        .unwrap();
        let (buf, len, _slave) = n;
        assert_eq!(&buf[..len], b"typed\n");

        client_tx.send(Frame::Text(r#"{"type":"resize","cols":100,"rows":30}"#.into())).await.unwrap();
        client_tx.send(Frame::Text("{oops".into())).await.unwrap();
        // The pty echoes what was typed; skip output frames until the notice.
        let notice = loop {
            match client_rx.next().await {
                Some(Frame::Binary(_)) => continue,
                Some(Frame::Text(t)) => break t,
                other => panic!("no notice: {other:?}"),
            }
        };
        assert!(notice.contains("\"notice\""), "{notice}");
        assert_eq!(term.size(), (100, 30));

        term.mark_exited(5);
        let mut rest = Vec::new();
        while let Some(f) = client_rx.next().await {
            rest.push(f);
        }
        assert!(rest.contains(&Frame::Text(r#"{"code":5,"type":"exit"}"#.into())), "{rest:?}");
        assert_eq!(rest.last(), Some(&Frame::Close(CLOSE_NORMAL, "exit 5".into())));
        bridge.await.unwrap();
        assert_eq!(term.clients(), 0);
    }

    /// A viewer's keystrokes and resizes never reach the pty (read on its slave side), the
    /// learner's client is told while someone watches, and the viewer still sees the output.
    #[tokio::test]
    async fn a_viewer_cannot_type_or_resize() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut slave = std::fs::File::from(pty.slave);
        let term = Terminal::start(0, pty.master, None, 80, 24, None).unwrap();

        let (to_learner, mut learner_rx) = mpsc::channel::<Frame>(64);
        let (mut learner_tx, from_learner) = mpsc::channel::<Frame>(64);
        let learner = tokio::spawn(bridge(to_learner, from_learner.map(Ok::<_, ()>), term.clone(), "en"));
        assert!(matches!(learner_rx.next().await, Some(Frame::Binary(_))), "no replay");
        learner_tx.send(Frame::Text(r#"{"type":"resize","cols":90,"rows":30}"#.into())).await.unwrap();

        let (to_viewer, mut viewer_rx) = mpsc::channel::<Frame>(64);
        let (mut viewer_tx, from_viewer) = mpsc::channel::<Frame>(64);
        let viewer = tokio::spawn(bridge_as(to_viewer, from_viewer.map(Ok::<_, ()>), term.clone(), "en", Mode::Viewer));
        assert!(matches!(viewer_rx.next().await, Some(Frame::Binary(_))), "no replay for the viewer");
        let told = learner_rx.next().await;
        assert_eq!(told, Some(Frame::Text(r#"{"count":1,"type":"viewers"}"#.into())));

        viewer_tx.send(Frame::Binary(Bytes::from_static(b"viewer-typed\n"))).await.unwrap();
        viewer_tx.send(Frame::Text(r#"{"type":"resize","cols":20,"rows":5}"#.into())).await.unwrap();
        // The learner's keys go through the same pty after the viewer's: once they arrive, the
        // viewer's would have arrived before them.
        learner_tx.send(Frame::Binary(Bytes::from_static(b"learner-typed\n"))).await.unwrap();
        let (got, slave) = tokio::task::spawn_blocking(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while !got.ends_with(b"learner-typed\n") {
                let n = slave.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            (got, slave)
        })
        .await
        .unwrap();
        assert_eq!(got, b"learner-typed\n", "{:?}", String::from_utf8_lossy(&got));
        assert_eq!(term.size(), (90, 30), "the viewer's resize was applied");
        assert_eq!(term.viewers(), 1);
        assert_eq!(term.clients(), 1, "a viewer is not a client that keeps the session busy");

        // The viewer sees the output as it comes.
        let mut slave = slave;
        slave.write_all(b"for-both\n").unwrap();
        let seen = loop {
            match viewer_rx.next().await {
                Some(Frame::Binary(b)) if String::from_utf8_lossy(&b).contains("for-both") => break true,
                Some(_) => continue,
                None => break false,
            }
        };
        assert!(seen, "the viewer never saw the output");

        drop(viewer_tx);
        viewer.await.unwrap();
        let gone = loop {
            match learner_rx.next().await {
                Some(Frame::Text(t)) if t.contains("viewers") => break t,
                Some(_) => continue,
                None => panic!("the learner was not told the viewer left"),
            }
        };
        assert_eq!(gone, r#"{"count":0,"type":"viewers"}"#);
        term.mark_exited(0);
        drop(learner_tx);
        learner.await.unwrap();
    }
}
