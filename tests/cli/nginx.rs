//! `modelctl apply` against a real nginx: ranges, `ETag` and `If-Range` as a production
//! server speaks them, not as our own fake server understands them.
//!
//! nginx runs as a child process (`daemon off; master_process off;`, so it is one process
//! that runs as the test's user and dies with [`Nginx`]'s drop) on a free loopback port,
//! with a generated config, its logs and temporary paths in a temporary directory, and an
//! access log in a format the tests parse: method, path, `Range`, `If-Range`, status, body
//! bytes. CI installs nginx (`.ci/run`); without it the tests fail under `CI` and are skipped
//! with a note elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::apply::{BIG, FAST, assert_installed, blobs, manifest, url_model};
use crate::faults::{CHUNK, pseudo_random};
use crate::support::{Project, sha256_hex};

/// A running nginx serving `www/` of its directory.
pub struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    scheme: &'static str,
}

/// A server certificate and its key (PEM files), for nginx over https.
pub struct ServerCert<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// One line of the access log.
#[derive(Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: String,
    pub if_range: String,
    pub status: u16,
    pub bytes: u64,
}

impl Nginx {
    /// Starts nginx, or returns `None` (after saying why) when it is not installed and this
    /// is not CI.
    fn start() -> Option<Self> {
        Self::launch(None)
    }

    /// nginx speaking only https with `cert`; `/downgrade.bin` redirects to `http://` on the
    /// same port (where nginx would answer 400 and log it, were it followed).
    pub fn start_tls(cert: &ServerCert<'_>) -> Option<Self> {
        Self::launch(Some(cert))
    }

    fn launch(tls: Option<&ServerCert<'_>>) -> Option<Self> {
        let Some(binary) = find_nginx() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "nginx is not installed; CI must have it (`.ci/run` installs the Debian package `nginx`)"
            );
            eprintln!("skipping: nginx is not installed (apt-get install nginx to run this test)");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("www")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
        if let Some(tls) = tls {
            std::fs::copy(tls.cert, dir.path().join("cert.pem")).expect("copy cert");
            std::fs::copy(tls.key, dir.path().join("key.pem")).expect("copy key");
        }
        let mut last_error = String::new();
        // A free port can be taken between our probe and nginx's bind: try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            write_config(dir.path(), port, tls.is_some());
            let d = dir.path();
            let mut child = Command::new(&binary)
                .arg("-p")
                .arg(d)
                .arg("-e")
                .arg(d.join("error.log"))
                .arg("-c")
                .arg(d.join("nginx.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let scheme = if tls.is_some() { "https" } else { "http" };
                    return Some(Self {
                        child,
                        port,
                        dir,
                        scheme,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            last_error = std::fs::read_to_string(d.join("error.log")).unwrap_or_default();
        }
        panic!("nginx did not start:\n{last_error}");
    }

    pub fn www(&self, name: &str) -> PathBuf {
        self.dir.path().join("www").join(name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}://127.0.0.1:{}/{name}", self.scheme, self.port)
    }

    /// nginx's error log (TLS handshake failures are logged at `info`).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn log(&self) -> Vec<Logged> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                assert_eq!(f.len(), 6, "{line}");
                Logged {
                    method: f[0].to_owned(),
                    path: f[1].to_owned(),
                    range: f[2].to_owned(),
                    if_range: f[3].to_owned(),
                    status: f[4].parse().expect("status"),
                    bytes: f[5].parse().expect("bytes"),
                }
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
}

fn write_config(dir: &Path, port: u16, tls: bool) {
    let d = dir.display();
    let server = if tls {
        format!(
            "server {{ listen 127.0.0.1:{port} ssl; root {d}/www;\n\
               ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;\n\
               location = /downgrade.bin {{ return 302 http://127.0.0.1:{port}/w.bin; }} }}"
        )
    } else {
        format!("server {{ listen 127.0.0.1:{port}; root {d}/www; }}")
    };
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
           log_format t escape=none '$request_method\\t$uri\\t$http_range\\t$http_if_range\\t$status\\t$body_bytes_sent';\n\
           access_log {d}/access.log t;\n\
           client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy;\n\
           fastcgi_temp_path {d}/tmp/fastcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;\n\
           sendfile on;\n\
           {server}\n\
         }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
}

#[test]
fn apply_against_nginx_downloads_in_ranges_and_verifies() {
    let Some(nginx) = Nginx::start() else { return };
    let big = pseudo_random(BIG, 40);
    let small = pseudo_random(70_000, 41);
    std::fs::write(nginx.www("big.bin"), &big).expect("write");
    std::fs::write(nginx.www("small.bin"), &small).expect("write");
    let project = Project::with_manifest(&manifest(
        &[
            url_model("big", "llm", &nginx.url("big.bin"), None),
            url_model(
                "small",
                "tts",
                &nginx.url("small.bin"),
                Some(&sha256_hex(&small)),
            ),
        ],
        &[("llm", "big"), ("tts", "small")],
    ));
    let run = project.run_env(&["lock"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lock = project.read("models.lock");
    let etag = lock
        .lines()
        .filter_map(|l| l.trim().strip_prefix("etag: "))
        .map(|e| serde_json::from_str::<String>(e).expect("JSON string"))
        .next()
        .expect("nginx sends an ETag");

    let run = project.run_env(&["-v", "apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "llm", "big", "big.bin", &big);
    assert_installed(&project, "tts", "small", "small.bin", &small);
    assert!(
        project
            .read("models.lock")
            .contains(&format!("sha256: \"{}\"", sha256_hex(&big))),
        "the big file's sha256 is learned"
    );

    let gets: Vec<Logged> = nginx
        .log()
        .into_iter()
        .filter(|l| l.method == "GET" && l.path == "/big.bin")
        .collect();
    assert_eq!(gets.len() as u64, (BIG as u64).div_ceil(CHUNK), "{gets:#?}");
    for get in &gets {
        assert_eq!(get.status, 206, "{get:?}");
        assert!(get.range.starts_with("bytes="), "{get:?}");
        assert_eq!(get.if_range, etag, "{get:?}");
    }
    assert_eq!(gets.iter().map(|g| g.bytes).sum::<u64>(), BIG as u64);
    // `-v` showed each of those requests, and nginx's answer to it.
    let shown = |what: &str| run.stderr.lines().filter(|l| l.contains(what)).count();
    let request = format!("GET {} (bytes=", nginx.url("big.bin"));
    assert_eq!(shown(&request), gets.len(), "{}", run.stderr);
    let answer = format!("206 Partial Content for GET {}", nginx.url("big.bin"));
    assert_eq!(shown(&answer), gets.len(), "{}", run.stderr);

    let logged = nginx.log().len();
    let again = project.run_env(&["apply"], FAST);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("Nothing to do"), "{}", again.stderr);
    assert_eq!(nginx.log().len(), logged, "no request");
}

#[test]
fn a_file_replaced_on_nginx_fails_the_checksum_and_publishes_nothing() {
    let Some(nginx) = Nginx::start() else { return };
    let big = pseudo_random(BIG, 42);
    std::fs::write(nginx.www("big.bin"), &big).expect("write");
    let project = Project::with_manifest(&manifest(
        &[url_model(
            "m",
            "llm",
            &nginx.url("big.bin"),
            Some(&sha256_hex(&big)),
        )],
        &[("llm", "m")],
    ));
    assert_eq!(project.run_env(&["lock"], FAST).code, 0);

    // Same size, other bytes, a later mtime: nginx's ETag changes, so `If-Range` fails.
    let other = pseudo_random(BIG, 43);
    let replaced = nginx.www("big.bin.new");
    std::fs::write(&replaced, &other).expect("write");
    let later = std::time::SystemTime::now() + Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(&replaced)
        .and_then(|f| f.set_modified(later))
        .expect("mtime");
    std::fs::rename(&replaced, nginx.www("big.bin")).expect("rename");

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "expected sha256:{}, got sha256:{}",
            sha256_hex(&big),
            sha256_hex(&other)
        )),
        "{}",
        run.stderr
    );
    assert!(blobs(&project).is_empty());
    // The first ranged request's `If-Range` failed: its 200 was the new file, streamed once,
    // and no other connection asked for anything.
    let gets: Vec<Logged> = nginx
        .log()
        .into_iter()
        .filter(|l| l.method == "GET")
        .collect();
    assert_eq!(
        gets.len(),
        1,
        "one full download after If-Range failed: {gets:#?}"
    );
    assert_eq!((gets[0].status, gets[0].bytes), (200, BIG as u64));
}
