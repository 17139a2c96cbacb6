//! Protecting the web endpoints: TLS, client certificates, basic auth, timeouts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use respan_exporter::web_config::WebConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM
/// files in a fresh directory.
struct Pki {
    dir: PathBuf,
    ca_pem: String,
    client_pem: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("respan-pki-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");

        let mut server =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("key");
        let server_cert = server.signed_by(&server_key, &ca).expect("server cert");

        let mut client = CertificateParams::new(vec!["prometheus".to_string()]).expect("params");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().expect("key");
        let client_cert = client.signed_by(&client_key, &ca).expect("client cert");

        std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write");
        std::fs::write(dir.join("server.crt"), server_cert.pem()).expect("write");
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write");
        Self {
            dir,
            ca_pem: ca.pem(),
            client_pem: format!("{}{}", client_cert.pem(), client_key.serialize_pem()),
        }
    }

    fn web_config(&self, yaml: &str) -> WebConfig {
        let path = self.dir.join("web.yml");
        std::fs::write(&path, yaml).expect("write");
        WebConfig::load(&path).expect("valid web config")
    }

    fn client(&self, with_identity: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder().add_root_certificate(
            reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca"),
        );
        if with_identity {
            b = b.identity(
                reqwest::Identity::from_pem(self.client_pem.as_bytes()).expect("identity"),
            );
        }
        b.build().expect("client")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn https(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.address.replace("http://", "https://"))
}

async fn status(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    client
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn tls_serves_metrics_to_a_client_that_trusts_the_ca() {
    let pki = Pki::new("tls");
    let web =
        pki.web_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let app = spawn_app_with(many_customers("prod", 3), |c| c.web = web).await;
    app.poll().await;
    let r = pki
        .client(false)
        .get(https(&app, "/metrics"))
        .send()
        .await
        .expect("TLS request");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    let m = Exposition::parse(&r.text().await.expect("body"));
    assert_eq!(m.env("respan_customers", "prod"), Some(3.0));
    // Plain HTTP to the TLS port gets no page.
    let plain = reqwest::get(format!("{}/metrics", app.address)).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status().as_u16() != 200));
    // A client that does not trust the CA refuses the server.
    assert!(
        status(&reqwest::Client::new(), &https(&app, "/metrics"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn client_certificates_are_required_when_configured() {
    let pki = Pki::new("mtls");
    let web = pki.web_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n",
    );
    let app = spawn_app_with(vec![], |c| c.web = web).await;
    assert!(
        status(&pki.client(false), &https(&app, "/healthz"))
            .await
            .is_err()
    );
    assert_eq!(
        status(&pki.client(true), &https(&app, "/metrics")).await,
        Ok(200)
    );
}

#[tokio::test]
async fn basic_auth_guards_metrics_but_not_the_probes() {
    let pki = Pki::new("basic");
    let hash = bcrypt::hash("s3cret", 4).expect("hash");
    let web = pki.web_config(&format!("basic_auth_users:\n  prometheus: {hash}\n"));
    let app = spawn_app_with(vec![], |c| c.web = web).await;
    let url = format!("{}/metrics", app.address);

    let r = app.http.get(&url).send().await.expect("answer");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"respan-exporter\"")
    );
    let wrong = app
        .http
        .get(&url)
        .basic_auth("prometheus", Some("guess"))
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong.status().as_u16(), 401);
    let right = app
        .http
        .get(&url)
        .basic_auth("prometheus", Some("s3cret"))
        .send()
        .await
        .expect("answer");
    assert_eq!(right.status().as_u16(), 200);
    assert_eq!(app.get("/").await.0, 401);
    assert_eq!(app.get("/healthz").await.0, 200);
    assert_eq!(app.get("/readyz").await.0, 503);
}

#[tokio::test]
async fn tls_and_basic_auth_together() {
    let pki = Pki::new("both");
    let hash = bcrypt::hash("pw", 4).expect("hash");
    let web = pki.web_config(&format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: server.key\nbasic_auth_users:\n  p: {hash}\n",
        Path::new(&pki.dir).join("server.crt").display()
    ));
    let app = spawn_app_with(vec![], |c| c.web = web).await;
    let client = pki.client(false);
    assert_eq!(status(&client, &https(&app, "/metrics")).await, Ok(401));
    let r = client
        .get(https(&app, "/metrics"))
        .basic_auth("p", Some("pw"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = spawn_app_with(many_customers("prod", 1), |c| {
        c.server_limits.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Meanwhile, everyone else is served.
    assert_eq!(app.get("/healthz").await.0, 200);
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    match closed {
        Ok(Ok(n)) => {
            // Closed, or a 408 before closing.
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
        }
        Ok(Err(_)) => {}
        Err(_) => panic!("the server kept a stalled connection open for 5 s"),
    }
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_others_recover() {
    let app = spawn_app_with(vec![], |c| {
        c.server_limits.max_connections = 2;
        c.server_limits.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let _a = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let _b = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    // Once the idle connections time out, the server answers again.
    let back = eventually(Duration::from_secs(5), async || {
        reqwest::get(format!("{}/healthz", app.address))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(back);
}
