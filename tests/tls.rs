//! TLS without a proxy: `nsplay serve --tls-cert --tls-key` with a self-signed certificate made
//! here by the `openssl` command. An API call over HTTPS creates a session (its identity cookie
//! `Secure`), the terminal's WebSocket over wss runs a command, a peer that never finishes its
//! handshake is cut off at the header timeout (and its slot comes back), and `--redirect-http`
//! answers plain HTTP with a 308 to the same URL over HTTPS. A start that fails (a bad key, a
//! taken port) leaves no cgroup behind.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::Server;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

/// A throw-away CA and a certificate it signed for `localhost` and 127.0.0.1, in `dir`:
/// (CA cert, server cert, server key) paths (webpki refuses a CA certificate as the server's).
fn self_signed(dir: &std::path::Path) -> (String, String, String) {
    let p = |f: &str| dir.join(f).display().to_string();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("the openssl command (Debian's openssl package; tests/run.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=nsplay test CA", "-keyout", &p("ca.key"), "-out", &p("ca.pem")],
        ]
        .concat(),
    );
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", &p("key.pem"), "-out", &p("req.csr")]].concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("req.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("cert.pem"),
    ]);
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

fn connector(cert: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls(connector: &TlsConnector, addr: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake with nsplay")
}

/// One HTTP/1.1 request (connection: close) over `s`; the whole reply as text.
async fn request<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S, head: &str, body: &str) -> String {
    let req = format!("{head}\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut all)).await.expect("no reply").ok();
    String::from_utf8_lossy(&all).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_work_a_stalled_handshake_is_cut_off_and_http_redirects() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = self_signed(dir.path());
    let redirect = format!("127.0.0.1:{}", free_port());
    let mut srv = Server::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--redirect-http",
        &redirect,
        "--header-timeout",
        "1s",
        "--max-connections-per-address",
        "4",
        "--warm-pool",
        "1",
    ]);
    assert!(srv.base.starts_with("https://"), "{}", srv.base);
    let tc = connector(&ca);

    // The API over HTTPS: a session, and the learner's cookie marked Secure.
    let mut s = tls(&tc, &srv.addr).await;
    let reply = request(&mut s, "POST /api/sessions HTTP/1.1\r\ncontent-type: application/json", "{}").await;
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let cookie = reply
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: nsplay_learner="))
        .unwrap_or_else(|| panic!("{reply}"));
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let body = &reply[reply.find("\r\n\r\n").unwrap() + 4..];
    let session: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let terminal = session["terminal"].as_str().unwrap().to_string();

    // The terminal over wss: a command runs and its output comes back.
    let stream = tls(&tc, &srv.addr).await;
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://localhost{terminal}"), stream).await.expect("wss upgrade");
    ws.send(Message::Binary(b"echo over-tls-$((6*7))\r".to_vec().into())).await.unwrap();
    let mut out = Vec::new();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                out.extend_from_slice(&b);
                if String::from_utf8_lossy(&out).contains("over-tls-42") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "{}", String::from_utf8_lossy(&out));

    // A peer that connects and never sends its hello: closed at the header timeout. Three such
    // peers and the open WebSocket fill the per-address cap of 4; once they are cut off, a real
    // client gets in again.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(TcpStream::connect(&srv.addr).await.unwrap());
    }
    for s in &mut stalled {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "a handshake that never started kept its connection open");
        assert!(buf.is_empty(), "{buf:?}");
    }
    let mut s = tls(&tc, &srv.addr).await;
    let reply = request(&mut s, "GET /healthz HTTP/1.1", "").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "the slots came back: {reply}");

    // Plain HTTP on the TLS port is not served; on the redirect listener it is redirected.
    let mut plain = TcpStream::connect(&srv.addr).await.unwrap();
    let reply = request(&mut plain, "GET /healthz HTTP/1.1", "").await;
    assert!(!reply.contains("200 OK"), "{reply}");
    let mut plain = TcpStream::connect(&redirect).await.unwrap();
    let reply = request(&mut plain, "GET /learn/uts?lang=ja HTTP/1.1", "").await;
    let port = srv.addr.rsplit_once(':').unwrap().1;
    assert!(reply.starts_with("HTTP/1.1 308"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains(&format!("location: https://localhost:{port}/learn/uts?lang=ja")),
        "{reply}"
    );

    let _ = ws.close(None).await;
    let (code, _) = srv.stop_with(nix::sys::signal::Signal::SIGINT);
    assert_eq!(code, Some(0), "{}", srv.log.lock().unwrap());
}

#[test]
fn a_certificate_without_its_key_or_an_unreadable_one_stops_the_start_with_the_reason() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = self_signed(dir.path());
    let out =
        Command::new(common::BIN).args(["serve", "--listen", "127.0.0.1:0", "--tls-cert", &cert]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls_key"), "{err}");
    // A key file that is not a key: the start fails naming the file.
    let inst = common::Instance::new();
    let out = Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &cert])
        .args(inst.serve_args())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tls_key") && err.contains(&cert), "{err}");
    // A start that fails leaves nothing behind: no session was built, no parent group stays
    // (the warm pool used to start first and leave its groups).
    let left: Vec<_> = inst.parent_dirs().into_iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "a failed start left {left:?}");
    // The same for a port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = Command::new(common::BIN).args(["serve", "--listen", &port]).args(inst.serve_args()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on") && err.contains("--listen"), "{err}");
    let left: Vec<_> = inst.parent_dirs().into_iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "a start on a taken port left {left:?}");
}
