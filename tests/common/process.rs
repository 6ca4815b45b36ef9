//! Child processes for tests: an example binary (built by `cargo test` next
//! to the test binaries) or any program, with its output collected and the
//! process killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running child process.
pub struct Proc {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Proc {
    /// Spawns `command`, collecting stdout and stderr.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        Self { child, output }
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until a printed line satisfies `pick`, and returns what it picked.
    pub fn wait_for_line<T>(&self, pick: impl Fn(&str) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(found) = self.output().lines().find_map(&pick) {
                return found;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "expected line not printed:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- output of {:?} ----\n{}---- end of output ----",
                self.child.id(),
                self.output()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The binary of the example `name`, which `cargo test` builds next to the
/// test binaries (`target/debug/examples/`). A filtered run (`cargo test
/// --test NAME`) does not build examples: a missing or stale binary fails
/// with a message saying so.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let binary = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let rebuild = "run the whole `cargo test --all-features`, or `cargo build --examples --all-features` first";
    let Ok(built) = std::fs::metadata(&binary).and_then(|m| m.modified()) else {
        panic!("example binary {} not found: {rebuild}", binary.display());
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    if let Ok(edited) = std::fs::metadata(&source).and_then(|m| m.modified()) {
        assert!(
            edited <= built,
            "example binary {} is older than its source: {rebuild}",
            binary.display()
        );
    }
    binary
}

/// Environment variables the examples read: cleared, so the developer's own
/// settings cannot change what the tests see.
const EXAMPLE_ENV: &[&str] = &[
    "ADDR",
    "JWT_SECRET",
    "RS256_PUBLIC_KEY_FILE",
    "RS256_PRIVATE_KEY_FILE",
    "ISSUER_URL",
    "ISSUER_ADDR",
    "AUDIENCE",
    "ALLOWED_ORIGINS",
    "TOKEN_TTL_SECS",
    "MAX_CONNECTIONS",
];

/// Starts the example `name` on a free loopback port (`ADDR`) with `env`,
/// and waits until it listens.
pub fn start_example(name: &str, env: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let port = free_port();
    let mut command = Command::new(example_binary(name));
    for var in EXAMPLE_ENV {
        command.env_remove(var);
    }
    command
        .stdin(Stdio::null())
        .env("ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info,tower_ws_auth=debug")
        .env("NO_COLOR", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let process = Proc::spawn(command);
    wait_for_port(port);
    (process, SocketAddr::from(([127, 0, 0, 1], port)))
}
