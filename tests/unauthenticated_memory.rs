//! An unauthenticated socket (first-message authentication) never makes
//! the server buffer more than the auth-message cap plus frame overhead:
//! many sockets send the start of huge messages (one frame announcing
//! 8 MiB, or endless 8 KiB fragments) and stall; the server refuses them
//! from the frame header or at the cap, and its memory stays bounded.
//! Measured with a counting global allocator over the whole process (the
//! raw TCP clients allocate next to nothing), on both adapters.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cap::Cap;
use common::sockets::{App, Kind, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_ws_auth::{FirstMessageAuth, Revocations};

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

const SOCKETS: usize = 24;
/// What each client sends before stalling.
const SENT: usize = 1 << 20;

/// An upgraded raw connection to `/first`.
async fn upgraded(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /first HTTP/1.1\r\nhost: {addr}\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "no 101");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A masked (zero key) frame header.
fn header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 | opcode } else { opcode }];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// Sends the start of a huge message: one frame announcing 8 MiB
/// (`one_frame`), or unfinished 8 KiB fragments; stops at `SENT` bytes or
/// when the server closes.
async fn send_unfinished(stream: &mut TcpStream, one_frame: bool) {
    let payload = vec![b'a'; 8 * 1024];
    if one_frame && stream.write_all(&header(0x1, true, 8 << 20)).await.is_err() {
        return;
    }
    let mut sent = 0;
    let mut first = true;
    while sent < SENT {
        if !one_frame {
            let opcode = if first { 0x1 } else { 0x0 };
            first = false;
            if stream
                .write_all(&header(opcode, false, payload.len() as u64))
                .await
                .is_err()
            {
                return;
            }
        }
        let written =
            tokio::time::timeout(Duration::from_secs(2), stream.write_all(&payload)).await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
        sent += payload.len();
    }
}

/// `SOCKETS` unauthenticated connections send (or try to send) the start
/// of huge messages: the server holds little meanwhile, and lets them go.
async fn unfinished_messages_are_not_buffered(kind: Kind) {
    // A long deadline: a server that buffers holds the bytes meanwhile.
    let app = App::new(Revocations::new()).with_first(
        FirstMessageAuth::new(common::sockets::boxed_auth()).timeout(Duration::from_secs(10)),
    );
    let addr = spawn(kind, app.clone()).await;
    // Warm up the server's structures.
    drop(upgraded(addr).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = ALLOCATOR.allocated();
    let mut streams = Vec::new();
    for _ in 0..SOCKETS {
        streams.push(upgraded(addr).await);
    }
    let sending = streams
        .iter_mut()
        .enumerate()
        .map(|(i, stream)| send_unfinished(stream, i % 2 == 0));
    futures_util::future::join_all(sending).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = ALLOCATOR.allocated().saturating_sub(baseline);
    eprintln!("{kind:?}: {SOCKETS} sockets sending {SENT} B each: the server holds {held} B");
    // Per socket: the 16 KiB cap plus 4 KiB of slack and a 4 KiB read
    // buffer, and what a connection costs anyway.
    assert!(
        held <= SOCKETS * 64 * 1024,
        "{kind:?}: {held} B held for {SOCKETS} unauthenticated sockets"
    );
    // The server has let go of every one of them (no auth message came).
    for stream in &mut streams {
        let mut buf = [0u8; 4096];
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "{kind:?}: the server kept a refused socket open"
        );
    }
    drop(streams);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.first.pending(), 0, "{kind:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_sockets_cannot_make_the_server_buffer_big_messages() {
    for kind in [Kind::Axum, Kind::Tungstenite] {
        unfinished_messages_are_not_buffered(kind).await;
    }
}
