//! An Apache child forwarding one request to its daemon process group, and
//! mapping failures to statuses: cannot connect → 503; no response head in
//! time → 504; daemon gone or broken before the head → 502; after the head
//! → a truncated response. Every failure is logged with group, pid and cause.

use super::channel::Channel;
use super::protocol::{
    Abort, AbortCode, ClientSession, Frame, FrameType, Hello, LogLevel, ProtocolError, Reject, RequestHead,
    ResponseHead,
};
use crate::apache::{HandlerOutcome, Request};
use crate::log::Level;
use parking_lot::Mutex;
use std::io::ErrorKind;
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
    /// Used when the group sets no socket-timeout (Apache's `Timeout`).
    pub default_timeout: Duration,
    pub generation: u64,
}

const BODY_CHUNK: usize = 64 * 1024;

/// Connections to daemons that requests of this Apache child are waiting on,
/// so an ungraceful stop can cut them instead of waiting for the app.
static IN_FLIGHT: Mutex<Vec<(u64, UnixStream)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Removes its connection from `IN_FLIGHT` when the request is done.
struct InFlight(u64);

impl InFlight {
    fn register(stream: &UnixStream) -> Option<InFlight> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        IN_FLIGHT.lock().push((id, stream.try_clone().ok()?));
        Some(InFlight(id))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.lock().retain(|(id, _)| *id != self.0);
    }
}

/// Called when this Apache child is told to stop at once: every request
/// still waiting for a daemon ends now (502, or truncated if it started).
pub fn cut_in_flight() {
    for (_, stream) in IN_FLIGHT.lock().iter() {
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

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// Before READY the app has not seen the request, so another connection
/// (another process) may take it: retried with a growing pause (old daemons
/// draining while new ones start), until connect-timeout has passed.
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
        attempt += 1;
        let retry = || {
            let more = Instant::now() < retry_until;
            if more {
                std::thread::sleep(RETRY_PAUSE * attempt.min(8));
            }
            more
        };
        let stream = match connect(r, f) {
            Ok(s) => s,
            Err(outcome) => return outcome,
        };
        let _ = stream.set_read_timeout(Some(timeout));
        let _ = stream.set_write_timeout(Some(timeout));
        let _in_flight = InFlight::register(&stream);
        let mut ch = Channel::new(stream, ClientSession::new());
        let mut pid = 0;
        let result = exchange(r, f, &mut ch, &mut pid);
        let who = describe(pid, &f.group.name);
        let e = match result {
            Ok(Attempt::Done(outcome)) => return outcome,
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
            // Before READY the app has not seen the request: a daemon that went away
            // (exiting, recycling) is no reason to fail it.
            Err(e) if !ch.session.request_started() && !e.is_timeout() && retry() => {
                r.log(
                    Level::Debug,
                    &format!("{who} closed the connection before accepting the request; trying again"),
                );
                continue;
            }
            Err(e) => e,
        };
        return if ch.session.response_started() {
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

/// "WSGI daemon process PID of group 'G'" (the pid is unknown before the handshake).
fn describe(pid: u32, group: &str) -> String {
    if pid == 0 {
        format!("WSGI daemon process group '{group}' (no process answered)")
    } else {
        format!("WSGI daemon process {pid} of group '{group}'")
    }
}

enum Attempt {
    Done(HandlerOutcome),
    /// REJECT before READY with a code that allows another try.
    Refused(String),
}

fn exchange(
    r: &Request<'_>,
    f: &Forward<'_>,
    ch: &mut Channel<ClientSession>,
    pid: &mut u32,
) -> Result<Attempt, ProtocolError> {
    ch.send(&Frame::Hello(Hello {
        generation: f.generation,
        token: Vec::new(),
    }))?;
    match ch.recv()? {
        Some(Frame::HelloAck(ack)) => *pid = ack.pid,
        Some(Frame::Reject(reject)) => return Ok(refused(r, f, *pid, &reject)),
        _ => return Err(ProtocolError::UnexpectedEof(super::protocol::EofPhase::BeforeReady)),
    }
    let mut environ = Vec::new();
    r.for_each_cgi_var(f.pass_authorization, |k, v| environ.push((k.to_vec(), v.to_vec())));
    let head = RequestHead {
        content_length: r.header_in("Content-Length").and_then(|v| v.trim().parse().ok()),
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
    let mut body = vec![0u8; BODY_CHUNK];
    loop {
        let Some(frame) = ch.recv()? else {
            return Err(ProtocolError::UnexpectedEof(
                super::protocol::EofPhase::BeforeResponseHead,
            ));
        };
        match frame {
            Frame::Ready => {}
            Frame::Reject(reject) => return Ok(refused(r, f, *pid, &reject)),
            Frame::Credit(_) => {
                if let Some(done) = send_body(r, ch, &mut body)? {
                    return Ok(done);
                }
            }
            Frame::ResponseHead(ResponseHead {
                status,
                reason,
                headers,
            }) => {
                let status_line = format!("{status} {}", latin1(&reason));
                let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (latin1(n), latin1(v))).collect();
                r.set_response_head(status, &status_line, &headers);
            }
            Frame::ResponseBody(data) if r.write(&data, true).is_err() => {
                r.log(
                    Level::Debug,
                    "client closed the connection; abandoning the daemon response",
                );
                let _ = ch.send(&Frame::Abort(Abort {
                    code: AbortCode::CLIENT_GONE,
                    message: "client went away".into(),
                }));
                return Ok(Attempt::Done(HandlerOutcome::Done));
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
                        &format!("{}: response aborted: {}", describe(*pid, &f.group.name), abort.message),
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
fn send_body(
    r: &Request<'_>,
    ch: &mut Channel<ClientSession>,
    buf: &mut [u8],
) -> Result<Option<Attempt>, ProtocolError> {
    while ch.session.credit() > 0 && !ch.session.body_ended() {
        let want = buf.len().min(ch.session.credit() as usize);
        match r.read_body(&mut buf[..want]) {
            Ok(0) => ch.send(&Frame::BodyEnd)?,
            Ok(n) => ch.send_data(FrameType::Body, &buf[..n])?,
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
