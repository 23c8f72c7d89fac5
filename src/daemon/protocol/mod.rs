//! Wire protocol between an Apache child (the *client*) and a WSGI daemon process (the
//! *daemon*), spoken over one Unix stream socket that carries any number of requests in turn.
//!
//! Pure Rust on `std` only: no Apache, no Python, no I/O beyond [`std::io::Read`]/[`Write`].
//! The fd that goes with a [`Frame::File`] travels out of band (`SCM_RIGHTS`), not here.
//!
//! # Frames
//!
//! Every frame is `[u8 type][u32 length, big-endian][payload: length bytes]`. All integers are
//! big-endian. `bytes` is `[u32 n][n bytes]`; `pairs` is `[u32 count]` then `count` times
//! `bytes key, bytes value`; `text` is UTF-8 filling the rest of the payload.
//!
//! | code | frame          | from   | payload                                                            |
//! |------|----------------|--------|--------------------------------------------------------------------|
//! | 0x01 | HELLO          | client | `"MWRS"`, u16 version, u64 generation, token (rest of payload)     |
//! | 0x02 | HELLO_ACK      | daemon | `"MWRS"`, u16 version, u32 pid, u64 generation                     |
//! | 0x03 | REJECT         | daemon | u16 [`RejectCode`], text                                           |
//! | 0x10 | REQUEST_HEAD   | client | u8 has_length, u64 length, bytes script, bytes application group, pairs extra, pairs environ |
//! | 0x11 | READY          | daemon | empty                                                              |
//! | 0x12 | CREDIT         | daemon | u32 bytes the client may send                                      |
//! | 0x13 | BODY           | client | request body bytes                                                 |
//! | 0x14 | BODY_END       | client | empty                                                              |
//! | 0x20 | RESPONSE_HEAD  | daemon | u16 status (100..=999), bytes reason, pairs headers                |
//! | 0x21 | RESPONSE_BODY  | daemon | response body bytes                                                |
//! | 0x22 | FILE           | daemon | u64 offset, u64 length (the fd rides on this frame via SCM_RIGHTS) |
//! | 0x23 | RESPONSE_END   | daemon | empty                                                              |
//! | 0x30 | ABORT          | either | u16 [`AbortCode`], text                                            |
//! | 0x31 | LOG            | daemon | u8 [`LogLevel`] (Apache's 0 = emerg … 7 = debug), text             |
//!
//! Encodings are canonical: a decoded frame re-encodes to exactly the bytes it came from
//! (booleans are 0/1, an absent length is 0, no trailing bytes, text is valid UTF-8).
//!
//! # Conversation
//!
//! ```text
//! connection:  C: HELLO            D: HELLO_ACK | REJECT (then close)
//! per request: C: REQUEST_HEAD     D: READY | REJECT (then close)
//!              D: CREDIT n ...     C: BODY (≤ granted credit) ... BODY_END      (request body)
//!              D: RESPONSE_HEAD, RESPONSE_BODY | FILE ..., RESPONSE_END        (response)
//!              D: LOG at any time between REQUEST_HEAD and RESPONSE_END
//!              either: ABORT ends the exchange and the connection
//! ```
//!
//! * A REQUEST_HEAD declaring a length of 0 has no body: no BODY or BODY_END follows it.
//! * The client sends nothing after REQUEST_HEAD until READY, and no body byte it has no
//!   credit for, so an upload streams with bounded buffering. The two directions run
//!   concurrently: the response may start before the body has ended.
//! * READY marks the point of no return: after it the app may see the request. REJECT or
//!   ABORT before READY, or the connection reset before READY (the daemon closed without
//!   reading the request), mean the app never saw it, so the client may retry it on a
//!   fresh connection. For a request without a body the daemon may send READY together
//!   with the response head; a clean EOF before READY then means the daemon read the
//!   request and died, so it is never retried.
//! * An exchange ends when both RESPONSE_END and BODY_END have been sent. A client that gets
//!   RESPONSE_END before it finished the body sends BODY_END at once (dropping the rest); the
//!   daemon discards BODY frames after its RESPONSE_END until that BODY_END. Then the
//!   connection is idle and may carry the next REQUEST_HEAD.
//! * EOF anywhere but between requests is an error ([`ProtocolError::UnexpectedEof`] with an
//!   [`EofPhase`]), so a daemon that dies after the response head shows as a truncated
//!   response, never as a clean end.
//! * After any [`ProtocolError`] the connection must be closed.
//! * FILE: the daemon sends the fd with `sendmsg(SCM_RIGHTS)` together with the FILE frame's
//!   bytes; the client queues the fds of every `recvmsg` in arrival order and takes one per FILE
//!   frame decoded. There is no QUEUE_TIMEOUT frame: it is REJECT with
//!   [`RejectCode::QUEUE_TIMEOUT`].
//!
//! Suggested client-side mapping: REJECT with [`RejectCode::retry_elsewhere`], or EOF / ABORT
//! while [`ClientSession::request_started`] is false → retry on a new connection (then 503);
//! REJECT QUEUE_TIMEOUT or a read timeout ([`ProtocolError::is_timeout`]) before the head → 504;
//! [`ProtocolError::ResponseHeadTooLarge`] or any failure before the head → 502; any failure
//! once [`ClientSession::response_started`] → truncated response.
//!
//! # Use
//!
//! [`Decoder`] is incremental (`feed` any slices, `next_frame` until `None`) and enforces
//! [`Limits`] before buffering a payload; [`read_frame`]/[`write_frame`] are blocking helpers.
//! [`ClientSession`] (Apache child) and [`DaemonSession`] (daemon) check every frame sent and
//! received against the conversation above: call `on_send` before writing a frame,
//! `on_recv` after decoding one, `on_eof` when the peer closed.

mod decoder;
mod error;
mod frame;
mod pairs;
mod session;
#[cfg(test)]
mod tests;

use std::io::{ErrorKind, Read, Write};

pub use decoder::{Decoder, Lent, Limits};
pub use error::{EofPhase, ProtocolError};
pub use frame::{
    Abort, AbortCode, FileSegment, Frame, FrameType, Hello, HelloAck, Log, LogLevel, Pair, Reject, RejectCode,
    RequestHead, ResponseHead, HEADER_LEN, MAGIC, PROTOCOL_VERSION,
};
pub use pairs::PairBlock;
pub use session::{ClientPhase, ClientSession, DaemonPhase, DaemonSession};

/// Data frames up to this size are copied behind their header and written with one call.
const COALESCE_MAX: usize = 16 * 1024;

/// Reads until `dec` yields a frame. `Ok(None)` is a clean EOF between frames (whether that is
/// acceptable is the session's call: see `on_eof`); EOF inside a frame is
/// [`ProtocolError::UnexpectedEof`] with [`EofPhase::MidFrame`]. A timeout (`WouldBlock` /
/// `TimedOut` from a socket with a read timeout) comes back as [`ProtocolError::Io`] and loses
/// nothing: the partial frame stays buffered in `dec`, so the call can be repeated.
pub fn read_frame<R: Read + ?Sized>(r: &mut R, dec: &mut Decoder) -> Result<Option<Frame>, ProtocolError> {
    loop {
        if let Some(frame) = dec.next_frame()? {
            return Ok(Some(frame));
        }
        match dec.fill_from(r) {
            Ok(0) => {
                dec.finish()?;
                return Ok(None);
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtocolError::Io(e)),
        }
    }
}

/// Encodes `frame` and writes it with a single `write_all`.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, frame: &Frame) -> Result<(), ProtocolError> {
    let mut buf = Vec::new();
    frame.encode(&mut buf)?;
    w.write_all(&buf)?;
    Ok(())
}

/// Writes a BODY or RESPONSE_BODY frame straight from `data`, without building a [`Frame`].
/// With a session, call `on_send_data(kind, data.len())` first.
pub fn write_data_frame<W: Write + ?Sized>(w: &mut W, kind: FrameType, data: &[u8]) -> Result<(), ProtocolError> {
    let header = encode_data_header(kind, data.len())?;
    if data.len() <= COALESCE_MAX {
        let mut buf = Vec::with_capacity(HEADER_LEN + data.len());
        buf.extend_from_slice(&header);
        buf.extend_from_slice(data);
        w.write_all(&buf)?;
    } else {
        w.write_all(&header)?;
        w.write_all(data)?;
    }
    Ok(())
}

/// The 5-byte header of a BODY or RESPONSE_BODY frame of `len` bytes, for callers that write
/// header and data themselves (e.g. with `writev`).
pub fn encode_data_header(kind: FrameType, len: usize) -> Result<[u8; HEADER_LEN], ProtocolError> {
    if !matches!(kind, FrameType::Body | FrameType::ResponseBody) {
        return Err(ProtocolError::NotADataFrame(kind));
    }
    let len32 = u32::try_from(len).map_err(|_| ProtocolError::FrameTooLarge {
        frame: kind,
        len: len as u64,
        max: u64::from(u32::MAX),
    })?;
    let mut header = [0u8; HEADER_LEN];
    header[0] = kind.code();
    header[1..].copy_from_slice(&len32.to_be_bytes());
    Ok(header)
}
