//! A protocol connection: a Unix stream, the incremental decoder and one
//! side's session state machine, checked on every frame in and out.

use super::protocol::{
    read_frame, write_data_frame, write_frame, ClientSession, DaemonSession, Decoder, Frame, FrameType, ProtocolError,
};
use std::os::unix::net::UnixStream;

/// The session rules of one side of the conversation.
pub trait Side {
    fn on_send(&mut self, frame: &Frame) -> Result<(), ProtocolError>;
    fn on_send_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError>;
    fn on_recv(&mut self, frame: &Frame) -> Result<(), ProtocolError>;
    fn on_eof(&mut self) -> Result<(), ProtocolError>;
}

macro_rules! side {
    ($t:ty) => {
        impl Side for $t {
            fn on_send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
                <$t>::on_send(self, frame)
            }
            fn on_send_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError> {
                <$t>::on_send_data(self, kind, len)
            }
            fn on_recv(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
                <$t>::on_recv(self, frame)
            }
            fn on_eof(&mut self) -> Result<(), ProtocolError> {
                <$t>::on_eof(self)
            }
        }
    };
}
side!(ClientSession);
side!(DaemonSession);

pub struct Channel<S: Side> {
    pub stream: UnixStream,
    pub session: S,
    decoder: Decoder,
}

impl<S: Side> Channel<S> {
    pub fn new(stream: UnixStream, session: S) -> Self {
        Channel {
            stream,
            session,
            decoder: Decoder::new(),
        }
    }

    pub fn send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        self.session.on_send(frame)?;
        write_frame(&mut self.stream, frame)
    }

    /// Sends BODY / RESPONSE_BODY straight from `data`.
    pub fn send_data(&mut self, kind: FrameType, data: &[u8]) -> Result<(), ProtocolError> {
        self.session.on_send_data(kind, data.len())?;
        write_data_frame(&mut self.stream, kind, data)
    }

    /// The next frame; `Ok(None)` when the peer closed at a point the session allows.
    pub fn recv(&mut self) -> Result<Option<Frame>, ProtocolError> {
        match read_frame(&mut self.stream, &mut self.decoder)? {
            Some(frame) => {
                self.session.on_recv(&frame)?;
                Ok(Some(frame))
            }
            None => {
                self.session.on_eof()?;
                Ok(None)
            }
        }
    }
}
