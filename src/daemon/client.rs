//! An Apache child forwarding a request to its daemon process group over a
//! connection it keeps for the next requests, and mapping failures to statuses: cannot connect → 503; no response head in
//! time → 504; daemon gone or broken before the head → 502; after the head
//! → a truncated response. Every failure is logged with group, pid and cause.

use super::channel::Channel;
use super::protocol::{
    Abort, AbortCode, ClientPhase, ClientSession, EofPhase, Frame, FrameType, Hello, Lent, LogLevel, PairBlock,
    ProtocolError, Reject, RequestHead, ResponseHead,
};
use crate::apache::fdpass;
use crate::apache::process::wait_readable;
use crate::apache::{HandlerOutcome, Request};
use crate::log::Level;
use parking_lot::Mutex;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the Apache child knows about the request it forwards.
pub struct Forward<'a> {
    pub group: &'a crate::config::DaemonGroup,
    pub socket_path: &'a str,
    pub script: &'a str,
    pub module_name: &'a str,
    pub application_group: &'a str,
    pub request_handler: &'a str,
    pub script_reloading: bool,
    pub pass_authorization: bool,
    /// `WSGIEnableSendfile` for a file the daemon passes (None: `EnableSendfile`).
    pub enable_sendfile: Option<bool>,
    /// Used when the group sets no socket-timeout (Apache's `Timeout`).
    pub default_timeout: Duration,
    pub generation: u64,
}

const BODY_CHUNK: usize = 64 * 1024;

/// A connection is closed after this many requests, so that the group's
/// processes share the load: whichever daemon has a thread free first takes
/// the next connection (a connection stays with the daemon that accepted it).
const REQUESTS_PER_CONNECTION: u64 = 64;

/// A connection to a group's daemons, reused by this Apache child's requests
/// one after another.
struct Conn {
    ch: Channel<ClientSession>,
    id: u64,
    timeout: Duration,
}

/// Every open daemon connection of this Apache child (a clone of each), so an
/// ungraceful stop can cut requests waiting on a daemon instead of waiting for the app.
static OPEN: Mutex<Vec<(u64, UnixStream)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
/// Idle connections, by socket path.
static IDLE: Mutex<Vec<(String, Vec<Conn>)>> = Mutex::new(Vec::new());

impl Conn {
    fn new(stream: UnixStream, timeout: Duration) -> Conn {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            OPEN.lock().push((id, clone));
        }
        let mut conn = Conn {
            ch: Channel::new(stream, ClientSession::new()),
            id,
            timeout: Duration::ZERO,
        };
        conn.set_timeout(timeout);
        conn
    }

    fn set_timeout(&mut self, timeout: Duration) {
        if self.timeout != timeout {
            let _ = self.ch.stream.set_read_timeout(Some(timeout));
            let _ = self.ch.stream.set_write_timeout(Some(timeout));
            self.timeout = timeout;
        }
    }

    /// An idle connection to `path` whose daemon has not closed it meanwhile.
    fn take_idle(path: &str) -> Option<Conn> {
        loop {
            let conn = IDLE.lock().iter_mut().find(|(p, _)| p == path)?.1.pop()?;
            // Readable while idle can only mean EOF: the daemon recycled or stopped.
            if !wait_readable(&[conn.ch.stream.as_raw_fd()], 0)[0] {
                return Some(conn);
            }
        }
    }

    fn make_idle(self, path: &str) {
        let mut idle = IDLE.lock();
        match idle.iter_mut().find(|(p, _)| p == path) {
            Some((_, conns)) => conns.push(self),
            None => idle.push((path.to_string(), vec![self])),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        OPEN.lock().retain(|(id, _)| *id != self.id);
    }
}

/// Called when this Apache child is told to stop at once: every request
/// still waiting for a daemon ends now (502, or truncated if it started).
pub fn cut_in_flight() {
    for (_, stream) in OPEN.lock().iter() {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

fn connect(r: &Request<'_>, f: &Forward<'_>) -> Result<UnixStream, HandlerOutcome> {
    let deadline = Instant::now() + f.group.connect_timeout;
    loop {
        match UnixStream::connect(f.socket_path) {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::WouldBlock)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(125));
            }
            Err(e) => {
                r.log(
                    Level::Error,
                    &format!(
                        "Unable to connect to WSGI daemon process group '{}' on '{}': {e} (status 503)",
                        f.group.name, f.socket_path
                    ),
                );
                return Err(HandlerOutcome::Status(503));
            }
        }
    }
}

fn level(l: LogLevel) -> Level {
    match l {
        LogLevel::Emerg | LogLevel::Alert | LogLevel::Crit | LogLevel::Err => Level::Error,
        LogLevel::Warning => Level::Warning,
        LogLevel::Notice | LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
    }
}

/// A request a daemon refused or provably did not read (see
/// `ProtocolError::request_not_taken`) may go to another connection (another
/// process): retried with a growing pause (old daemons draining while new
/// ones start), until connect-timeout has passed.
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// Forwards the request (its body already set up) and relays the response.
pub fn forward(r: &Request<'_>, f: &Forward<'_>) -> HandlerOutcome {
    // How long the daemon may stay silent: socket-timeout (default Apache's
    // Timeout), shortened by request-timeout when that is set.
    let silence = f.group.socket_timeout.unwrap_or(f.default_timeout);
    let timeout = f
        .group
        .request_timeout
        .map_or(silence, |r| r.min(silence))
        .max(Duration::from_secs(1));
    let retry_until = Instant::now() + f.group.connect_timeout;
    let mut attempt = 0;
    loop {
        let (mut conn, reused) = match Conn::take_idle(f.socket_path) {
            Some(conn) => (conn, true),
            None => match connect(r, f) {
                Ok(stream) => (Conn::new(stream, timeout), false),
                Err(outcome) => return outcome,
            },
        };
        conn.set_timeout(timeout);
        // A reused connection the daemon dropped meanwhile (recycling,
        // draining) fails before READY: try again at once on another.
        let mut retry = || {
            if reused {
                return true;
            }
            attempt += 1;
            let more = Instant::now() < retry_until;
            if more {
                std::thread::sleep(RETRY_PAUSE * attempt.min(8));
            }
            more
        };
        // Only needed to tell a request-timeout restart from other failures.
        let sent_at = f.group.request_timeout.map(|_| Instant::now());
        let result = exchange(r, f, &mut conn.ch);
        let who = Daemon {
            pid: conn.ch.session.daemon().map_or(0, |d| d.pid),
            group: &f.group.name,
        };
        let e = match result {
            Ok(Attempt::Done(outcome)) => {
                if conn.ch.session.is_idle() && conn.ch.session.exchanges() < REQUESTS_PER_CONNECTION {
                    conn.make_idle(f.socket_path);
                }
                return outcome;
            }
            Ok(Attempt::Refused(why)) if retry() => {
                r.log(
                    Level::Debug,
                    &format!("{who} refused the request ({why}); trying again"),
                );
                continue;
            }
            Ok(Attempt::Refused(why)) => {
                r.log(Level::Error, &format!("{who} refused the request: {why} (status 503)"));
                return HandlerOutcome::Status(503);
            }
            // A daemon that went away (exiting, recycling) without taking the
            // request is no reason to fail it.
            Err(e) if !conn.ch.session.request_started() && e.request_not_taken() && retry() => {
                r.log(
                    Level::Debug,
                    &format!("{who} closed the connection before accepting the request ({e}); trying again"),
                );
                continue;
            }
            Err(e) => e,
        };
        return if conn.ch.session.response_started() {
            r.log(
                Level::Error,
                &format!("{who} failed after the response started: {e}; response truncated"),
            );
            r.abort();
            HandlerOutcome::Done
        } else if e.is_timeout() {
            r.log(
                Level::Error,
                &format!("{who} sent nothing for {timeout:?} (socket-timeout/request-timeout): status 504"),
            );
            HandlerOutcome::Status(504)
        } else if let Some(limit) = f
            .group
            .request_timeout
            .filter(|&l| sent_at.is_some_and(|t| t.elapsed() >= l))
        {
            // The daemon replaces a process whose request ran past
            // request-timeout, which closes the connection; its check can
            // come just before our own timeout fires. Same cause, same 504.
            r.log(
                Level::Error,
                &format!("{who} closed the connection after the request ran past request-timeout={limit:?}: {e} (status 504)"),
            );
            HandlerOutcome::Status(504)
        } else if matches!(e, ProtocolError::ResponseHeadTooLarge { .. }) {
            r.log(
                Level::Error,
                &format!("{who} sent a response head that is too large: {e} (status 502)"),
            );
            HandlerOutcome::Status(502)
        } else {
            r.log(
                Level::Error,
                &format!("{who} closed or broke the connection before the response: {e} (status 502)"),
            );
            HandlerOutcome::Status(502)
        };
    }
}

/// "WSGI daemon process PID of group 'G'" (the pid is unknown before the
/// handshake), formatted only when a message needs it.
struct Daemon<'a> {
    pid: u32,
    group: &'a str,
}

impl std::fmt::Display for Daemon<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = self.group;
        match self.pid {
            0 => write!(f, "WSGI daemon process group '{group}' (no process answered)"),
            pid => write!(f, "WSGI daemon process {pid} of group '{group}'"),
        }
    }
}

enum Attempt {
    Done(HandlerOutcome),
    /// REJECT before READY with a code that allows another try.
    Refused(String),
}

fn exchange(r: &Request<'_>, f: &Forward<'_>, ch: &mut Channel<ClientSession>) -> Result<Attempt, ProtocolError> {
    if ch.session.phase() == ClientPhase::Start {
        ch.send(&Frame::Hello(Hello {
            generation: f.generation,
            token: Vec::new(),
        }))?;
        match ch.recv()? {
            Some(Frame::HelloAck(_)) => {}
            Some(Frame::Reject(reject)) => return Ok(refused(r, f, 0, &reject)),
            _ => return Err(ProtocolError::UnexpectedEof(EofPhase::Handshake)),
        }
    }
    let pid = ch.session.daemon().map_or(0, |d| d.pid);
    // A typical environ encodes to 1-2 KiB: grown from empty, that was a
    // chain of reallocations per request.
    let mut environ = PairBlock::with_capacity(4096);
    r.for_each_cgi_var(f.pass_authorization, |k, v| environ.push(k, v));
    let head = RequestHead {
        content_length: r.body_length(),
        script: f.script.as_bytes().to_vec(),
        application_group: f.application_group.as_bytes().to_vec(),
        extra: vec![
            (b"request_handler".to_vec(), f.request_handler.as_bytes().to_vec()),
            (b"module_name".to_vec(), f.module_name.as_bytes().to_vec()),
            (
                b"script_reloading".to_vec(),
                if f.script_reloading {
                    b"1".to_vec()
                } else {
                    b"0".to_vec()
                },
            ),
        ],
        environ,
    };
    ch.send(&Frame::RequestHead(head))?;
    loop {
        let frame = match ch.recv_lent()? {
            None => return Err(ProtocolError::UnexpectedEof(EofPhase::BeforeResponseHead)),
            // Straight from the read buffer to Apache, flushed to the client
            // when no further frame is already waiting.
            // (The session refuses any other data frame from the daemon.)
            Some(Lent::Data {
                data, more_buffered, ..
            }) => {
                if r.write(data, !more_buffered).is_err() {
                    return Ok(client_gone(r, ch));
                }
                continue;
            }
            Some(Lent::Frame(frame)) => frame,
        };
        match frame {
            Frame::Ready => {}
            Frame::Reject(reject) => return Ok(refused(r, f, pid, &reject)),
            Frame::Credit(_) => {
                if let Some(done) = send_body(r, ch)? {
                    return Ok(done);
                }
            }
            Frame::ResponseHead(ResponseHead {
                status,
                reason,
                headers,
            }) => {
                let mut status_line = status.to_string().into_bytes();
                status_line.push(b' ');
                status_line.extend_from_slice(&reason);
                r.set_response_head(status, &status_line, headers.iter().map(|(n, v)| (&n[..], &v[..])));
            }
            Frame::File(segment) => {
                let fd = ch.take_fd()?;
                if fdpass::regular_file_size(fd.as_raw_fd())
                    .is_none_or(|size| segment.offset.saturating_add(segment.length) > size)
                {
                    return Err(ProtocolError::Io(io::Error::other(
                        "a FILE frame's descriptor is not a regular file that long",
                    )));
                }
                let flush = !ch.has_frame_buffered();
                if r.write_owned_file(fd, segment.offset, segment.length, f.enable_sendfile, flush)
                    .is_err()
                {
                    return Ok(client_gone(r, ch));
                }
            }
            Frame::Log(log) => r.log(level(log.level), &log.message),
            Frame::ResponseEnd => {
                if !ch.session.body_ended() {
                    ch.send(&Frame::BodyEnd)?;
                    ch.flush()?;
                }
                return Ok(Attempt::Done(HandlerOutcome::Done));
            }
            Frame::Abort(abort) => {
                if ch.session.response_started() {
                    r.log(
                        Level::Error,
                        &format!(
                            "{}: response aborted: {}",
                            Daemon {
                                pid,
                                group: &f.group.name
                            },
                            abort.message
                        ),
                    );
                    r.abort();
                    return Ok(Attempt::Done(HandlerOutcome::Done));
                }
                if abort.code == AbortCode::APP_ERROR {
                    return Ok(Attempt::Done(HandlerOutcome::Status(500)));
                }
                r.log(
                    Level::Error,
                    &format!(
                        "WSGI daemon process {pid} of group '{}' aborted the request: {} (status 502)",
                        f.group.name, abort.message
                    ),
                );
                return Ok(Attempt::Done(HandlerOutcome::Status(502)));
            }
            _ => {}
        }
    }
}

/// A REJECT: worth another connection if its code says so, else a 503 now.
fn refused(r: &Request<'_>, f: &Forward<'_>, pid: u32, reject: &Reject) -> Attempt {
    let why = format!("{} ({})", reject.message, reject.code);
    if reject.code.retry_elsewhere() {
        return Attempt::Refused(why);
    }
    r.log(
        Level::Error,
        &format!(
            "WSGI daemon process {pid} of group '{}' refused the request: {why} (status 503)",
            f.group.name
        ),
    );
    Attempt::Done(HandlerOutcome::Status(503))
}

/// Sends request body up to the granted credit (BODY_END at the end of the
/// body). A body the client fails to deliver (gone, malformed chunks) ends
/// the request as the client's fault: 400, or a truncated response.
fn send_body(r: &Request<'_>, ch: &mut Channel<ClientSession>) -> Result<Option<Attempt>, ProtocolError> {
    while ch.session.credit() > 0 && !ch.session.body_ended() {
        let want = BODY_CHUNK.min(ch.session.credit() as usize);
        // Straight from Apache's buckets to the socket.
        match r.send_body_from_buckets(want, |pieces| ch.send_data_pieces(FrameType::Body, pieces)) {
            Ok(None) => ch.send(&Frame::BodyEnd)?,
            Ok(Some(sent)) => sent?,
            Err(e) => {
                let _ = ch.send(&Frame::Abort(Abort {
                    code: AbortCode::CLIENT_GONE,
                    message: e.to_string(),
                }));
                let _ = ch.flush();
                r.log(
                    Level::Info,
                    &format!("request body could not be read from the client: {e}"),
                );
                if ch.session.response_started() {
                    r.abort();
                    return Ok(Some(Attempt::Done(HandlerOutcome::Done)));
                }
                return Ok(Some(Attempt::Done(HandlerOutcome::Status(400))));
            }
        }
    }
    Ok(None)
}

/// The client closed the connection mid-response: the daemon is told to stop.
fn client_gone(r: &Request<'_>, ch: &mut Channel<ClientSession>) -> Attempt {
    r.log(
        Level::Debug,
        "client closed the connection; abandoning the daemon response",
    );
    let _ = ch.send(&Frame::Abort(Abort {
        code: AbortCode::CLIENT_GONE,
        message: "client went away".into(),
    }));
    Attempt::Done(HandlerOutcome::Done)
}
