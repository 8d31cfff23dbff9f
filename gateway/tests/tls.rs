//! TLS termination with a certificate the test makes (rcgen): a real TLS client gets answers and
//! HSTS over HTTPS, plain HTTP on the TLS port gets none, and bad certificate files stop start-up.

mod support;

use std::{path::PathBuf, sync::Arc};

use gateway::{App, Config, Seams, StartError};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use seams::{SystemClock, TokioNet};
use support::{Served, Stack, serve_on_loopback};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A self-signed certificate for `localhost` in PEM files under a fresh directory.
struct Certificate {
    der: CertificateDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

fn make_certificate(name: &str) -> Certificate {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let directory = std::env::temp_dir().join(format!("gateway-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let cert_path = directory.join("cert.pem");
    let key_path = directory.join("key.pem");
    std::fs::write(&cert_path, made.cert.pem()).unwrap();
    std::fs::write(&key_path, made.signing_key.serialize_pem()).unwrap();
    Certificate {
        der: made.cert.der().clone(),
        cert_path,
        key_path,
    }
}

async fn serve_tls(certificate: &Certificate) -> (Stack, Served) {
    let (cert_path, key_path) = (certificate.cert_path.clone(), certificate.key_path.clone());
    let stack = Stack::start_with(
        |_| {},
        move |config| {
            config.tls.cert_path = Some(cert_path);
            config.tls.key_path = Some(key_path);
        },
    )
    .await;
    let served = serve_on_loopback(stack.app.clone()).await;
    (stack, served)
}

#[tokio::test]
async fn a_tls_client_is_answered_over_https_with_hsts() {
    let certificate = make_certificate("https");
    let (_stack, served) = serve_tls(&certificate).await;
    let api = served.api;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(api).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the TLS handshake succeeds against the test's certificate");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("/api/projects")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(
        response.status(),
        401,
        "an answer from the gateway, over TLS"
    );
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["code"], "unauthenticated");
}

#[tokio::test]
async fn plain_http_on_a_tls_port_gets_no_answer() {
    let certificate = make_certificate("plain");
    let (_stack, served) = serve_tls(&certificate).await;
    let api = served.api;
    let mut tcp = tokio::net::TcpStream::connect(api).await.unwrap();
    tcp.write_all(b"GET /api/projects HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut answer),
    )
    .await
    .expect("the server closes the connection");
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "no HTTP answer in the clear"
    );
}

#[test]
fn unusable_certificate_files_stop_start_up() {
    let certificate = make_certificate("bad");
    let seams = Seams {
        net: TokioNet,
        clock: Arc::new(SystemClock),
        seed: 1,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let start = |cert_path: PathBuf, key_path: PathBuf| {
        let mut config = Config::default();
        config.tls.cert_path = Some(cert_path);
        config.tls.key_path = Some(key_path);
        App::from_config(config, &seams, gateway::app::embedded_bus(1))
    };
    // The key given as the certificate, and a file that does not exist.
    for (cert, key) in [
        (certificate.key_path.clone(), certificate.key_path.clone()),
        (
            certificate.cert_path.clone(),
            certificate.cert_path.with_file_name("missing.pem"),
        ),
    ] {
        match start(cert, key) {
            Err(StartError::Tls(error)) => assert!(!error.to_string().is_empty()),
            other => panic!("expected a TLS error, got {other:?}"),
        }
    }
    // Only one of the two paths: refused by validation.
    let mut config = Config::default();
    config.tls.cert_path = Some(certificate.cert_path.clone());
    assert!(config.validate().unwrap_err().to_string().contains("tls"));
}
