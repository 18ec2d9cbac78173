//! A real git server on loopback: smart HTTP through `git http-backend` (a
//! CGI program, run once per request by the small HTTP/1.1 server below,
//! with optional basic auth in front) and ssh through Debian's
//! `openssh-server` (`sshd -D` on a free port, with its own host key and a
//! client key, commands limited by `git-shell`). Both stop on drop.
//!
//! Repositories are bare repositories under one project root; `Work` is a
//! working clone used to commit, branch, tag and push like a developer.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::tools::{require_tool, run_checked};

/// The HTTP server lets a request head grow to this before refusing it.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// And a request body (a push of a test repository is far smaller).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// `git` with a clean environment: no user or system config of the host.
pub fn git(dir: &Path) -> Command {
    let mut command = Command::new(require_tool("git", "git"));
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com");
    command
}

/// Runs git in `dir`; its trimmed stdout.
pub fn git_out(dir: &Path, args: &[&str]) -> String {
    let output = run_checked(git(dir).args(args));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn git_exec_path() -> PathBuf {
    let output = run_checked(Command::new(require_tool("git", "git")).arg("--exec-path"));
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Bare repositories under one root, served over HTTP and, if asked, ssh.
pub struct GitServer {
    dir: tempfile::TempDir,
    http: HttpServer,
    ssh: Option<SshServer>,
}

impl GitServer {
    /// Anonymous smart HTTP.
    pub fn start() -> GitServer {
        Self::start_with(None)
    }

    /// Smart HTTP behind basic auth with these credentials.
    pub fn start_with_basic_auth(username: &str, password: &str) -> GitServer {
        Self::start_with(Some((username.to_string(), password.to_string())))
    }

    fn start_with(auth: Option<(String, String)>) -> GitServer {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("repos")).unwrap();
        let http = HttpServer::start(dir.path().join("repos"), auth);
        GitServer {
            dir,
            http,
            ssh: None,
        }
    }

    /// Also serves ssh (`ssh://root@127.0.0.1:PORT/<path>`).
    pub fn with_ssh(mut self) -> GitServer {
        self.ssh = Some(SshServer::start(self.dir.path()));
        self
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    /// Creates an empty bare repository `name` (e.g. `app.git`).
    pub fn create(&self, name: &str) -> PathBuf {
        let path = self.root().join(name);
        run_checked(git(&self.root()).args(["init", "-q", "--bare", "-b", "main", name]));
        // Clients fetch one commit with a filter when resolving short SHAs;
        // GitHub allows it, http-backend only when told.
        git_out(&path, &["config", "uploadpack.allowFilter", "true"]);
        path
    }

    /// The URL of a repository over HTTP, without credentials.
    pub fn http_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.http.port)
    }

    /// The URL of a repository over ssh.
    pub fn ssh_url(&self, name: &str) -> String {
        let ssh = self.ssh.as_ref().expect("started with_ssh");
        format!(
            "ssh://root@127.0.0.1:{}{}",
            ssh.port,
            self.root().join(name).display()
        )
    }

    pub fn ssh(&self) -> &SshServer {
        self.ssh.as_ref().expect("started with_ssh")
    }

    /// HTTP requests served so far, as `METHOD PATH?QUERY STATUS`.
    pub fn requests(&self) -> Vec<String> {
        self.http.log.lock().unwrap().clone()
    }

    /// A working clone of `name` to commit to and push from (over the
    /// file system: the tests' own pushes need no credentials).
    pub fn work(&self, name: &str) -> Work {
        let dir = tempfile::tempdir().expect("temp dir");
        run_checked(git(dir.path()).args(["init", "-q", "-b", "main"]));
        let remote = self.root().join(name);
        git_out(
            dir.path(),
            &["remote", "add", "origin", &remote.to_string_lossy()],
        );
        Work { dir }
    }
}

/// A working tree whose `origin` is one of the server's repositories.
pub struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes files (creating folders) and commits them; the new commit.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (name, content) in files {
            let path = self.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
        }
        git_out(self.path(), &["add", "-A"]);
        git_out(
            self.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.head()
    }

    pub fn head(&self) -> String {
        git_out(self.path(), &["rev-parse", "HEAD"])
    }

    pub fn checkout_new_branch(&self, branch: &str) {
        git_out(self.path(), &["checkout", "-q", "-b", branch]);
    }

    pub fn checkout(&self, branch: &str) {
        git_out(self.path(), &["checkout", "-q", branch]);
    }

    pub fn tag_lightweight(&self, tag: &str) {
        git_out(self.path(), &["tag", tag]);
    }

    pub fn tag_annotated(&self, tag: &str) {
        git_out(
            self.path(),
            &["tag", "-a", "-m", &format!("release {tag}"), tag],
        );
    }

    /// Pushes every branch and tag, moving branches as they are here.
    pub fn push(&self) {
        git_out(
            self.path(),
            &[
                "push",
                "-q",
                "--force",
                "origin",
                "refs/heads/*:refs/heads/*",
                "refs/tags/*:refs/tags/*",
            ],
        );
    }

    /// Adds `url` as a submodule at `path` (its recorded commit: the
    /// submodule's current default branch) and commits.
    pub fn add_submodule(&self, url: &str, path: &str) -> String {
        git_out(
            self.path(),
            &[
                "-c",
                "protocol.allow=always",
                "submodule",
                "add",
                "-q",
                url,
                path,
            ],
        );
        git_out(
            self.path(),
            &["commit", "-q", "-m", &format!("add submodule {path}")],
        );
        self.head()
    }
}

/// The smart-HTTP side: one tokio runtime on its own thread, stopped on drop.
struct HttpServer {
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    fn start(root: PathBuf, auth: Option<(String, String)>) -> HttpServer {
        let backend = git_exec_path().join("git-http-backend");
        assert!(
            backend.is_file(),
            "{} not found: install the Debian package git",
            backend.display()
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let expected = auth.map(|(user, password)| {
            (
                user.clone(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                ),
            )
        });
        let thread_log = log.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let context = CgiContext {
                                backend: backend.clone(),
                                root: root.clone(),
                                auth: expected.clone(),
                                log: thread_log.clone(),
                            };
                            tokio::spawn(async move {
                                let _ = serve(stream, context).await;
                            });
                        }
                    }
                }
            });
        });
        HttpServer {
            port,
            log,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Clone)]
struct CgiContext {
    backend: PathBuf,
    root: PathBuf,
    /// (user, expected Authorization header value).
    auth: Option<(String, String)>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// One request per connection (`Connection: close`), as CGI (RFC 3875).
async fn serve(stream: tokio::net::TcpStream, context: CgiContext) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut head = Vec::new();
    loop {
        let before = head.len();
        reader.read_until(b'\n', &mut head).await?;
        if head.len() == before || head.len() > MAX_HEAD_BYTES {
            return Ok(());
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers: HashMap<String, String> = HashMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        read_chunked(&mut reader).await?
    } else {
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if length > MAX_BODY_BYTES {
            return Ok(());
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        body
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut user = None;
    if let Some((name, expected)) = &context.auth {
        if headers.get("authorization") != Some(expected) {
            context
                .log
                .lock()
                .unwrap()
                .push(format!("{method} {target} 401"));
            write
                .write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await?;
            return Ok(());
        }
        user = Some(name.clone());
    }
    let mut command = tokio::process::Command::new(&context.backend);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &context.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", percent_decode(path))
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(user) = &user {
        command.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    if let Some(value) = headers.get("content-type") {
        command.env("CONTENT_TYPE", value);
    }
    // Other headers as HTTP_*; http-backend reads HTTP_GIT_PROTOCOL (the
    // protocol v2 request) and HTTP_CONTENT_ENCODING (gzip bodies).
    for (name, value) in &headers {
        if matches!(
            name.as_str(),
            "content-type" | "content-length" | "authorization"
        ) {
            continue;
        }
        let key = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        command.env(key, value);
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await?;
    let _ = feed.await;
    let (status, response) = cgi_to_http(&output.stdout);
    context
        .log
        .lock()
        .unwrap()
        .push(format!("{method} {target} {status}"));
    write.write_all(&response).await?;
    write.shutdown().await
}

async fn read_chunked<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut trailer = String::new();
                reader.read_line(&mut trailer).await?;
                if trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(std::io::Error::other("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).await?;
    }
}

/// A CGI response (headers, blank line, body) as an HTTP/1.1 response.
fn cgi_to_http(output: &[u8]) -> (u16, Vec<u8>) {
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            output
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        });
    let Some((end, body_start)) = split else {
        return (
            500,
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec(),
        );
    };
    let head = String::from_utf8_lossy(&output[..end]).to_string();
    let body = &output[body_start..];
    let mut status = 200u16;
    let mut reason = "OK".to_string();
    let mut response_headers = Vec::new();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("status") {
            let value = value.trim();
            let (code, text) = value.split_once(' ').unwrap_or((value, ""));
            status = code.parse().unwrap_or(500);
            reason = text.to_string();
        } else {
            response_headers.push(format!("{}: {}", name.trim(), value.trim()));
        }
    }
    let mut response = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
    for header in response_headers {
        response.extend_from_slice(header.as_bytes());
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    response.extend_from_slice(body);
    (status, response)
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(value) = u8::from_str_radix(&path[i + 1..i + 3], 16) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// `sshd -D` on a free loopback port: a generated host key, one client
/// key allowed, and every session forced through `git-shell`.
pub struct SshServer {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

impl SshServer {
    fn start(project: &Path) -> SshServer {
        let sshd = require_tool("sshd", "openssh-server");
        let keygen = require_tool("ssh-keygen", "openssh-client");
        require_tool("ssh", "openssh-client");
        let git_shell = require_tool("git-shell", "git");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        for (file, kind) in [("host_key", "ed25519"), ("client_key", "ed25519")] {
            run_checked(
                Command::new(&keygen)
                    .args(["-q", "-t", kind, "-N", "", "-C", file, "-f"])
                    .arg(path.join(file)),
            );
        }
        let client_public = std::fs::read_to_string(path.join("client_key.pub")).unwrap();
        std::fs::write(
            path.join("authorized_keys"),
            format!(
                "restrict,command=\"{} -c \\\"$SSH_ORIGINAL_COMMAND\\\"\" {}",
                git_shell.display(),
                client_public.trim()
            ),
        )
        .unwrap();
        // sshd's privilege separation needs this (the Debian service makes it).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let port = free_port();
        let config = format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {dir}/host_key\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PidFile none\n\
             StrictModes no\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n\
             AllowUsers root\n\
             LogLevel VERBOSE\n\
             # git asks for protocol v2 over ssh through this variable, as\n\
             # GitHub and GitLab accept it (git: Documentation/gitprotocol-v2, SSH and file transport);\n\
             # v2 is what lets a fetch ask for one commit by its id.\n\
             AcceptEnv GIT_PROTOCOL\n\
             # The repositories: {project}\n",
            dir = path.display(),
            project = project.display(),
        );
        std::fs::write(path.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(path.join("sshd.log")).unwrap();
        let child = Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(path.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let host_public = std::fs::read_to_string(path.join("host_key.pub")).unwrap();
        let mut fields = host_public.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(
            path.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .unwrap();
        let server = SshServer { dir, child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The client's private key (OpenSSH format), as in an ssh-auth Secret.
    pub fn client_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("client_key")).unwrap()
    }

    /// A known_hosts line for this server.
    pub fn known_hosts(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("known_hosts")).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a file, creating its folder; for Secret and key fixtures.
pub fn write_file(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(content.as_bytes()).unwrap();
}
