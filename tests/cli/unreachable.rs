//! Servers that cannot be talked to: docs/reliability.md N6 (connect timeout) and N8 (TLS).
//!
//! N6 uses a loopback port whose listener never accepts and whose accept queue is full, so
//! the kernel drops every further SYN and a connect hangs until the client gives up. N8 runs
//! the real nginx of `nginx.rs` over https with a certificate from a throwaway CA made by the
//! `openssl` command line: trusted through `SSL_CERT_FILE` to lock the model, untrusted for
//! the apply that must fail. Each test asserts the message, the number of attempts and that
//! the store did not change.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::apply::{FAST, blobs, manifest, url_model};
use crate::faults::{FaultServer, pseudo_random};
use crate::nginx::{Nginx, ServerCert};
use crate::support::{Project, sha256_hex};

/// A listener on `addr` that completes no connection: backlog 0, filled by connections it
/// never accepts, so further SYNs are dropped (Linux) and connects hang.
struct BlackHole {
    _queued: Vec<TcpStream>,
    _listener: tokio::net::TcpListener,
    _runtime: tokio::runtime::Runtime,
}

impl BlackHole {
    fn at(addr: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.set_reuseaddr(true)?;
                socket.bind(addr)?;
                socket.listen(0)
            })
            .expect("listen");
        let mut queued = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(stream) => queued.push(stream),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Self {
                        _queued: queued,
                        _listener: listener,
                        _runtime: runtime,
                    };
                }
                Err(e) => panic!("probing the black hole: {e}"),
            }
        }
        panic!("the kernel completed 16 connections to a listener that accepts none");
    }
}

#[test]
fn n6_a_connect_timeout_is_retried_then_named_with_the_host() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 70);
    server.serve("/w.bin", bytes.clone());
    let project = Project::with_manifest(&manifest(
        &[url_model(
            "m",
            "tts",
            &server.url("/w.bin"),
            Some(&sha256_hex(&bytes)),
        )],
        &[("tts", "m")],
    ));
    assert_eq!(project.run_env(&["lock"], FAST).code, 0);
    let lock = project.read("models.lock");
    // The server goes away and its port becomes a black hole.
    let addr: SocketAddr = server.base["http://".len()..].parse().expect("address");
    drop(server);
    let _hole = BlackHole::at(addr);

    let started = Instant::now();
    let env = [
        ("MODELCTL_HTTP_TIMEOUT", "1"),
        ("MODELCTL_HTTP_RETRIES", "2"),
        ("MODELCTL_HTTP_RETRY_BASE_MS", "10"),
    ];
    let run = project.run_env(&["apply"], &env);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.stderr);
    // Half a second to connect for the HEAD of the upstream check and for each attempt.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        run.stderr.contains(&format!(
            "cannot download `m/w.bin` from http://{addr}/w.bin: connect timeout to 127.0.0.1: \
             no connection within 0.5 s; failed after 2 attempts"
        )),
        "{}",
        run.stderr
    );
    // The plan's warning (on stdout) about the upstream check says so too.
    assert!(
        run.stdout.contains(&format!(
            "cannot check the upstream file: cannot reach `http://{addr}/w.bin`: connect timeout \
             to 127.0.0.1"
        )),
        "{}",
        run.stdout
    );
    let retries = run.stderr.matches("retrying in").count();
    assert_eq!(retries, 1, "{}", run.stderr);
    assert!(blobs(&project).is_empty());
    assert!(!project.path("store/active").exists());
    assert_eq!(project.read("models.lock"), lock);
}

/// A CA and a server certificate for `127.0.0.1` signed by it, made with `openssl`.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    /// `None` (after saying why) when `openssl` is missing and this is not CI.
    fn make() -> Option<Self> {
        if Command::new("openssl").arg("version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "openssl is not installed; CI must have it (`.ci/run` installs it)"
            );
            eprintln!("skipping: the openssl command is not installed");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(
            d.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            d,
            &[
                &["req", "-x509"],
                &ec[..],
                &["-keyout", "ca.key", "-out", "ca.pem"],
                &["-days", "2", "-subj", "/CN=modelctl test CA"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign"],
            ],
        );
        openssl(
            d,
            &[
                &["req"],
                &ec[..],
                &["-keyout", "key.pem", "-out", "leaf.csr"],
                &["-subj", "/CN=127.0.0.1"],
            ],
        );
        openssl(
            d,
            &[
                &[
                    "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                ],
                &[
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    "leaf.ext",
                    "-out",
                    "cert.pem",
                ],
            ],
        );
        Some(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn openssl(dir: &Path, args: &[&[&str]]) {
    let out = Command::new("openssl")
        .args(args.concat())
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {:?}: {}",
        args.concat(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// nginx over https with a certificate of `certs`' CA.
fn tls_nginx(certs: &Certs) -> Option<Nginx> {
    let (cert, key) = (certs.path("cert.pem"), certs.path("key.pem"));
    Nginx::start_tls(&ServerCert {
        cert: &cert,
        key: &key,
    })
}

#[test]
fn n8_an_untrusted_certificate_fails_at_once_naming_the_host() {
    let Some(certs) = Certs::make() else { return };
    let Some(nginx) = tls_nginx(&certs) else {
        return;
    };
    let bytes = pseudo_random(5000, 71);
    std::fs::write(nginx.www("w.bin"), &bytes).expect("write");
    let project = Project::with_manifest(&manifest(
        &[url_model(
            "m",
            "tts",
            &nginx.url("w.bin"),
            Some(&sha256_hex(&bytes)),
        )],
        &[("tts", "m")],
    ));
    let ca = certs.path("ca.pem");
    let trusted = [FAST, &[("SSL_CERT_FILE", ca.to_str().expect("utf-8"))]].concat();
    let locked = project.run_env(&["lock"], &trusted);
    assert_eq!(
        locked.code, 0,
        "the CA is trusted for locking: {}",
        locked.stderr
    );
    let lock = project.read("models.lock");
    let handshakes = || nginx.error_log().matches("while SSL handshaking").count();
    let before = handshakes();
    let requests = nginx.log().len();

    // Without the CA the certificate is self-signed as far as the client can tell.
    let env = [FAST, &[("MODELCTL_HTTP_RETRIES", "4")]].concat();
    let run = project.run_env(&["apply"], &env);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = run
        .stderr
        .lines()
        .find(|l| l.contains("cannot download `m/w.bin`"))
        .unwrap_or_else(|| panic!("no download error: {}", run.stderr));
    assert!(
        error.contains("the TLS certificate of 127.0.0.1 was rejected: invalid peer certificate"),
        "{error}"
    );
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
    // One failed handshake for the upstream check and one for the download: no retries.
    let failed = handshakes() - before;
    assert_eq!(failed, 2, "{}", nginx.error_log());
    assert_eq!(
        nginx.log().len(),
        requests,
        "no request got through: {:?}",
        nginx.log()
    );
    assert!(blobs(&project).is_empty());
    assert!(!project.path("store/active").exists());
    assert_eq!(project.read("models.lock"), lock);
}

#[test]
fn n8_a_redirect_from_https_to_http_is_refused() {
    let Some(certs) = Certs::make() else { return };
    let Some(nginx) = tls_nginx(&certs) else {
        return;
    };
    std::fs::write(nginx.www("w.bin"), pseudo_random(5000, 72)).expect("write");
    let project = Project::with_manifest(&manifest(
        &[url_model("m", "tts", &nginx.url("downgrade.bin"), None)],
        &[("tts", "m")],
    ));
    let ca = certs.path("ca.pem");
    let trusted = [FAST, &[("SSL_CERT_FILE", ca.to_str().expect("utf-8"))]].concat();

    let run = project.run_env(&["apply"], &trusted);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("redirect from https to a non-https URL refused"),
        "{}",
        run.stderr
    );
    let requests: Vec<String> = nginx
        .log()
        .iter()
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    assert_eq!(
        requests,
        ["HEAD /downgrade.bin"],
        "the http URL was never asked for"
    );
    assert!(blobs(&project).is_empty());
    let lock = std::fs::read_to_string(project.path("models.lock")).unwrap_or_default();
    assert!(
        !lock.contains("downgrade.bin"),
        "nothing was locked: {lock}"
    );
}
