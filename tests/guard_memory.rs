//! The guard's work on a message is bounded by its refresh cap, whatever
//! the message's size: a multi-MiB fragmented text message containing
//! "refresh" (a JSON array of millions of zeros) costs the server about its
//! own size, not a JSON tree of it. Measured with a counting global
//! allocator over the whole process (server and client), on both adapters.

mod common;

use std::time::Duration;

use common::sockets::{App, Kind, open, spawn};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tower_ws_auth::socket::Revocations;

use cap::Cap;

// A process of its own: the test reads the allocator's high-water mark,
// which no other test may have raised before it (`tests/memory` holds the
// tests that measure what is allocated now, and can share a process).
#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

const SIZE: usize = 8 << 20;
const FRAGMENT: usize = 256 << 10;

/// `{"x":[0,0,...,0],"y":"refresh"}`, `SIZE` bytes.
fn message() -> Vec<u8> {
    let tail = br#"],"y":"refresh"}"#;
    let mut text = Vec::with_capacity(SIZE);
    text.extend_from_slice(br#"{"x":[0"#);
    while text.len() + 2 + tail.len() <= SIZE {
        text.extend_from_slice(b",0");
    }
    if text.len() + 1 + tail.len() == SIZE {
        text.push(b' ');
    }
    text.extend_from_slice(tail);
    assert_eq!(text.len(), SIZE);
    text
}

async fn big_message_costs_about_its_size(kind: Kind) -> usize {
    let app = App::new(Revocations::new());
    let addr = spawn(kind, app.clone()).await;
    // A refreshing guard (the one that used to parse).
    let mut ws = open(addr, "/ws", &[("authorization", "Bearer alice.60000")]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let baseline = ALLOCATOR.allocated();
    let peak_before = ALLOCATOR.max_allocated();
    {
        let text = message();
        let chunks: Vec<&[u8]> = text.chunks(FRAGMENT).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            ws.send(Message::Frame(Frame::message(
                chunk.to_vec(),
                opcode,
                i == last,
            )))
            .await
            .unwrap();
        }
    }
    // The echo comes back: the message reached the application, unparsed.
    let echoed = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("no echo")
        .expect("closed")
        .expect("error");
    let Message::Text(echoed) = echoed else {
        panic!("{kind:?}: expected the echo, got {echoed:?}")
    };
    assert_eq!(echoed.len(), SIZE);
    drop(echoed);
    assert_eq!(app.delivered(), [format!("<{SIZE} bytes>")]);
    let peak = ALLOCATOR.max_allocated().max(peak_before);
    peak.saturating_sub(baseline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_message_with_refresh_in_it_costs_about_its_own_size() {
    for kind in [Kind::Axum, Kind::Tungstenite] {
        let grown = big_message_costs_about_its_size(kind).await;
        eprintln!(
            "{kind:?}: peak {} MiB over the baseline for a {} MiB message",
            grown >> 20,
            SIZE >> 20
        );
        // The message itself lives a few times over (the client's copy and
        // frames, the server's reassembly and its echo); a JSON tree of
        // 4 million zeros would take over 128 MiB.
        assert!(
            grown <= 5 * SIZE,
            "{kind:?}: peak {grown} B over the baseline for a {SIZE} B message"
        );
    }
}
