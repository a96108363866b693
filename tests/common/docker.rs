//! The machine's Docker Engine, for the tests: the real `docker` CLI,
//! names no one else uses, images built FROM scratch (no registry is
//! reachable) and removed by the test that built them, and containers
//! removed however a test ends.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs the docker CLI on the host; panics with its stderr on failure and
/// returns its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker (the machine's Docker Engine)");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A name no other test, process or earlier run uses: containers and
/// images live in one engine-wide namespace.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Builds an image FROM scratch with `.ci/scratch-image` (binaries and the
/// libraries they load) and removes it on drop: only images this test
/// created, under a unique tag.
pub struct ScratchImage {
    pub tag: String,
}

impl ScratchImage {
    /// `binaries`: `(path here, path in the image)`.
    pub fn build(binaries: &[(&str, &str)]) -> ScratchImage {
        let tag = format!("{}:test", unique_name("unitgen-test-scratch"));
        let mut cmd = Command::new("bash");
        cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/scratch-image"))
            .arg(&tag);
        for (src, dest) in binaries {
            cmd.arg(format!("{src}:{dest}"));
        }
        let out = cmd.output().expect("run .ci/scratch-image");
        assert!(
            out.status.success(),
            "building {tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ScratchImage { tag }
    }
}

impl Drop for ScratchImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", &self.tag]).output();
    }
}

/// The host's address on the default bridge, where containers reach it.
pub fn docker0() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "docker0"])
        .output()
        .expect("run ip (iproute2)");
    let text = String::from_utf8(out.stdout).unwrap();
    let inet = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("docker0 has no IPv4 address: {text}"));
    inet.split('/').next().unwrap().to_owned()
}

/// Containers this test created (by their unique names), removed on drop.
pub struct Containers(pub Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "--force", name])
                .output();
        }
    }
}
