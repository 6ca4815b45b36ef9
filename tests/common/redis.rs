//! Redis for the tests, the one helper every test binary uses: a private
//! server spawned from the `redis-server` binary on a free loopback port,
//! with persistence off, stoppable and restartable on the same port, killed
//! on drop; or, for tests that never stop it, the shared instance CI starts.
//!
//! `.ci/run` installs Debian's `redis-server`, sets
//! `TOWER_WS_AUTH_REDIS_SERVER` to its path and `TOWER_WS_AUTH_REDIS_URL` to
//! a shared instance. Outside CI a test without a binary prints a loud
//! SKIPPED line and returns; under `CI` it fails.

#![allow(dead_code)] // Each test binary uses part of it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    binary: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOWER_WS_AUTH_REDIS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TOWER_WS_AUTH_REDIS_SERVER={} is not a file",
            path.display()
        );
        return Some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    })
}

impl RedisServer {
    /// Starts a server, or `None` (after a loud message) when no
    /// `redis-server` exists outside CI.
    pub fn start(test: &str) -> Option<Self> {
        let Some(binary) = find_binary() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{test}: no redis-server (set TOWER_WS_AUTH_REDIS_SERVER); CI must run the Redis tests"
                );
            }
            eprintln!(
                "\n*** SKIPPED {test}: no redis-server binary (apt-get install redis-server, or set TOWER_WS_AUTH_REDIS_SERVER) ***\n"
            );
            return None;
        };
        // Tests run in parallel: a free port can be taken by another test's
        // server between our probe and our bind. Try again on another port
        // until our own process is the one listening.
        for _ in 0..20 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut server = Self {
                binary: binary.clone(),
                port,
                child: None,
            };
            if server.spawn_and_wait() {
                return Some(server);
            }
        }
        panic!("{test}: could not start redis-server on a free port");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on its port (killing it first if it still
    /// runs) and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn_and_wait(),
            "redis-server could not restart on port {}",
            self.port
        );
    }

    /// Spawns the server on its port; `false` if it exited (the port was taken).
    fn spawn_and_wait(&mut self) -> bool {
        assert!(self.child.is_none(), "already running");
        let mut child = Command::new(&self.binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let started = Instant::now();
        loop {
            // Our own process must be alive and listening: another test's
            // server on the same port would answer the connect too.
            if child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                if child.try_wait().ok().flatten().is_some() {
                    return false;
                }
                self.child = Some(child);
                return true;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is
    /// answered until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Kills the server (SIGKILL: no shutdown save) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis for a test that does not stop it: the shared instance CI
/// starts (`$TOWER_WS_AUTH_REDIS_URL`), else one of the test's own.
pub enum Redis {
    Shared(String),
    Own(RedisServer),
}

impl Redis {
    /// `None` (after the loud SKIPPED line) when the test is to be skipped.
    pub fn get(test: &str) -> Option<Self> {
        match std::env::var("TOWER_WS_AUTH_REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(Self::Shared(url)),
            _ => RedisServer::start(test).map(Self::Own),
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match self {
            Self::Shared(url) => url.clone(),
            Self::Own(server) => server.url(),
        }
    }
}
