//! The API's defences (docs/reliability.md A1, A3): the bearer token on changes (and on everything
//! beyond loopback), JSON-only bodies under 1 MiB, a header read timeout against slowloris,
//! and the refusal to listen on the network without `MODELCTL_API_TOKEN`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::api_server::{Auth, Server, voices};
use crate::support::Project;

fn error_text(body: &serde_json::Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
}

#[test]
fn changes_need_the_token_and_a_json_body() {
    let project = voices();
    let before = project.read("models.yaml");
    let server = Server::start(&project);

    let (status, body) = server.request(
        Method::POST,
        "/api/models/b/switch",
        None,
        &[],
        Auth::Without,
    );
    assert_eq!(status, 401, "{body}");
    assert!(error_text(&body).contains(".modelctl/api-token"), "{body}");
    let (status, _) = server.request(
        Method::PUT,
        "/api/models/b/config",
        Some(("application/json", br#"{"speed": 2}"#.to_vec())),
        &[],
        Auth::Without,
    );
    assert_eq!(status, 401);
    let (status, _) = server.post(
        "/api/models/b/switch",
        None,
        &[("authorization", "Bearer not-the-token")],
    );
    assert_eq!(status, 401, "a wrong token");
    let (status, _) = server.post(
        "/api/models/b/switch",
        None,
        &[("authorization", "Bearer ")],
    );
    assert_eq!(status, 401, "an empty token");
    assert_eq!(project.read("models.yaml"), before, "nothing changed");

    // A web page can POST text/plain across sites without a preflight; never JSON.
    let (status, body) = server.request(
        Method::POST,
        "/api/models/activate",
        Some(("text/plain", br#"{"id": "b"}"#.to_vec())),
        &[],
        Auth::Token,
    );
    assert_eq!(status, 415, "{body}");
    assert!(error_text(&body).contains("application/json"), "{body}");
    assert_eq!(project.read("models.yaml"), before, "nothing changed");

    let (status, body) = server.get("/api/models", &[]);
    assert_eq!(status, 200, "reads need no token on loopback: {body}");
    let (status, _) = server.request(Method::GET, "/api/models/a", None, &[], Auth::Without);
    assert_eq!(status, 200);

    let (status, body) = server.post("/api/models/deactivate/a", None, &[]);
    assert_eq!(status, 200, "the token opens the door: {body}");
    assert!(!project.read("models.yaml").contains("tts: a"));
}

#[test]
fn the_token_file_is_private_and_never_logged() {
    let project = voices();
    let server = Server::start(&project);
    let path = project.path("store/.modelctl/api-token");
    let mode = std::fs::metadata(&path)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    assert_eq!(server.token.len(), 64);
    let (status, _) = server.get("/api/plan", &[]);
    assert_eq!(status, 200);
    let log = server.log();
    assert!(
        log.starts_with("serving the modelctl API on http://"),
        "{log}"
    );
    assert!(
        log.contains("changes need Authorization: Bearer <the token in ")
            && log.contains(".modelctl/api-token>"),
        "{log}"
    );
    assert!(
        !log.contains(&server.token),
        "the token leaked into the log: {log}"
    );
    drop(server);

    // A second start keeps the token, and warns when others can read it.
    let first = project.read("store/.modelctl/api-token");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let server = Server::start(&project);
    assert_eq!(project.read("store/.modelctl/api-token"), first);
    let (status, _) = server.post("/api/models/deactivate/a", None, &[]);
    assert_eq!(status, 200);
    let log = server.log();
    assert!(log.contains("can be read by other users"), "{log}");
}

/// Sends `head` and then `body_len` bytes of body from another thread (ignoring write errors:
/// the server may stop reading), and returns what the server answered.
fn raw_exchange(server: &Server, head: &str, body_len: usize) -> String {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(head.as_bytes()).expect("head");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_body_over_1_mib_is_refused_and_the_server_keeps_answering() {
    let project = voices();
    let before = project.read("models.yaml");
    let server = Server::start(&project);
    let two_mib = 2 << 20;
    let head = format!(
        "PUT /api/models/b/config HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {two_mib}\r\n\r\n",
        server.addr, server.token
    );
    let answer = raw_exchange(&server, &head, two_mib);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"#) && answer.contains("1 MiB"),
        "{answer}"
    );

    // Without a Content-Length, the body is counted as it comes.
    let head = format!(
        "PUT /api/models/b/config HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.addr, server.token
    );
    let mut chunked = head.into_bytes();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..32 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(&server, &String::from_utf8(chunked).expect("ascii"), 0);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    assert_eq!(project.read("models.yaml"), before);
    let (status, body) = server.get("/api/models", &[]);
    assert_eq!(status, 200, "still serving: {body}");
    let (status, body) = server.put("/api/models/b/config", serde_json::json!({"speed": 2}));
    assert_eq!(status, 200, "a small body still works: {body}");
}

#[test]
fn a_slowloris_is_cut_off_while_others_are_served() {
    let project = voices();
    let server = Server::start_with(
        &project,
        "127.0.0.1:0",
        &[("MODELCTL_TEST_HEADER_TIMEOUT_MS", "800")],
    );
    let started = Instant::now();
    let mut slow = TcpStream::connect(server.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    slow.write_all(
        format!(
            "GET /api/models HTTP/1.1\r\nHost: {}\r\nX-Slow: ",
            server.addr
        )
        .as_bytes(),
    )
    .expect("partial request");
    // A byte every 100 ms: the deadline is for the whole header, not between bytes.
    let mut trickle = slow.try_clone().expect("clone");
    std::thread::spawn(move || {
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if trickle.write_all(b"a").is_err() {
                break;
            }
        }
    });

    let (status, body) = server.get("/api/models", &[]);
    assert_eq!(status, 200, "others are served meanwhile: {body}");

    let mut buf = [0u8; 1024];
    let cut = loop {
        match slow.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(e) => panic!("the slow client was not cut off: {e}"),
        }
    };
    assert!(cut);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(8),
        "cut off after {took:?}"
    );
    let (status, _) = server.get("/api/models", &[]);
    assert_eq!(status, 200);
}

#[test]
fn connections_over_the_cap_wait_for_a_free_one() {
    let project = voices();
    let server = Server::start_with(
        &project,
        "127.0.0.1:0",
        &[
            ("MODELCTL_TEST_HEADER_TIMEOUT_MS", "800"),
            ("MODELCTL_TEST_MAX_CONNECTIONS", "1"),
        ],
    );
    // An idle connection takes the only slot until the header timeout closes it.
    let started = Instant::now();
    let idle = TcpStream::connect(server.addr).expect("connect");
    std::thread::sleep(Duration::from_millis(100));
    let (status, body) = server.get("/api/models", &[]);
    let took = started.elapsed();
    assert_eq!(status, 200, "served once the slot was free: {body}");
    assert!(
        took >= Duration::from_millis(700),
        "not held back: {took:?}"
    );
    drop(idle);
}

#[test]
fn ctrl_c_stops_the_server_even_with_a_connection_open() {
    let project = voices();
    let mut server = Server::start(&project);
    let (status, _) = server.get("/api/models", &[]);
    assert_eq!(status, 200);
    // A client in the middle of its headers: shutdown does not wait for it forever.
    let mut open = TcpStream::connect(server.addr).expect("connect");
    open.write_all(b"GET /api/models HTTP/1.1\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(100));
    let status = server
        .interrupt(Duration::from_secs(15))
        .expect("serve did not stop on Ctrl-C");
    assert!(status.success(), "{status:?}");
    // As `watch` does, it says so.
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.log().contains("serve stopped"), "{}", server.log());
}

#[test]
fn a_network_address_needs_the_token_in_the_environment_and_on_every_request() {
    let project = voices();
    let mut child = project
        .command(&["serve", "--listen", "0.0.0.0:0"], &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started on 0.0.0.0 without MODELCTL_API_TOKEN");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert!(!status.success());
    assert!(
        stderr.contains("without MODELCTL_API_TOKEN") && stderr.contains("0.0.0.0:0"),
        "{stderr}"
    );

    let secret = "a-long-test-secret-0123456789abcdef";
    let server = Server::start_with(&project, "0.0.0.0:0", &[("MODELCTL_API_TOKEN", secret)]);
    let (status, body) = server.request(Method::GET, "/api/models", None, &[], Auth::Without);
    assert_eq!(status, 401, "{body}");
    assert!(error_text(&body).contains("MODELCTL_API_TOKEN"), "{body}");
    let (status, body) = server.get("/api/models", &[]);
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.request(Method::GET, "/api/openapi.json", None, &[], Auth::Without);
    assert_eq!(status, 200, "the document is public");
    assert!(
        !project.path("store/.modelctl/api-token").exists(),
        "a token from the environment is never written"
    );
    let log = server.log();
    assert!(log.contains("requests need Authorization"), "{log}");
    assert!(!log.contains(secret), "{log}");
}

#[test]
fn without_a_manifest_serve_says_where_the_token_would_be_and_how_to_go_on() {
    let project = Project::new();
    let run = project.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("where the API token is kept")
            && run.stderr.contains("MODELCTL_API_TOKEN"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_openapi_document_is_served_without_a_token() {
    let project = voices();
    let server = Server::start(&project);
    let (status, doc) = server.request(Method::GET, "/api/openapi.json", None, &[], Auth::Without);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/models/{id}/switch"]["post"]["security"].is_array());
    assert!(doc["paths"]["/api/events"]["get"].is_object());
}
