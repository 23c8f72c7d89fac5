//! A protocol connection: a Unix stream, the incremental decoder and one
//! side's session state machine, checked on every frame in and out.

use super::protocol::{
    encode_data_header, ClientSession, DaemonSession, Decoder, FileSegment, Frame, FrameType, Lent, ProtocolError,
    HEADER_LEN,
};
use crate::apache::fdpass;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Frames are collected and written together: at `flush`, before every
/// read, and when this much is waiting.
const WRITE_BUFFER: usize = 64 * 1024;

/// The session rules of one side of the conversation.
pub trait Side {
    fn on_send(&mut self, frame: &Frame) -> Result<(), ProtocolError>;
    fn on_send_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError>;
    fn on_recv(&mut self, frame: &Frame) -> Result<(), ProtocolError>;
    fn on_recv_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError>;
    fn on_eof(&mut self) -> Result<(), ProtocolError>;
    /// This side accepts descriptors (FILE frames): only the client does.
    const RECEIVES_FDS: bool;
}

macro_rules! side {
    ($t:ty, $fds:expr) => {
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
            fn on_recv_data(&mut self, kind: FrameType, len: usize) -> Result<(), ProtocolError> {
                <$t>::on_recv_data(self, kind, len)
            }
            fn on_eof(&mut self) -> Result<(), ProtocolError> {
                <$t>::on_eof(self)
            }
            const RECEIVES_FDS: bool = $fds;
        }
    };
}
side!(ClientSession, true);
side!(DaemonSession, false);

/// Descriptors received ahead of their FILE frames, at most (one message carries one).
const FDS_QUEUED_MAX: usize = 8;

pub struct Channel<S: Side> {
    pub stream: UnixStream,
    pub session: S,
    decoder: Decoder,
    out: Vec<u8>,
    /// Descriptors received (client side), one per FILE frame, in order.
    fds: VecDeque<OwnedFd>,
}

/// Reads from the stream and keeps the descriptors that come with the bytes.
struct FdReceiver<'a> {
    stream: &'a UnixStream,
    fds: &'a mut VecDeque<OwnedFd>,
}

impl io::Read for FdReceiver<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = fdpass::recv_with_fds(self.stream, buf, self.fds)?;
        if self.fds.len() > FDS_QUEUED_MAX {
            return Err(io::Error::other("descriptors received without FILE frames"));
        }
        Ok(n)
    }
}

impl<S: Side> Channel<S> {
    pub fn new(stream: UnixStream, session: S) -> Self {
        Channel {
            stream,
            session,
            decoder: Decoder::new(),
            out: Vec::with_capacity(WRITE_BUFFER),
            fds: VecDeque::new(),
        }
    }

    /// Queues a frame (written at the next flush or read).
    pub fn send(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        self.session.on_send(frame)?;
        frame.encode(&mut self.out)?;
        self.flush_if_full()
    }

    /// Queues BODY / RESPONSE_BODY data; large data is written straight from
    /// `data`, in one `writev` with what is queued: written apart, the frame
    /// header woke the peer once for itself and once more for the data.
    pub fn send_data(&mut self, kind: FrameType, data: &[u8]) -> Result<(), ProtocolError> {
        if self.out.len() + HEADER_LEN + data.len() > WRITE_BUFFER {
            return self.send_data_pieces(kind, &[IoSlice::new(data)]);
        }
        self.session.on_send_data(kind, data.len())?;
        self.out.extend_from_slice(&encode_data_header(kind, data.len())?);
        self.out.extend_from_slice(data);
        self.flush_if_full()
    }

    /// Sends one BODY / RESPONSE_BODY frame made of `pieces`, written with
    /// what is queued in one `writev`.
    pub fn send_data_pieces(&mut self, kind: FrameType, pieces: &[IoSlice<'_>]) -> Result<(), ProtocolError> {
        const MAX_PIECES: usize = 16;
        let len = pieces.iter().map(|p| p.len()).sum();
        if pieces.len() > MAX_PIECES {
            return Err(ProtocolError::Io(io::Error::other("too many pieces for one frame")));
        }
        self.session.on_send_data(kind, len)?;
        self.out.extend_from_slice(&encode_data_header(kind, len)?);
        let mut all = [IoSlice::new(&[]); MAX_PIECES + 1];
        all[0] = IoSlice::new(&self.out);
        all[1..=pieces.len()].copy_from_slice(pieces);
        let result = write_all_vectored(&mut self.stream, &mut all[..=pieces.len()]);
        self.out.clear();
        Ok(result?)
    }

    /// Sends a FILE frame with a copy of `fd` attached (what is queued goes first).
    pub fn send_file(&mut self, segment: FileSegment, fd: RawFd) -> Result<(), ProtocolError> {
        let frame = Frame::File(segment);
        self.session.on_send(&frame)?;
        self.flush()?;
        frame.encode(&mut self.out)?;
        let result = fdpass::send_with_fd(&self.stream, &self.out, fd);
        self.out.clear();
        Ok(result?)
    }

    /// The descriptor of the FILE frame just received.
    pub fn take_fd(&mut self) -> Result<OwnedFd, ProtocolError> {
        self.fds
            .pop_front()
            .ok_or_else(|| ProtocolError::Io(io::Error::other("a FILE frame came without its descriptor")))
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
        Ok(self.recv_lent()?.map(|lent| match lent {
            Lent::Frame(frame) => frame,
            Lent::Data {
                kind: FrameType::Body,
                data,
                ..
            } => Frame::Body(data.to_vec()),
            Lent::Data { data, .. } => Frame::ResponseBody(data.to_vec()),
        }))
    }

    /// `recv`, with a BODY's or RESPONSE_BODY's payload lent from the read
    /// buffer rather than copied (valid until the next call).
    pub fn recv_lent(&mut self) -> Result<Option<Lent<'_>>, ProtocolError> {
        self.flush()?;
        while self.decoder.buffered() == 0 || self.decoder.missing()? > 0 {
            let read = if S::RECEIVES_FDS {
                let mut reader = FdReceiver {
                    stream: &self.stream,
                    fds: &mut self.fds,
                };
                self.decoder.fill_from(&mut reader)
            } else {
                self.decoder.fill_from(&mut self.stream)
            };
            match read {
                Ok(0) => {
                    self.decoder.finish()?;
                    self.session.on_eof()?;
                    return Ok(None);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ProtocolError::Io(e)),
            }
        }
        let lent = self.decoder.next_frame_lent()?;
        match &lent {
            Some(Lent::Frame(frame)) => self.session.on_recv(frame)?,
            Some(Lent::Data { kind, data, .. }) => self.session.on_recv_data(*kind, data.len())?,
            // Not reached: the loop above waits for a whole frame.
            None => {}
        }
        Ok(lent)
    }
}

/// `write_all` over several buffers (std's `write_all_vectored` is not stable).
fn write_all_vectored(stream: &mut UnixStream, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match stream.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
