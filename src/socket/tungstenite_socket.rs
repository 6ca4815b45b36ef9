//! [`AuthSocket`] for tokio-tungstenite's `WebSocketStream`.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{AuthSocket, Frame, SocketError, tungstenite_failure_code};

#[cfg_attr(docsrs, doc(cfg(feature = "tungstenite")))]
impl<S> AuthSocket for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    type Message = Message;

    async fn recv_message(&mut self) -> Option<Result<Message, SocketError>> {
        StreamExt::next(self)
            .await
            .map(|r| r.map_err(SocketError::new))
    }

    async fn send_message(&mut self, message: Message) -> Result<(), SocketError> {
        SinkExt::send(self, message).await.map_err(SocketError::new)
    }

    fn text(text: String) -> Message {
        Message::text(text)
    }

    fn close_frame(code: u16, reason: &str) -> Message {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        }))
    }

    fn failure_code(error: &SocketError) -> Option<u16> {
        error
            .library_error()
            .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
            .map_or(Some(1002), tungstenite_failure_code)
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
