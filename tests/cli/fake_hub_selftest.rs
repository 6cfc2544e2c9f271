//! The fake hub against a plain HTTP client: it speaks docs/protocols.md section 1 as the tests of
//! the Hub source rely on (info with blobs, tree pages, the three resolve shapes, errors,
//! access, the CDN's ranges, faults, the request log).

use reqwest::Method;
use serde_json::Value;

use crate::fake_blob::BlobFaults;
use crate::fake_hub::{FakeHub, Lfs, RepoKind, git_blob_id};
use crate::raw_client::Client;
use crate::support::sha256_hex;

const CONFIG: &[u8] = b"{\"model_type\": \"fake\"}\n";

/// A model with a regular file at the root and an LFS file in a folder.
fn hub_with_model() -> (FakeHub, Vec<u8>) {
    let hub = FakeHub::start();
    let weights = crate::faults::pseudo_random(300_000, 7);
    hub.repo(RepoKind::Model, "org/model").commit(&[
        ("config.json", CONFIG, Lfs::No),
        ("weights/model.safetensors", &weights, Lfs::Yes),
    ]);
    (hub, weights)
}

#[test]
fn git_blob_ids_are_gits() {
    assert_eq!(
        git_blob_id(b"hello\n"),
        "ce013625030ba8dba906f756967f9e9ca394464a"
    );
    assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
}

#[test]
fn revision_info_lists_siblings_with_blobs() {
    let (hub, weights) = hub_with_model();
    let repo = hub.repo(RepoKind::Model, "org/model");
    let first = repo.head();
    let client = Client::new();

    let info = client.get(&format!("{}/revision/main?blobs=true", repo.api_url()));
    assert_eq!(info.status, 200);
    let info = info.json();
    assert_eq!(info["id"], "org/model");
    assert_eq!(info["sha"], first.as_str());
    let siblings = info["siblings"].as_array().expect("siblings");
    assert_eq!(siblings.len(), 2);
    assert_eq!(siblings[0]["rfilename"], "config.json");
    assert_eq!(siblings[0]["size"], CONFIG.len());
    assert_eq!(siblings[0]["blobId"], git_blob_id(CONFIG));
    assert!(siblings[0].get("lfs").is_none());
    let lfs = &siblings[1];
    assert_eq!(lfs["rfilename"], "weights/model.safetensors");
    assert_eq!(lfs["size"], weights.len());
    assert_eq!(lfs["lfs"]["sha256"], sha256_hex(&weights));
    assert_eq!(lfs["lfs"]["size"], weights.len());
    assert!(lfs["lfs"]["pointerSize"].as_u64().expect("pointerSize") > 100);

    // Without blobs, names only; without a revision, main.
    let bare = client.get(&repo.api_url()).json();
    assert_eq!(bare["sha"], first.as_str());
    assert_eq!(
        bare["siblings"][0],
        serde_json::json!({"rfilename": "config.json"})
    );

    // A newer commit moves main; a tag and a branch with a slash keep the old one.
    repo.tag("v1");
    repo.set_branch("refs/pr/1", &first);
    let second = repo.commit(&[("README.md", b"# model\n", Lfs::No)]);
    assert_ne!(first, second);
    let at = |rev: &str| client.get(&format!("{}/revision/{rev}", repo.api_url()));
    assert_eq!(at("main").json()["sha"], second.as_str());
    assert_eq!(
        at("main").json()["siblings"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(at("v1").json()["sha"], first.as_str());
    assert_eq!(at("refs%2Fpr%2F1").json()["sha"], first.as_str());
    assert_eq!(at(&first).json()["sha"], first.as_str());
    let third = repo.delete(&["config.json"]);
    let names: Vec<Value> = at(&third).json()["siblings"]
        .as_array()
        .expect("siblings")
        .iter()
        .map(|s| s["rfilename"].clone())
        .collect();
    assert_eq!(names, ["README.md", "weights/model.safetensors"]);

    let missing = at("nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-error-code"), Some("RevisionNotFound"));
    assert!(missing.json()["error"].is_string());

    // Datasets live under their own API segment.
    let data = hub.repo(RepoKind::Dataset, "org/data");
    data.commit(&[("train.csv", b"a,b\n", Lfs::No)]);
    let info = client.get(&format!(
        "{}/api/datasets/org/data/revision/main",
        hub.url()
    ));
    assert_eq!(info.json()["sha"], data.head().as_str());
    let wrong_kind = client.get(&format!("{}/api/models/org/data", hub.url()));
    assert_eq!(wrong_kind.header("x-error-code"), Some("RepoNotFound"));
}

#[test]
fn tree_pages_follow_absolute_links() {
    let hub = FakeHub::start();
    let repo = hub.repo(RepoKind::Model, "org/tree");
    repo.commit(&[
        ("a.txt", b"a", Lfs::No),
        ("b/c.txt", b"c", Lfs::No),
        ("b/d/e.bin", b"eeee", Lfs::Yes),
        ("f.txt", b"f", Lfs::No),
    ]);
    hub.set_tree_page_size(2);
    let client = Client::new();

    let mut url = format!("{}/tree/main?recursive=true", repo.api_url());
    let mut entries = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.get(&url);
        assert_eq!(page.status, 200);
        pages += 1;
        entries.extend(page.json().as_array().expect("array").clone());
        let Some(link) = page.header("link") else {
            break;
        };
        let next = link
            .strip_prefix('<')
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .expect("a next link")
            .0;
        assert!(next.starts_with(&hub.url()), "absolute: {next}");
        url = next.to_owned();
    }
    assert_eq!(pages, 3);
    let listed: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["type"].as_str().expect("type"),
                e["path"].as_str().expect("path"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("file", "a.txt"),
            ("directory", "b"),
            ("file", "b/c.txt"),
            ("directory", "b/d"),
            ("file", "b/d/e.bin"),
            ("file", "f.txt"),
        ]
    );
    let lfs = &entries[4];
    assert_eq!(lfs["lfs"]["oid"], sha256_hex(b"eeee"));
    assert_eq!(lfs["size"], 4);
    assert_eq!(entries[0]["oid"], git_blob_id(b"a"));

    // Not recursive: the folder, not what is in it; a sub-folder by path.
    hub.set_tree_page_size(100);
    let root = client.get(&format!("{}/tree/main", repo.api_url())).json();
    let paths: Vec<&str> = root
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(paths, ["a.txt", "b", "f.txt"]);
    let sub = client
        .get(&format!("{}/tree/main/b", repo.api_url()))
        .json();
    assert_eq!(sub[0]["path"], "b/c.txt");
    assert_eq!(sub[1]["type"], "directory");
    let none = client.get(&format!("{}/tree/main/zzz", repo.api_url()));
    assert_eq!(none.header("x-error-code"), Some("EntryNotFound"));
}

#[test]
fn regular_files_are_served_directly_with_git_etags() {
    let (hub, _) = hub_with_model();
    let repo = hub.repo(RepoKind::Model, "org/model");
    let client = Client::new();
    let url = repo.resolve_url("main", "config.json");

    let head = client.send(Method::HEAD, &url, &[], None);
    assert_eq!(head.status, 200);
    let etag = format!("\"{}\"", git_blob_id(CONFIG));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    assert_eq!(head.header("x-repo-commit"), Some(repo.head().as_str()));
    assert_eq!(
        head.header("content-length"),
        Some(CONFIG.len().to_string().as_str())
    );
    assert_eq!(head.header("accept-ranges"), Some("bytes"));

    let get = client.get(&url);
    assert_eq!(get.body, CONFIG);
    // hf-hub 0.5 asks for the size with a one-byte range.
    let probe = client.get_with(&url, &[("range", "bytes=0-0")]);
    assert_eq!(probe.status, 206);
    let range = format!("bytes 0-0/{}", CONFIG.len());
    assert_eq!(probe.header("content-range"), Some(range.as_str()));
    assert_eq!(probe.body, &CONFIG[..1]);

    // HEAD sends no body; the GETs sent the file and one byte.
    assert_eq!(hub.hub_bytes_sent(), CONFIG.len() as u64 + 1);
    let methods: Vec<String> = hub.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["HEAD", "GET", "GET"]);
    hub.clear_requests();
    assert!(hub.requests().is_empty());

    let missing = client.get(&repo.resolve_url("main", "nope.bin"));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-error-code"), Some("EntryNotFound"));
    assert_eq!(missing.header("x-repo-commit"), Some(repo.head().as_str()));
    assert_eq!(missing.json()["error"], "Entry not found");
    let no_rev = client.get(&repo.resolve_url("v9", "config.json"));
    assert_eq!(no_rev.header("x-error-code"), Some("RevisionNotFound"));
    let no_repo = client.get(&format!("{}/org/ghost/resolve/main/config.json", hub.url()));
    assert_eq!(no_repo.status, 401);
    assert_eq!(no_repo.header("x-error-code"), Some("RepoNotFound"));
}

#[test]
fn relative_redirects_lead_to_the_resolve_cache() {
    let (hub, _) = hub_with_model();
    hub.set_relative_redirects(true);
    let repo = hub.repo(RepoKind::Model, "org/model");
    let client = Client::new();

    let redirect = client.send(
        Method::HEAD,
        &repo.resolve_url("main", "config.json"),
        &[],
        None,
    );
    assert_eq!(redirect.status, 307);
    let location = redirect.header("location").expect("location");
    let prefix = format!(
        "/api/resolve-cache/models/org/model/{}/config.json?",
        repo.head()
    );
    assert!(location.starts_with(&prefix), "{location}");

    // Python drops the query of a relative redirect: the path alone must do.
    let path = location.split_once('?').expect("query").0;
    let file = client.get(&format!("{}{path}", hub.url()));
    assert_eq!(file.status, 200);
    assert_eq!(file.body, CONFIG);
    let etag = format!("\"{}\"", git_blob_id(CONFIG));
    assert_eq!(file.header("etag"), Some(etag.as_str()));
    assert_eq!(file.header("x-repo-commit"), Some(repo.head().as_str()));
}

#[test]
fn lfs_files_redirect_to_the_cdn_with_linked_headers() {
    let (hub, weights) = hub_with_model();
    let repo = hub.repo(RepoKind::Model, "org/model");
    let client = Client::new();
    let url = repo.resolve_url("main", "weights/model.safetensors");

    for method in [Method::HEAD, Method::GET] {
        let r = client.send(method, &url, &[("authorization", "Bearer nobody")], None);
        // An unknown token is refused everywhere, before anything else.
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("x-error-message"),
            Some("Invalid credentials in Authorization header")
        );
    }
    let redirect = client.send(Method::HEAD, &url, &[], None);
    assert_eq!(redirect.status, 302);
    let linked = format!("\"{}\"", sha256_hex(&weights));
    assert_eq!(redirect.header("x-linked-etag"), Some(linked.as_str()));
    assert_eq!(
        redirect.header("x-linked-size"),
        Some(weights.len().to_string().as_str())
    );
    assert_eq!(redirect.header("x-repo-commit"), Some(repo.head().as_str()));
    assert!(redirect.header("x-xet-hash").is_none());
    let location = redirect.header("location").expect("location");
    assert!(location.starts_with(&hub.cdn_url()), "{location}");
    assert!(location.contains(&sha256_hex(&weights)));

    let blob = client.get(location);
    assert_eq!(blob.status, 200);
    assert!(blob.body == weights, "the CDN serves the file");
    assert_eq!(
        blob.header("content-disposition"),
        Some("attachment; filename*=UTF-8''model.safetensors; filename=\"model.safetensors\";")
    );
    assert!(blob.header("etag").is_some());
    assert_eq!(hub.cdn_bytes_sent(), weights.len() as u64);
    let cdn = hub.cdn_requests();
    assert_eq!(cdn.len(), 1);
    assert!(cdn[0].header("authorization").is_none());
    assert!(cdn[0].path().ends_with(&sha256_hex(&weights)));
    assert!(
        hub.requests()
            .iter()
            .all(|r| r.path().contains("/resolve/"))
    );
}

#[test]
fn the_cdn_is_strict_about_ranges() {
    let (hub, weights) = hub_with_model();
    let size = weights.len();
    let client = Client::new();
    let url = format!("{}/repos/xx/{}", hub.cdn_url(), sha256_hex(&weights));
    let ranged = |range: &str| client.get_with(&url, &[("range", range)]);

    let r = ranged("bytes=10-19");
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 10-19/{size}").as_str())
    );
    assert_eq!(r.body, &weights[10..20]);
    let r = ranged(&format!("bytes={}-", size - 5));
    assert_eq!(r.body, &weights[size - 5..]);
    // hf-hub 0.5's last chunk ends one past the end: clamped.
    let r = ranged(&format!("bytes=100-{size}"));
    assert_eq!(r.status, 206);
    let clamped = format!("bytes 100-{}/{size}", size - 1);
    assert_eq!(r.header("content-range"), Some(clamped.as_str()));
    assert_eq!(r.body.len(), size - 100);
    let r = ranged(&format!("bytes={size}-"));
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );
    assert!(r.body.is_empty());
    // If-Range with another validator: the whole file.
    let r = client.get_with(&url, &[("range", "bytes=5-"), ("if-range", "\"other\"")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), size);
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let resumed = hub.cdn_requests();
    assert_eq!(
        resumed[1].header("range"),
        Some(format!("bytes={}-", size - 5).as_str())
    );
}

#[test]
fn access_control_follows_the_hub() {
    let hub = FakeHub::start();
    let gated = hub.repo(RepoKind::Model, "org/gated");
    gated.commit(&[("model.bin", b"weights", Lfs::Yes)]);
    gated.gated().grant("hf_granted");
    let private = hub.repo(RepoKind::Model, "org/private");
    private.commit(&[("x.txt", b"x", Lfs::No)]);
    private.private().grant("hf_granted");
    hub.add_token("hf_other");
    let client = Client::new();
    let bearer = |t: &str| format!("Bearer {t}");
    let file = gated.resolve_url("main", "model.bin");

    // A gated repo shows its listing to anyone, its files only to granted tokens.
    let info = client.get(&gated.api_url());
    assert_eq!(info.status, 200);
    assert_eq!(info.json()["gated"], "manual");
    let anonymous = client.get(&file);
    assert_eq!(
        (anonymous.status, anonymous.header("x-error-code")),
        (401, Some("GatedRepo"))
    );
    let other = client.get_with(&file, &[("authorization", &bearer("hf_other"))]);
    assert_eq!(
        (other.status, other.header("x-error-code")),
        (403, Some("GatedRepo"))
    );
    let granted = client.get_with(&file, &[("authorization", &bearer("hf_granted"))]);
    assert_eq!(granted.status, 302);

    // A private repo is not found: 401 without a token, 404 with one lacking access.
    let anonymous = client.get(&private.api_url());
    assert_eq!(
        (anonymous.status, anonymous.header("x-error-code")),
        (401, Some("RepoNotFound"))
    );
    let other = client.get_with(
        &private.api_url(),
        &[("authorization", &bearer("hf_other"))],
    );
    assert_eq!(
        (other.status, other.header("x-error-code")),
        (404, Some("RepoNotFound"))
    );
    let granted = client.get_with(
        &private.api_url(),
        &[("authorization", &bearer("hf_granted"))],
    );
    assert_eq!(granted.status, 200);
    assert_eq!(granted.json()["private"], true);

    // A token required everywhere.
    let public = hub.repo(RepoKind::Model, "org/public");
    public.commit(&[("x.txt", b"x", Lfs::No)]);
    assert_eq!(client.get(&public.api_url()).status, 200);
    hub.require_token("hf_everything");
    assert_eq!(client.get(&public.api_url()).status, 401);
    let with = client.get_with(
        &public.api_url(),
        &[("authorization", &bearer("hf_everything"))],
    );
    assert_eq!(with.status, 200);
    let bad = client.get_with(&public.api_url(), &[("authorization", "Bearer hf_typo")]);
    assert_eq!(bad.status, 401);
    assert_eq!(bad.header("x-error-code"), None);
}

#[test]
fn faults_break_bodies_where_they_are_served() {
    let (hub, weights) = hub_with_model();
    let repo = hub.repo(RepoKind::Model, "org/model");
    let client = Client::new();
    let cdn = |c: &Client, range: Option<&str>| {
        let redirect = c.get(&repo.resolve_url("main", "weights/model.safetensors"));
        let location = redirect.header("location").expect("location").to_owned();
        let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        c.get_with(&location, &headers)
    };

    hub.corrupt_byte("weights/model.safetensors");
    let corrupt = cdn(&client, None);
    assert!(corrupt.complete);
    assert_eq!(corrupt.body.len(), weights.len());
    assert_ne!(sha256_hex(&corrupt.body), sha256_hex(&weights));
    hub.heal(&sha256_hex(&weights));

    hub.cut_after("weights/model.safetensors", 100_000, 1);
    let cut = cdn(&client, None);
    assert!(!cut.complete);
    assert_eq!(cut.body.len(), 100_000);
    let rest = cdn(&client, Some("bytes=100000-"));
    assert!(rest.complete);
    assert_eq!(rest.status, 206);
    assert!([cut.body, rest.body].concat() == weights);

    hub.ignore_range("weights/model.safetensors");
    let ignored = cdn(&client, Some("bytes=100000-"));
    assert_eq!(ignored.status, 200);
    assert_eq!(ignored.body.len(), weights.len());

    // Regular files break the same way on the hub.
    hub.corrupt_byte("config.json");
    let config = client.get(&repo.resolve_url("main", "config.json"));
    assert_ne!(config.body, CONFIG);
    assert_eq!(config.body.len(), CONFIG.len());
}

#[test]
fn hostile_entries_appear_in_listings() {
    let (hub, _) = hub_with_model();
    let repo = hub.repo(RepoKind::Model, "org/model");
    repo.inject_entry("../../etc/passwd")
        .inject_entry("/abs")
        .inject_entry("a/../../b");
    let client = Client::new();

    let info = client
        .get(&format!("{}/revision/main?blobs=true", repo.api_url()))
        .json();
    let names: Vec<&str> = info["siblings"]
        .as_array()
        .expect("siblings")
        .iter()
        .filter_map(|s| s["rfilename"].as_str())
        .collect();
    assert!(names.contains(&"../../etc/passwd"));
    assert!(names.contains(&"/abs"));
    let tree = client
        .get(&format!("{}/tree/main?recursive=true", repo.api_url()))
        .json();
    let paths: Vec<&str> = tree
        .as_array()
        .expect("tree")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(paths.contains(&"a/../../b"));
}

#[test]
fn datasets_and_spaces_resolve_under_their_prefix() {
    let hub = FakeHub::start();
    let space = hub.repo(RepoKind::Space, "org/app");
    space.commit(&[("app.py", b"print()\n", Lfs::No)]);
    let client = Client::new();
    assert_eq!(space.id(), "org/app");
    let url = space.resolve_url("main", "app.py");
    assert!(url.starts_with(&format!("{}/spaces/org/app/resolve/main/", hub.url())));
    assert_eq!(client.get(&url).body, b"print()\n");
    let as_model = client.get(&format!("{}/org/app/resolve/main/app.py", hub.url()));
    assert_eq!(as_model.header("x-error-code"), Some("RepoNotFound"));
}
