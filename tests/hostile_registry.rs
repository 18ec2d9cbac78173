//! `multiarch-operator merge` against a registry that lies: bodies larger
//! than anything an image needs, with and without a declared length. The
//! merge refuses them while they stream, holds no more than its caps, and
//! pushes nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// What the hostile registry offers to send: far more than any cap.
const HOSTILE_BYTES: u64 = 400 * 1024 * 1024;
/// The merge's resident memory must stay far below the hostile body.
const MAX_MERGE_RSS_KIB: i64 = 96 * 1024;
/// A config the manifest of tag `lying-config` declares, and its digest.
const CONFIG_DECLARED: u64 = 100;

/// A plain-HTTP registry on 127.0.0.1 that serves hostile answers; it
/// stops when dropped.
struct HostileRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Method and path of every request, in order.
    requests: Arc<Mutex<Vec<String>>>,
}

impl HostileRegistry {
    fn start() -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stopping, seen) = (stop.clone(), requests.clone());
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let seen = seen.clone();
                        std::thread::spawn(move || serve(stream, &seen));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        HostileRegistry {
            port,
            stop,
            requests,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn writes(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| !r.starts_with("GET ") && !r.starts_with("HEAD "))
            .cloned()
            .collect()
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn config_digest() -> String {
    // The digest the lying manifest names; the body sent never matches it
    // anyway, since it is cut first.
    format!("sha256:{}", "c".repeat(64))
}

fn small_manifest(config_size: u64) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{config_size}}},"layers":[]}}"#,
        config_digest()
    )
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<String>>) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    seen.lock().unwrap().push(format!("{method} {path}"));
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
    }
    let mut out = stream;
    let head = |out: &mut TcpStream, status: &str, extra: &str| {
        let _ = write!(out, "HTTP/1.1 {status}\r\nConnection: close\r\n{extra}\r\n");
    };
    let endless = |out: &mut TcpStream, prefix: &str| {
        let _ = out.write_all(prefix.as_bytes());
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = prefix.len() as u64;
        while sent < HOSTILE_BYTES && out.write_all(&chunk).is_ok() {
            sent += chunk.len() as u64;
        }
    };
    let manifest_head = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":["#);
    let typed = format!("Content-Type: {OCI_MANIFEST}\r\n");
    match (method, path) {
        (_, "/v2/") => head(&mut out, "200 OK", "Content-Length: 0\r\n"),
        ("GET", "/v2/app/manifests/undeclared") => {
            head(&mut out, "200 OK", &typed);
            endless(&mut out, &manifest_head);
        }
        ("GET", "/v2/app/manifests/declared") => {
            head(
                &mut out,
                "200 OK",
                &format!("{typed}Content-Length: {HOSTILE_BYTES}\r\n"),
            );
            endless(&mut out, &manifest_head);
        }
        ("GET", "/v2/app/manifests/lying-config") => {
            let body = small_manifest(CONFIG_DECLARED);
            head(
                &mut out,
                "200 OK",
                &format!("{typed}Content-Length: {}\r\n", body.len()),
            );
            let _ = out.write_all(body.as_bytes());
        }
        ("GET", "/v2/app/manifests/huge-config") => {
            let body = small_manifest(9 * 1024 * 1024);
            head(
                &mut out,
                "200 OK",
                &format!("{typed}Content-Length: {}\r\n", body.len()),
            );
            let _ = out.write_all(body.as_bytes());
        }
        ("GET", p) if p.starts_with("/v2/app/blobs/") => {
            head(
                &mut out,
                "200 OK",
                "Content-Type: application/octet-stream\r\n",
            );
            endless(&mut out, "{");
        }
        _ => {
            let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
            head(
                &mut out,
                "404 Not Found",
                &format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                ),
            );
            if method != "HEAD" {
                let _ = out.write_all(body.as_bytes());
            }
        }
    }
}

struct Run {
    code: i32,
    stderr: String,
    peak_rss_kib: i64,
}

/// Runs the merge of one source tag of the hostile registry, waiting with
/// `wait4` for the merge's own peak resident memory.
fn merge_from(registry: &HostileRegistry, tag: &str) -> Run {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let host = registry.host();
    // Reaped by wait4 below, which alone reports the child's own peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_multiarch-operator"))
        .args(["merge", "--platform-image"])
        .arg(format!("linux/amd64={host}/app:{tag}"))
        .args(["--target", &format!("{host}/app:latest")])
        .args(["--insecure-registry", &host])
        .stdout(std::process::Stdio::null())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .expect("run multiarch-operator merge");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which std has not reaped.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    Run {
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        stderr: std::fs::read_to_string(stderr.path()).unwrap(),
        peak_rss_kib: usage.ru_maxrss,
    }
}

fn assert_refused(registry: &HostileRegistry, run: &Run, needle: &str) {
    assert_eq!(run.code, 1, "a check failure expected:\n{}", run.stderr);
    assert!(
        run.stderr.contains(needle),
        "{needle:?} not in:\n{}",
        run.stderr
    );
    assert!(
        run.peak_rss_kib < MAX_MERGE_RSS_KIB,
        "the merge held {} KiB for a hostile body",
        run.peak_rss_kib
    );
    assert_eq!(registry.writes(), Vec::<String>::new(), "nothing is pushed");
}

#[test]
fn a_manifest_over_4_mib_is_refused_while_it_streams() {
    let registry = HostileRegistry::start();
    for tag in ["undeclared", "declared"] {
        let run = merge_from(&registry, tag);
        println!(
            "hostile manifest ({tag} length): merge peak RSS {} KiB",
            run.peak_rss_kib
        );
        assert_refused(
            &registry,
            &run,
            &format!("the manifest {tag} of app is larger than 4 MiB (the merge reads no more)"),
        );
    }
}

#[test]
fn a_config_is_read_no_further_than_its_descriptor_and_8_mib() {
    let registry = HostileRegistry::start();
    let run = merge_from(&registry, "lying-config");
    println!("hostile config: merge peak RSS {} KiB", run.peak_rss_kib);
    assert_refused(
        &registry,
        &run,
        &format!(
            "the image config {} is larger than {CONFIG_DECLARED} bytes",
            config_digest()
        ),
    );
    let run = merge_from(&registry, "huge-config");
    assert_refused(
        &registry,
        &run,
        "declares 9437184 bytes, more than 8 MiB (the merge reads no more)",
    );
}
