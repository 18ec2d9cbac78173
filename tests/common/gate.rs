//! A tiny HTTP server on loopback that holds requests until opened: a
//! build whose Dockerfile `ADD`s a file from it runs, and stays running,
//! until the test says so.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A tiny HTTP server on loopback that holds every request until opened:
/// a build whose Dockerfile `ADD`s a file from it is running, and stays
/// running, until the test says so.
pub struct Gate {
    pub port: u16,
    open: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    /// Paths containing one of these are answered at once.
    passing: Arc<Mutex<Vec<String>>>,
}

impl Gate {
    pub fn start() -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let passing = Arc::new(Mutex::new(Vec::new()));
        let (o, h, p) = (open.clone(), hits.clone(), passing.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (o, h, p) = (o.clone(), h.clone(), p.clone());
                std::thread::spawn(move || serve_gated(stream, &o, &h, &p));
            }
        });
        Gate {
            port,
            open,
            hits,
            passing,
        }
    }

    /// Requests for paths containing `part` pass at once.
    pub fn pass(&self, part: &str) {
        self.passing.lock().unwrap().push(part.to_string());
    }

    /// A build context whose build waits at this gate.
    pub fn context(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![(
            "Dockerfile",
            format!(
                "FROM scratch\nADD http://127.0.0.1:{}/{name}.txt /gated.txt\n",
                self.port
            ),
        )]
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub async fn wait_hits(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.hits() < n {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} build(s) at the gate"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

fn serve_gated(
    mut stream: TcpStream,
    open: &AtomicBool,
    hits: &AtomicUsize,
    passing: &Mutex<Vec<String>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let request_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let passes = passing
        .lock()
        .unwrap()
        .iter()
        .any(|p| request_line.contains(p.as_str()));
    let deadline = Instant::now() + Duration::from_secs(300);
    while !passes && !open.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = "gated\n";
    let head_only = head.starts_with(b"HEAD ");
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body }
    );
}
