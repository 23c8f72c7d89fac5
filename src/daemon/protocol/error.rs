//! Protocol errors, worded to be logged as they are.

use std::fmt;
use std::io;

use super::frame::FrameType;

/// Where a stream ended that should not have ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EofPhase {
    /// Inside a frame: `buffered` bytes of it had arrived.
    MidFrame { buffered: usize },
    /// Before the handshake completed.
    Handshake,
    /// Client side: after REQUEST_HEAD, before READY. The daemon read the
    /// request and closed: it may have reached the app, so it is not retried.
    /// Daemon side: the client left before the daemon answered its REQUEST_HEAD.
    BeforeReady,
    /// Client side: after READY, before the response head (→ 502).
    BeforeResponseHead,
    /// Client side: after the response head, before RESPONSE_END (→ truncated response).
    AfterResponseHead,
    /// Daemon side: the client left before BODY_END.
    RequestBody,
    /// Daemon side: the client left after BODY_END, before RESPONSE_END was sent.
    DuringResponse,
}

impl fmt::Display for EofPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EofPhase::MidFrame { buffered } => write!(f, "in the middle of a frame ({buffered} bytes of it received)"),
            EofPhase::Handshake => f.write_str("during the handshake"),
            EofPhase::BeforeReady => f.write_str("before READY (request not started)"),
            EofPhase::BeforeResponseHead => f.write_str("before response head"),
            EofPhase::AfterResponseHead => f.write_str("after response head"),
            EofPhase::RequestBody => f.write_str("in the request body"),
            EofPhase::DuringResponse => f.write_str("while the response was in progress"),
        }
    }
}

/// Everything that can go wrong on the wire. After any of these the connection must be closed.
#[derive(Debug)]
pub enum ProtocolError {
    /// The underlying read or write failed (timeouts included: see [`ProtocolError::is_timeout`]).
    Io(io::Error),
    /// The peer closed the stream where the protocol does not allow it.
    UnexpectedEof(EofPhase),
    /// A frame header named a type this version does not know.
    UnknownFrameType(u8),
    /// A frame's declared length is over the limit for its type (checked before buffering it).
    FrameTooLarge { frame: FrameType, len: u64, max: u64 },
    /// A RESPONSE_HEAD frame is over [`super::Limits::max_response_head_len`].
    ResponseHeadTooLarge { len: u64, max: u64 },
    /// HELLO or HELLO_ACK did not start with [`super::MAGIC`]: not a mod_wsgi_rs peer.
    BadMagic([u8; 4]),
    /// HELLO or HELLO_ACK carried a version other than [`super::PROTOCOL_VERSION`].
    UnsupportedVersion(u16),
    /// A payload that does not parse; `what` says which part.
    Malformed { frame: FrameType, what: &'static str },
    /// More environ items or response headers than the limits allow.
    TooManyItems { frame: FrameType, count: u32, max: u32 },
    /// A response status outside 100..=999.
    InvalidStatus(u16),
    /// A frame that is not allowed in the session's current phase, or from this side.
    UnexpectedFrame {
        frame: FrameType,
        sent: bool,
        reason: &'static str,
    },
    /// BODY bytes beyond the credit the daemon granted.
    CreditExceeded { len: u64, credit: u64 },
    /// Granted credit would overflow a u64.
    CreditOverflow,
    /// More request body than the REQUEST_HEAD's declared length.
    BodyTooLong { declared: u64, total: u64 },
    /// [`super::write_data_frame`] / [`super::encode_data_header`] called for a non-data frame.
    NotADataFrame(FrameType),
}

impl ProtocolError {
    /// A read or write timed out (`WouldBlock` or `TimedOut` from a socket with a timeout).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProtocolError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }

    /// Client side, before READY: proof that the daemon did not take the
    /// request, so another daemon may. The handshake failed, or the
    /// connection was reset: a Unix stream closed with unread data (or
    /// before our write) reports ECONNRESET/EPIPE. A clean end of stream
    /// after REQUEST_HEAD is no such proof: the daemon read the request and
    /// may have run the app (a bodiless request's READY comes with its
    /// response head).
    pub fn request_not_taken(&self) -> bool {
        match self {
            ProtocolError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::NotConnected
            ),
            ProtocolError::UnexpectedEof(phase) => *phase == EofPhase::Handshake,
            _ => false,
        }
    }

    /// The peer closed the stream too early (including in the middle of a frame).
    pub fn is_eof(&self) -> bool {
        matches!(self, ProtocolError::UnexpectedEof(_))
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Io(e) => write!(f, "I/O error: {e}"),
            ProtocolError::UnexpectedEof(phase) => write!(f, "unexpected end of stream {phase}"),
            ProtocolError::UnknownFrameType(t) => write!(f, "unknown frame type 0x{t:02x}"),
            ProtocolError::FrameTooLarge { frame, len, max } => {
                write!(f, "frame too large: {len} bytes > {max} ({frame})")
            }
            ProtocolError::ResponseHeadTooLarge { len, max } => {
                write!(f, "response head too large: {len} bytes > {max}")
            }
            ProtocolError::BadMagic(m) => write!(
                f,
                "bad protocol magic {:02x}{:02x}{:02x}{:02x} (peer does not speak the mod_wsgi_rs protocol)",
                m[0], m[1], m[2], m[3]
            ),
            ProtocolError::UnsupportedVersion(v) => write!(
                f,
                "unsupported protocol version {v} (this side speaks {})",
                super::PROTOCOL_VERSION
            ),
            ProtocolError::Malformed { frame, what } => write!(f, "malformed {frame} frame: {what}"),
            ProtocolError::TooManyItems { frame, count, max } => {
                let what = if *frame == FrameType::RequestHead {
                    "environ items"
                } else {
                    "response headers"
                };
                write!(f, "too many {what}: {count} > {max}")
            }
            ProtocolError::InvalidStatus(s) => write!(f, "invalid response status {s}"),
            ProtocolError::UnexpectedFrame { frame, sent, reason } => {
                let dir = if *sent { "sent" } else { "received" };
                write!(f, "protocol violation: {frame} frame {dir} {reason}")
            }
            ProtocolError::CreditExceeded { len, credit } => {
                write!(
                    f,
                    "BODY of {len} bytes exceeds the flow-control credit of {credit} bytes"
                )
            }
            ProtocolError::CreditOverflow => f.write_str("flow-control credit overflow"),
            ProtocolError::BodyTooLong { declared, total } => {
                write!(f, "request body longer than declared: {total} bytes > {declared}")
            }
            ProtocolError::NotADataFrame(frame) => write!(f, "{frame} is not a data frame"),
        }
    }
}

impl std::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProtocolError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ProtocolError {
    fn from(e: io::Error) -> Self {
        ProtocolError::Io(e)
    }
}
