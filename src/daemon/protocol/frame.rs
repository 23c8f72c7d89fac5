//! Frame types and the encoder.

use std::fmt;

use super::error::ProtocolError;
use super::pairs::PairBlock;

/// First bytes of HELLO and HELLO_ACK payloads.
pub const MAGIC: [u8; 4] = *b"MWRS";
/// The version this build speaks; HELLO / HELLO_ACK with any other is rejected.
pub const PROTOCOL_VERSION: u16 = 1;
/// `[u8 type][u32 length]`.
pub const HEADER_LEN: usize = 5;

/// A key/value pair of raw bytes (environ item or response header).
pub type Pair = (Vec<u8>, Vec<u8>);

/// The type byte of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    Hello = 0x01,
    HelloAck = 0x02,
    Reject = 0x03,
    RequestHead = 0x10,
    Ready = 0x11,
    Credit = 0x12,
    Body = 0x13,
    BodyEnd = 0x14,
    ResponseHead = 0x20,
    ResponseBody = 0x21,
    File = 0x22,
    ResponseEnd = 0x23,
    Abort = 0x30,
    Log = 0x31,
}

impl FrameType {
    /// Every frame type, in code order.
    pub const ALL: [FrameType; 14] = [
        FrameType::Hello,
        FrameType::HelloAck,
        FrameType::Reject,
        FrameType::RequestHead,
        FrameType::Ready,
        FrameType::Credit,
        FrameType::Body,
        FrameType::BodyEnd,
        FrameType::ResponseHead,
        FrameType::ResponseBody,
        FrameType::File,
        FrameType::ResponseEnd,
        FrameType::Abort,
        FrameType::Log,
    ];

    pub fn from_u8(code: u8) -> Option<FrameType> {
        FrameType::ALL.iter().copied().find(|t| t.code() == code)
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "HELLO",
            FrameType::HelloAck => "HELLO_ACK",
            FrameType::Reject => "REJECT",
            FrameType::RequestHead => "REQUEST_HEAD",
            FrameType::Ready => "READY",
            FrameType::Credit => "CREDIT",
            FrameType::Body => "BODY",
            FrameType::BodyEnd => "BODY_END",
            FrameType::ResponseHead => "RESPONSE_HEAD",
            FrameType::ResponseBody => "RESPONSE_BODY",
            FrameType::File => "FILE",
            FrameType::ResponseEnd => "RESPONSE_END",
            FrameType::Abort => "ABORT",
            FrameType::Log => "LOG",
        }
    }

    /// Frames only the client (Apache child) sends.
    pub fn sent_by_client(self) -> bool {
        matches!(
            self,
            FrameType::Hello | FrameType::RequestHead | FrameType::Body | FrameType::BodyEnd | FrameType::Abort
        )
    }

    /// Frames only the daemon sends (ABORT goes both ways).
    pub fn sent_by_daemon(self) -> bool {
        !self.sent_by_client() || self == FrameType::Abort
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! codes {
    ($(#[$doc:meta])* $name:ident { $($(#[$cdoc:meta])* $konst:ident = $val:expr,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub u16);

        impl $name {
            $($(#[$cdoc])* pub const $konst: $name = $name($val);)*

            /// The constant's name, if the code is one this version knows.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some(stringify!($konst)),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "code {}", self.0),
                }
            }
        }
    };
}

codes! {
    /// Why the daemon refused a connection (after HELLO) or a request (after REQUEST_HEAD).
    /// Unknown codes decode as they are.
    RejectCode {
        /// The client's protocol version is not supported.
        UNSUPPORTED_VERSION = 1,
        /// Bad token, or a peer the daemon does not trust.
        UNAUTHORIZED = 2,
        /// The daemon is stopping or recycling; try another process.
        SHUTTING_DOWN = 3,
        /// The client's generation is not served by this daemon.
        STALE_GENERATION = 4,
        /// The script or interpreter is being reloaded; try again.
        RELOADING = 5,
        /// No capacity right now.
        OVERLOADED = 6,
        /// The request waited in the daemon's queue longer than queue-timeout (→ 504).
        QUEUE_TIMEOUT = 7,
        /// Anything else.
        INTERNAL = 8,
    }
}

impl RejectCode {
    /// Whether a client may retry the same request on a new connection (another process).
    pub fn retry_elsewhere(self) -> bool {
        matches!(
            self,
            RejectCode::SHUTTING_DOWN | RejectCode::STALE_GENERATION | RejectCode::RELOADING | RejectCode::OVERLOADED
        )
    }
}

codes! {
    /// Why an exchange was abandoned. Unknown codes decode as they are.
    AbortCode {
        /// The application failed after the response head (the client truncates the response).
        APP_ERROR = 1,
        /// The daemon is shutting down and could not finish the request in time.
        SHUTTING_DOWN = 2,
        /// request-timeout (daemon) or socket-timeout (client) expired.
        TIMEOUT = 3,
        /// The HTTP client went away (sent by the Apache child).
        CLIENT_GONE = 4,
        /// The peer broke the protocol.
        PROTOCOL_ERROR = 5,
        /// Anything else.
        INTERNAL = 6,
    }
}

/// Apache's log levels (`APLOG_EMERG` = 0 … `APLOG_DEBUG` = 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum LogLevel {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl LogLevel {
    pub fn from_u8(level: u8) -> Option<LogLevel> {
        Some(match level {
            0 => LogLevel::Emerg,
            1 => LogLevel::Alert,
            2 => LogLevel::Crit,
            3 => LogLevel::Err,
            4 => LogLevel::Warning,
            5 => LogLevel::Notice,
            6 => LogLevel::Info,
            7 => LogLevel::Debug,
            _ => return None,
        })
    }

    /// The `APLOG_*` number.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Client → daemon, first frame of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Apache's restart generation of the client.
    pub generation: u64,
    /// Shared secret / nonce the daemon checks (besides `SO_PEERCRED`).
    pub token: Vec<u8>,
}

/// Daemon → client, accepting a HELLO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloAck {
    pub pid: u32,
    /// The daemon's own restart generation.
    pub generation: u64,
}

/// Daemon → client: connection (after HELLO) or request (after REQUEST_HEAD) refused; the
/// daemon closes the connection after sending it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
}

/// Client → daemon: one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// Request body length if known (Content-Length); `None` for chunked or unknown.
    pub content_length: Option<u64>,
    /// Absolute path of the handler script.
    pub script: Vec<u8>,
    /// Application group (`""` = main interpreter).
    pub application_group: Vec<u8>,
    /// Wire-only key/values that never reach the app (room for future per-request settings).
    pub extra: Vec<Pair>,
    /// The WSGI environ's string items (latin-1 bytes), in order.
    pub environ: PairBlock,
}

/// Daemon → client: status and headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHead {
    /// 100..=999.
    pub status: u16,
    /// The reason phrase (`"OK"` of `"200 OK"`).
    pub reason: Vec<u8>,
    pub headers: Vec<Pair>,
}

/// Daemon → client: send `length` bytes from `offset` of the file whose fd rides on this frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSegment {
    pub offset: u64,
    pub length: u64,
}

/// Either side: the exchange is abandoned, and the connection with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abort {
    pub code: AbortCode,
    pub message: String,
}

/// Daemon → client: a line for the Apache request's error log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    pub level: LogLevel,
    pub message: String,
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    HelloAck(HelloAck),
    Reject(Reject),
    RequestHead(RequestHead),
    Ready,
    /// The client may send this many more body bytes.
    Credit(u32),
    Body(Vec<u8>),
    BodyEnd,
    ResponseHead(ResponseHead),
    ResponseBody(Vec<u8>),
    File(FileSegment),
    ResponseEnd,
    Abort(Abort),
    Log(Log),
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::HelloAck(_) => FrameType::HelloAck,
            Frame::Reject(_) => FrameType::Reject,
            Frame::RequestHead(_) => FrameType::RequestHead,
            Frame::Ready => FrameType::Ready,
            Frame::Credit(_) => FrameType::Credit,
            Frame::Body(_) => FrameType::Body,
            Frame::BodyEnd => FrameType::BodyEnd,
            Frame::ResponseHead(_) => FrameType::ResponseHead,
            Frame::ResponseBody(_) => FrameType::ResponseBody,
            Frame::File(_) => FrameType::File,
            Frame::ResponseEnd => FrameType::ResponseEnd,
            Frame::Abort(_) => FrameType::Abort,
            Frame::Log(_) => FrameType::Log,
        }
    }

    /// Appends the encoded frame to `out`. Fails (leaving `out` as it was) only for what no
    /// decoder could accept: a payload over 4 GiB or a status outside 100..=999.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let start = out.len();
        out.push(self.frame_type().code());
        out.extend_from_slice(&[0; 4]);
        match self
            .encode_payload(out)
            .and_then(|()| self.payload_len(out.len() - start - HEADER_LEN))
        {
            Ok(len) => {
                out[start + 1..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// The encoded frame as a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    fn payload_len(&self, len: usize) -> Result<u32, ProtocolError> {
        u32::try_from(len).map_err(|_| self.too_large(len))
    }

    fn too_large(&self, len: usize) -> ProtocolError {
        ProtocolError::FrameTooLarge {
            frame: self.frame_type(),
            len: len as u64,
            max: u64::from(u32::MAX),
        }
    }

    fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        match self {
            Frame::Hello(h) => {
                out.extend_from_slice(&MAGIC);
                out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
                out.extend_from_slice(&h.generation.to_be_bytes());
                out.extend_from_slice(&h.token);
            }
            Frame::HelloAck(a) => {
                out.extend_from_slice(&MAGIC);
                out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
                out.extend_from_slice(&a.pid.to_be_bytes());
                out.extend_from_slice(&a.generation.to_be_bytes());
            }
            Frame::Reject(r) => {
                out.extend_from_slice(&r.code.0.to_be_bytes());
                out.extend_from_slice(r.message.as_bytes());
            }
            Frame::RequestHead(h) => {
                out.push(u8::from(h.content_length.is_some()));
                out.extend_from_slice(&h.content_length.unwrap_or(0).to_be_bytes());
                self.put_bytes(out, &h.script)?;
                self.put_bytes(out, &h.application_group)?;
                self.put_pairs(out, &h.extra)?;
                self.put_len(out, h.environ.len())?;
                out.extend_from_slice(h.environ.encoded());
            }
            Frame::Ready | Frame::BodyEnd | Frame::ResponseEnd => {}
            Frame::Credit(n) => out.extend_from_slice(&n.to_be_bytes()),
            Frame::Body(data) | Frame::ResponseBody(data) => out.extend_from_slice(data),
            Frame::ResponseHead(h) => {
                if !(100..=999).contains(&h.status) {
                    return Err(ProtocolError::InvalidStatus(h.status));
                }
                out.extend_from_slice(&h.status.to_be_bytes());
                self.put_bytes(out, &h.reason)?;
                self.put_pairs(out, &h.headers)?;
            }
            Frame::File(s) => {
                out.extend_from_slice(&s.offset.to_be_bytes());
                out.extend_from_slice(&s.length.to_be_bytes());
            }
            Frame::Abort(a) => {
                out.extend_from_slice(&a.code.0.to_be_bytes());
                out.extend_from_slice(a.message.as_bytes());
            }
            Frame::Log(l) => {
                out.push(l.level.code());
                out.extend_from_slice(l.message.as_bytes());
            }
        }
        Ok(())
    }

    fn put_len(&self, out: &mut Vec<u8>, len: usize) -> Result<(), ProtocolError> {
        let n = u32::try_from(len).map_err(|_| self.too_large(len))?;
        out.extend_from_slice(&n.to_be_bytes());
        Ok(())
    }

    fn put_bytes(&self, out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.put_len(out, bytes.len())?;
        out.extend_from_slice(bytes);
        Ok(())
    }

    fn put_pairs(&self, out: &mut Vec<u8>, pairs: &[Pair]) -> Result<(), ProtocolError> {
        self.put_len(out, pairs.len())?;
        for (k, v) in pairs {
            self.put_bytes(out, k)?;
            self.put_bytes(out, v)?;
        }
        Ok(())
    }
}
