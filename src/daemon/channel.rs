//! A protocol connection: a Unix stream, the incremental decoder and one
//! side's session state machine, checked on every frame in and out.

use super::protocol::{
    encode_data_header, read_frame, ClientSession, DaemonSession, Decoder, Frame, FrameType, ProtocolError,
};
use std::io::Write;
use std::os::unix::net::UnixStream;

/// Frames are collected and written together: at `flush`, before every
/// read, and when this much is waiting.
const WRITE_BUFFER: usize = 64 * 1024;

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
    out: Vec<u8>,
}

impl<S: Side> Channel<S> {
    pub fn new(stream: UnixStream, session: S) -> Self {
        Channel {
            stream,
            session,
            decoder: Decoder::new(),
            out: Vec::with_capacity(WRITE_BUFFER),
        }
    }

    /// Queues a frame (written at the next flush or read).
    pub fn send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        self.session.on_send(frame)?;
        frame.encode(&mut self.out)?;
        self.flush_if_full()
    }

    /// Queues BODY / RESPONSE_BODY data; large data is written straight from `data`.
    pub fn send_data(&mut self, kind: FrameType, data: &[u8]) -> Result<(), ProtocolError> {
        self.session.on_send_data(kind, data.len())?;
        self.out.extend_from_slice(&encode_data_header(kind, data.len())?);
        if self.out.len() + data.len() <= WRITE_BUFFER {
            self.out.extend_from_slice(data);
            return self.flush_if_full();
        }
        self.flush()?;
        self.stream.write_all(data)?;
        Ok(())
    }

    fn flush_if_full(&mut self) -> Result<(), ProtocolError> {
        if self.out.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is queued.
    pub fn flush(&mut self) -> Result<(), ProtocolError> {
        if !self.out.is_empty() {
            let result = self.stream.write_all(&self.out);
            self.out.clear();
            result?;
        }
        Ok(())
    }

    /// A whole frame is already read and waiting: `recv` will not block.
    pub fn has_frame_buffered(&self) -> bool {
        self.decoder.buffered() > 0 && self.decoder.missing().is_ok_and(|m| m == 0)
    }

    /// The next frame (after writing what is queued); `Ok(None)` when the
    /// peer closed at a point the session allows.
    pub fn recv(&mut self) -> Result<Option<Frame>, ProtocolError> {
        self.flush()?;
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
