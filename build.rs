//! Build facts for `modelctl -v --version`: the commit this binary was built from (from git,
//! when building in a checkout; "unknown" from a source tarball) and the target triple.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BUILT_FROM_COMMIT={commit}");
    println!(
        "cargo:rustc-env=BUILT_FOR_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    for path in [".git/HEAD", ".git/refs/heads"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
