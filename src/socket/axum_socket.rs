//! [`AuthSocket`] for axum's `WebSocket`.

use ::axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};

use super::{AuthSocket, Frame, tungstenite_failure_code};

#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl AuthSocket for WebSocket {
    type Message = Message;
    type WsError = ::axum::Error;

    fn text(text: String) -> Message {
        Message::Text(Utf8Bytes::from(text))
    }

    fn close_frame(code: u16, reason: &str) -> Message {
        Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason.to_owned()),
        }))
    }

    fn failure_code(error: &::axum::Error) -> Option<u16> {
        // axum's error wraps the tungstenite error it got (the one
        // tungstenite of axum 0.8.9 and this crate).
        std::error::Error::source(error)
            .and_then(|e| e.downcast_ref::<tokio_tungstenite::tungstenite::Error>())
            .map_or(Some(1002), tungstenite_failure_code)
    }

    fn frame(message: &Message) -> Frame<'_> {
        match message {
            Message::Text(text) => Frame::Text(text.as_str()),
            Message::Binary(bytes) => Frame::Binary(bytes),
            Message::Ping(_) | Message::Pong(_) => Frame::Control,
            Message::Close(frame) => {
                Frame::Close(frame.as_ref().map(|f| (f.code, f.reason.as_str())))
            }
        }
    }
}
