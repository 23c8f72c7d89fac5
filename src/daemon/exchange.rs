//! The daemon side of one request: a WSGI `Transport` over the connection,
//! so the PEP 3333 adapter runs exactly as in embedded mode.

use super::channel::Channel;
use super::protocol::{
    Abort, AbortCode, DaemonSession, FileSegment, Frame, FrameType, Lent, Log, LogLevel, ProtocolError, RequestHead,
    ResponseHead,
};
use crate::apache::fdpass;
use crate::apache::process::read_at;
use crate::log::Level;
use crate::wsgi::{latin1_bytes, Transport};
use std::cell::{Cell, RefCell};
use std::io;

/// Body bytes granted per CREDIT frame, when the app wants more: the Apache
/// child streams up to this much without waiting for the daemon. 1 MiB
/// instead of 256 KiB cut a 1 MiB upload from 27 to 21-23 context switches
/// and raised its rate ~5 %; socket buffers still bound what is in flight.
const CREDIT: u32 = 1024 * 1024;
const FILE_CHUNK: usize = 256 * 1024;

pub struct DaemonExchange<'c> {
    channel: RefCell<&'c mut Channel<DaemonSession>>,
    head: &'c RequestHead,
    /// What the app's last read left of the last BODY frame, read up to `pending_at`.
    pending: RefCell<Vec<u8>>,
    pending_at: Cell<usize>,
    body_done: Cell<bool>,
    /// The connection failed; nothing more can be sent.
    broken: Cell<bool>,
}

fn io_error(e: ProtocolError) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string())
}

impl<'c> DaemonExchange<'c> {
    pub fn new(channel: &'c mut Channel<DaemonSession>, head: &'c RequestHead) -> Self {
        let body_done = channel.session.body_ended();
        DaemonExchange {
            channel: RefCell::new(channel),
            head,
            pending: RefCell::new(Vec::new()),
            pending_at: Cell::new(0),
            body_done: Cell::new(body_done),
            broken: Cell::new(false),
        }
    }

    /// Runs one channel operation; a failure marks the connection broken for good.
    fn on_channel(&self, op: impl FnOnce(&mut Channel<DaemonSession>) -> Result<(), ProtocolError>) -> io::Result<()> {
        if self.broken.get() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection to Apache lost",
            ));
        }
        let result = op(&mut self.channel.borrow_mut()).map_err(io_error);
        if result.is_err() {
            self.broken.set(true);
        }
        result
    }

    fn send(&self, frame: &Frame) -> io::Result<()> {
        self.on_channel(|c| c.send(frame))
    }

    fn flush(&self) -> io::Result<()> {
        self.on_channel(|c| c.flush())
    }

    fn send_data(&self, data: &[u8]) -> io::Result<()> {
        self.on_channel(|c| c.send_data(FrameType::ResponseBody, data))
    }

    /// Ends a request that failed before its response started (the client answers 500).
    pub fn fail(&self, abort: Abort) {
        self.send_abort(abort);
    }

    /// Sends ABORT and ends the connection so that the client reads it: body
    /// data the client sent but the app never read is drained first, because
    /// closing a Unix socket with unread data makes the peer's next read fail
    /// with ECONNRESET before it sees the frames already queued for it.
    fn send_abort(&self, abort: Abort) {
        if !self.broken.get() && self.send(&Frame::Abort(abort)).is_ok() && self.flush().is_ok() {
            let channel = self.channel.borrow();
            let stream = &channel.stream;
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
            let _ = io::copy(&mut io::Read::take(stream, 64 * 1024 * 1024), &mut io::sink());
        }
        self.broken.set(true);
    }

    /// Ends the exchange with RESPONSE_END (unless it was aborted), then waits
    /// for the client's BODY_END so the connection is idle again. False if it
    /// cannot carry another request.
    pub fn finish(&self) -> bool {
        if self.broken.get() || self.send(&Frame::ResponseEnd).is_err() || self.flush().is_err() {
            return false;
        }
        while !self.body_done.get() {
            match self.channel.borrow_mut().recv_lent() {
                Ok(Some(Lent::Frame(Frame::BodyEnd))) => self.body_done.set(true),
                Ok(Some(_)) => {}
                _ => return false,
            }
        }
        true
    }
}

impl Transport for DaemonExchange<'_> {
    fn cgi_vars(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (k, v) in self.head.environ.iter() {
            f(k, v);
        }
    }

    fn read_body(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.read_body_ready(buf)? {
                return Ok(n);
            }
            let need_credit = self.channel.borrow().session.outstanding_credit() == 0;
            if need_credit {
                self.send(&Frame::Credit(CREDIT))?;
            }
            let mut channel = self.channel.borrow_mut();
            match channel.recv_lent().map_err(io_error)? {
                // (The session lets only BODY through here.) Nothing is pending
                // (read_body_ready said so): what fits goes straight into `buf`,
                // the rest waits for the next read.
                Some(Lent::Data { data, .. }) => {
                    let n = buf.len().min(data.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    let mut pending = self.pending.borrow_mut();
                    pending.clear();
                    pending.extend_from_slice(&data[n..]);
                    self.pending_at.set(0);
                    if n > 0 {
                        return Ok(n);
                    }
                }
                Some(Lent::Frame(Frame::BodyEnd)) => self.body_done.set(true),
                Some(Lent::Frame(Frame::Abort(a))) => {
                    self.broken.set(true);
                    return Err(io::Error::new(io::ErrorKind::ConnectionAborted, a.message));
                }
                Some(Lent::Frame(_)) => {}
                None => {
                    self.broken.set(true);
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "Apache closed the connection",
                    ));
                }
            }
        }
    }

    /// Body bytes already carried over (a BODY frame holds more than one read).
    fn read_body_ready(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let pending = self.pending.borrow();
        let rest = &pending[self.pending_at.get()..];
        if rest.is_empty() {
            return Ok(self.body_done.get().then_some(0));
        }
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pending_at.set(self.pending_at.get() + n);
        Ok(Some(n))
    }

    fn send_head(&self, status: u16, status_line: &str, headers: &[(String, String)]) {
        let reason = status_line.get(4..).unwrap_or_default();
        let head = ResponseHead {
            status,
            reason: reason.as_bytes().to_vec(),
            headers: headers
                .iter()
                .map(|(n, v)| (latin1_bytes(n).into_owned(), latin1_bytes(v).into_owned()))
                .collect(),
        };
        let _ = self.send(&Frame::ResponseHead(head));
    }

    fn send_body(&self, data: &[u8], flush: bool) -> io::Result<()> {
        self.send_data(data)?;
        if flush {
            self.flush()?;
        }
        Ok(())
    }

    fn queue_file(&self, fd: i32, offset: u64, len: u64) -> io::Result<bool> {
        // A regular file travels as a descriptor (one small frame): the Apache
        // child sends it with a file bucket, nothing is copied through the
        // socket. A file shorter than announced takes the copying `send_file`,
        // which sends what there is.
        if fdpass::regular_file_size(fd).is_none_or(|size| offset.saturating_add(len) > size) {
            return Ok(false);
        }
        let segment = FileSegment { offset, length: len };
        self.on_channel(|c| c.send_file(segment, fd)).map(|()| true)
    }

    fn send_file(&self, fd: i32, offset: u64, len: u64) -> io::Result<()> {
        let mut buf = vec![0u8; FILE_CHUNK.min(len as usize).max(1)];
        let (mut at, end) = (offset, offset + len);
        while at < end {
            let want = buf.len().min((end - at) as usize);
            let n = read_at(fd, &mut buf[..want], at)?;
            if n == 0 {
                break;
            }
            self.send_data(&buf[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    fn is_head(&self) -> bool {
        self.head
            .environ
            .iter()
            .any(|(k, v)| k == b"REQUEST_METHOD" && v == b"HEAD")
    }

    fn abort(&self) {
        self.send_abort(Abort {
            code: AbortCode::APP_ERROR,
            message: "the application failed after the response started".into(),
        });
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Error => LogLevel::Err,
            Level::Warning => LogLevel::Warning,
            Level::Info => LogLevel::Info,
            Level::Debug => LogLevel::Debug,
        };
        let _ = self.send(&Frame::Log(Log {
            level,
            message: message.to_string(),
        }));
    }
}
