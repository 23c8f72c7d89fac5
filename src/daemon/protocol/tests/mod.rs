//! Unit tests: codec (encode/decode, limits, corrupt input, blocking helpers) and sessions.

mod codec;
mod lockstep;
mod session;

use super::*;

/// One frame of every type, with awkward content (empty and binary fields, NULs, non-ASCII).
fn sample_frames() -> Vec<Frame> {
    vec![
        Frame::Hello(Hello {
            generation: 7,
            token: vec![0, 1, 2, 0xff],
        }),
        Frame::HelloAck(HelloAck {
            pid: 4242,
            generation: u64::MAX,
        }),
        Frame::Reject(Reject {
            code: RejectCode::RELOADING,
            message: "script reloading".into(),
        }),
        Frame::RequestHead(RequestHead {
            content_length: Some(11),
            script: b"/srv/app/handler.wsgi".to_vec(),
            application_group: b"".to_vec(),
            extra: vec![(b"pass-authorization".to_vec(), b"1".to_vec())],
            environ: vec![
                (b"REQUEST_METHOD".to_vec(), b"POST".to_vec()),
                (b"QUERY_STRING".to_vec(), Vec::new()),
                (b"HTTP_X_BIN".to_vec(), vec![0, 0xe9, 0xff, b'\n']),
            ]
            .into(),
        }),
        Frame::Ready,
        Frame::Credit(65536),
        Frame::Body(b"hello world".to_vec()),
        Frame::BodyEnd,
        Frame::ResponseHead(ResponseHead {
            status: 200,
            reason: b"OK".to_vec(),
            headers: vec![
                (b"Content-Type".to_vec(), b"text/plain; charset=utf-8".to_vec()),
                (b"Set-Cookie".to_vec(), b"a=1".to_vec()),
                (b"Set-Cookie".to_vec(), b"b=2".to_vec()),
            ],
        }),
        Frame::ResponseBody(vec![0u8; 3000]),
        Frame::File(FileSegment {
            offset: 1 << 40,
            length: 12345,
        }),
        Frame::ResponseEnd,
        Frame::Abort(Abort {
            code: AbortCode::APP_ERROR,
            message: "ValueError: bad → worse".into(),
        }),
        Frame::Log(Log {
            level: LogLevel::Err,
            message: "Traceback (most recent call last):\n  ...".into(),
        }),
    ]
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(&mut out).unwrap();
    }
    out
}

/// Decodes everything in `dec` (which must end on a frame boundary).
fn drain(dec: &mut Decoder) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(f) = dec.next_frame().unwrap() {
        frames.push(f);
    }
    frames
}

/// Decodes one complete frame from `bytes` with `limits`.
fn decode_one(bytes: &[u8], limits: Limits) -> Result<Option<Frame>, ProtocolError> {
    let mut dec = Decoder::with_limits(limits);
    dec.feed(bytes);
    dec.next_frame()
}

/// A raw frame with an arbitrary type byte and payload.
fn raw(code: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![code];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Both ends of one connection, with frames going through the encoder and decoder.
pub(super) struct Link {
    pub(super) client: ClientSession,
    pub(super) daemon: DaemonSession,
    to_daemon: Decoder,
    to_client: Decoder,
}

impl Link {
    pub(super) fn new() -> Link {
        Link {
            client: ClientSession::new(),
            daemon: DaemonSession::new(),
            to_daemon: Decoder::new(),
            to_client: Decoder::new(),
        }
    }

    /// A link past the handshake.
    pub(super) fn connected() -> Link {
        let mut l = Link::new();
        l.c(hello()).unwrap();
        l.d(Frame::HelloAck(HelloAck { pid: 99, generation: 3 })).unwrap();
        l
    }

    /// Client sends `f`; the daemon receives it.
    pub(super) fn c(&mut self, f: Frame) -> Result<(), ProtocolError> {
        self.client.on_send(&f)?;
        self.to_daemon.feed(&f.to_bytes().unwrap());
        let got = self.to_daemon.next_frame()?.unwrap();
        assert_eq!(got, f);
        self.daemon.on_recv(&got)
    }

    /// Daemon sends `f`; the client receives it.
    pub(super) fn d(&mut self, f: Frame) -> Result<(), ProtocolError> {
        self.daemon.on_send(&f)?;
        self.to_client.feed(&f.to_bytes().unwrap());
        let got = self.to_client.next_frame()?.unwrap();
        assert_eq!(got, f);
        self.client.on_recv(&got)
    }
}

pub(super) fn hello() -> Frame {
    Frame::Hello(Hello {
        generation: 3,
        token: b"secret".to_vec(),
    })
}

pub(super) fn request(content_length: Option<u64>) -> Frame {
    Frame::RequestHead(RequestHead {
        content_length,
        script: b"/srv/a.wsgi".to_vec(),
        environ: vec![(b"REQUEST_METHOD".to_vec(), b"GET".to_vec())].into(),
        ..RequestHead::default()
    })
}

pub(super) fn head(status: u16) -> Frame {
    Frame::ResponseHead(ResponseHead {
        status,
        reason: b"OK".to_vec(),
        headers: vec![],
    })
}

pub(super) fn log(msg: &str) -> Frame {
    Frame::Log(Log {
        level: LogLevel::Err,
        message: msg.into(),
    })
}

pub(super) fn abort(code: AbortCode) -> Frame {
    Frame::Abort(Abort {
        code,
        message: "boom".into(),
    })
}
