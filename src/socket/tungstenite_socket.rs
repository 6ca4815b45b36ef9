//! [`AuthSocket`] for tokio-tungstenite's `WebSocketStream`.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{AuthSocket, Frame, tungstenite_failure_code};

#[cfg_attr(docsrs, doc(cfg(feature = "tungstenite")))]
impl<S> AuthSocket for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    type Message = Message;
    type WsError = tokio_tungstenite::tungstenite::Error;

    fn text(text: String) -> Message {
        Message::text(text)
    }

    fn close_frame(code: u16, reason: &str) -> Message {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        }))
    }

    fn failure_code(error: &tokio_tungstenite::tungstenite::Error) -> Option<u16> {
        tungstenite_failure_code(error)
    }

    fn frame(message: &Message) -> Frame<'_> {
        match message {
            Message::Text(text) => Frame::Text(text.as_str()),
            Message::Binary(bytes) => Frame::Binary(bytes),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Frame::Control,
            Message::Close(frame) => Frame::Close(
                frame
                    .as_ref()
                    .map(|f| (u16::from(f.code), f.reason.as_str())),
            ),
        }
    }
}
