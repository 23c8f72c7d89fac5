//! `start_response`, `write` and sending the application's iterable, with
//! PEP 3333's rules: one start_response (again only with exc_info), headers
//! out with the first body bytes, Content-Length honoured, `close()` always.

use super::file;
use super::headers::{check_header, parse_status};
use super::{log_traceback, Outcome, Transport};
use crate::log::Level;
use crate::python::{allow_threads, Args, CallTarget, ErrorKind, Gil, NativeTypes, Obj, PyException, PyResult, Raised};
use std::cell::RefCell;

pub const START_RESPONSE: u32 = 0;
pub const WRITE: u32 = 1;

struct Head {
    status: u16,
    status_line: String,
    headers: Vec<(String, String)>,
    content_length: Option<u64>,
}

impl Head {
    /// Statuses that never carry a body (so never a computed Content-Length).
    fn bodiless(&self) -> bool {
        self.status < 200 || self.status == 204 || self.status == 304
    }
}

#[derive(Default)]
struct State<'py> {
    head: Option<Head>,
    head_sent: bool,
    write: Option<Obj<'py>>,
    /// Body bytes passed to Apache so far.
    sent: u64,
    overflow_logged: bool,
    client_gone: bool,
}

/// Why body bytes could not be delivered.
enum Undelivered {
    /// A Python exception is set (e.g. no start_response yet).
    Raised(Raised),
    /// The client closed the connection.
    ClientGone,
}

/// Writes from this size on release the GIL (see `deliver`).
const MAY_BLOCK_FROM: usize = 64 * 1024;

/// One WSGI call's response side.
pub struct Exchange<'t, 'py> {
    transport: &'t dyn Transport,
    types: &'t NativeTypes,
    state: RefCell<State<'py>>,
}

impl<'t, 'py> Exchange<'t, 'py> {
    pub fn new(transport: &'t dyn Transport, types: &'t NativeTypes) -> Self {
        Exchange {
            transport,
            types,
            state: RefCell::new(State::default()),
        }
    }

    pub fn set_write(&self, write: Obj<'py>) {
        self.state.borrow_mut().write = Some(write);
    }

    fn start_response<'g>(&self, gil: Gil<'g>, args: Args<'g>) -> PyResult<Obj<'g>> {
        let mut positional = args.positional.into_iter();
        let (mut status, mut headers, mut exc_info) = (positional.next(), positional.next(), positional.next());
        if positional.next().is_some() {
            return Err(gil.raise(ErrorKind::Type, "start_response() takes at most 3 arguments"));
        }
        for (key, value) in args.keywords {
            let slot = match key.as_str() {
                "status" => &mut status,
                "response_headers" | "headers" => &mut headers,
                "exc_info" => &mut exc_info,
                _ => {
                    return Err(gil.raise(
                        ErrorKind::Type,
                        &format!("start_response() got an unexpected keyword argument '{key}'"),
                    ))
                }
            };
            if slot.replace(value).is_some() {
                return Err(gil.raise(
                    ErrorKind::Type,
                    &format!("start_response() got multiple values for '{key}'"),
                ));
            }
        }
        let (Some(status), Some(headers)) = (status, headers) else {
            return Err(gil.raise(ErrorKind::Type, "start_response() requires status and response_headers"));
        };
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let state = self.state.borrow();
            match (&exc_info, state.head.is_some(), state.head_sent) {
                (Some(exc), _, true) => return Err(gil.reraise(exc)),
                (None, true, _) => {
                    return Err(gil.raise(
                        ErrorKind::Runtime,
                        "start_response() was already called; call it again only with exc_info (PEP 3333)",
                    ))
                }
                _ => {}
            }
        }
        let head = validate(gil, &status, &headers)?;
        let mut state = self.state.borrow_mut();
        state.head = Some(head);
        Ok(state.write.as_ref().map_or_else(|| gil.none(), |w| w.rebind(gil)))
    }

    /// Sends the head if not yet sent.
    fn ensure_head_sent(&self, gil: Gil<'_>) -> PyResult<()> {
        let mut state = self.state.borrow_mut();
        if state.head_sent {
            return Ok(());
        }
        let Some(head) = state.head.as_ref() else {
            return Err(gil.raise(
                ErrorKind::Runtime,
                "response body produced before start_response() was called",
            ));
        };
        self.transport.send_head(head.status, &head.status_line, &head.headers);
        state.head_sent = true;
        Ok(())
    }

    /// How many of `len` bytes may still go out under the declared Content-Length.
    /// (A wrapped file longer than the Content-Length is a normal way to send
    /// part of a file: `log_excess` is false for it.)
    fn allowance(&self, len: u64, log_excess: bool) -> u64 {
        let mut state = self.state.borrow_mut();
        let Some(declared) = state.head.as_ref().and_then(|h| h.content_length) else {
            return len;
        };
        let allowed = declared.saturating_sub(state.sent).min(len);
        if allowed < len && log_excess && !state.overflow_logged {
            state.overflow_logged = true;
            drop(state);
            self.transport.log(
                Level::Error,
                &format!(
                    "the application returned more bytes than its Content-Length of {declared}; the excess was dropped"
                ),
            );
        }
        allowed
    }

    fn deliver(&self, gil: Gil<'_>, data: &[u8], flush: bool) -> Result<(), Undelivered> {
        if data.is_empty() {
            return Ok(());
        }
        self.ensure_head_sent(gil).map_err(Undelivered::Raised)?;
        let allowed = self.allowance(data.len() as u64, true) as usize;
        if allowed == 0 {
            return Ok(());
        }
        // Handing the GIL over costs a wake-up and a wait when other threads
        // want it, so it is released only when the write may block: a flush
        // or more than the transport buffers (Apache's core output filter and
        // the daemon channel both take up to 64 KiB without blocking).
        let send = || self.transport.send_body(&data[..allowed], flush);
        let sent = if flush || allowed >= MAY_BLOCK_FROM {
            allow_threads(gil, send)
        } else {
            send()
        };
        match sent {
            Ok(()) => {
                self.state.borrow_mut().sent += allowed as u64;
                Ok(())
            }
            Err(_) => {
                self.state.borrow_mut().client_gone = true;
                Err(Undelivered::ClientGone)
            }
        }
    }

    fn write<'g>(&self, gil: Gil<'g>, args: Args<'g>) -> PyResult<Obj<'g>> {
        let [data] = args.positional.as_slice() else {
            return Err(gil.raise(ErrorKind::Type, "write() takes exactly one bytes argument"));
        };
        if self.state.borrow().head.is_none() {
            return Err(gil.raise(ErrorKind::Runtime, "write() called before start_response()"));
        }
        let Some(bytes) = data.as_bytes() else {
            return Err(gil.raise(
                ErrorKind::Type,
                &format!("write() argument must be bytes, not {}", data.type_name()),
            ));
        };
        match self.deliver(gil, bytes, true) {
            Ok(()) => Ok(gil.none()),
            Err(Undelivered::Raised(raised)) => Err(raised),
            Err(Undelivered::ClientGone) => Err(self
                .types
                .raise_disconnected(gil, "the client closed the connection; response not sent")),
        }
    }

    /// Handles an exception from the app: a 500 if nothing was sent, else a visible abort.
    fn fail(&self, gil: Gil<'_>, raised: Raised, script: &str) -> Outcome {
        let exc = PyException::from_raised(gil, raised);
        if self.types.is_disconnect(&exc) || self.state.borrow().client_gone {
            self.transport.log(
                Level::Debug,
                &format!("client went away while '{script}' was responding"),
            );
            return Outcome::Responded;
        }
        log_traceback(
            self.transport,
            &format!("Exception occurred processing WSGI script '{script}'."),
            &exc,
        );
        if self.state.borrow().head_sent {
            self.transport.abort();
            Outcome::Responded
        } else {
            Outcome::Failed
        }
    }

    /// Calls `app(environ, start_response)`, sends the result, always calls `close()`.
    pub fn run<'g>(
        &self,
        gil: Gil<'g>,
        app: &Obj<'g>,
        environ: &Obj<'g>,
        start_response: &Obj<'g>,
        script: &str,
    ) -> Outcome {
        let result = match app.call(&[environ, start_response]) {
            Ok(r) => r,
            Err(raised) => return self.fail(gil, raised, script),
        };
        let mut outcome = self
            .send_result(gil, &result)
            .err()
            .map(|raised| self.fail(gil, raised, script));
        let closed = (self.types.cache.str(gil, b"close"))
            .and_then(|name| result.lookup_attr(&name))
            .and_then(|close| close.map_or(Ok(()), |c| c.call(&[]).map(drop)));
        if let Err(raised) = closed {
            let failed = self.fail(gil, raised, script);
            outcome.get_or_insert(failed);
        }
        if let Some(outcome) = outcome {
            return outcome;
        }
        if self.state.borrow().head.is_none() {
            self.transport.log(
                Level::Error,
                &format!("WSGI script '{script}': handle_request returned without calling start_response()"),
            );
            return Outcome::Failed;
        }
        if let Err(raised) = self.ensure_head_sent(gil) {
            return self.fail(gil, raised, script);
        }
        self.check_complete();
        Outcome::Responded
    }

    /// A body shorter than its declared Content-Length must not look complete.
    fn check_complete(&self) {
        let state = self.state.borrow();
        let Some(declared) = state.head.as_ref().and_then(|h| h.content_length) else {
            return;
        };
        if state.sent < declared && !state.client_gone && !self.transport.is_head() {
            let sent = state.sent;
            drop(state);
            self.transport.log(
                Level::Error,
                &format!(
                    "the application sent {sent} bytes but declared Content-Length {declared}; connection aborted"
                ),
            );
            self.transport.abort();
        }
    }

    fn send_result<'g>(&self, gil: Gil<'g>, result: &Obj<'g>) -> PyResult<()> {
        if let Some((filelike, _)) = self.types.file_wrapper_parts(result) {
            if self.state.borrow().sent == 0 && self.send_file(gil, &filelike)? {
                return Ok(());
            }
        }
        if result.is_list_or_tuple() {
            let items = result.sequence_len();
            if items == 1 {
                if let Some(len) = result.sequence_item(0).and_then(|i| i.as_bytes().map(<[u8]>::len)) {
                    self.default_content_length(len as u64);
                }
            }
            // A sequence is all there is: no need to flush between items.
            for i in 0..items {
                let Some(item) = result.sequence_item(i) else { break };
                if !self.send_item(gil, &item, false)? {
                    break;
                }
            }
            return Ok(());
        }
        let iter = result.iter()?;
        while let Some(item) = iter.next()? {
            if !self.send_item(gil, &item, true)? {
                break;
            }
        }
        Ok(())
    }

    /// Sets Content-Length when the app did not and the whole body is known.
    fn default_content_length(&self, len: u64) {
        let mut state = self.state.borrow_mut();
        if state.head_sent {
            return;
        }
        if let Some(head) = state
            .head
            .as_mut()
            .filter(|h| h.content_length.is_none() && !h.bodiless())
        {
            head.content_length = Some(len);
            head.headers.push(("Content-Length".into(), len.to_string()));
        }
    }

    /// Sends a wrapped regular file from its descriptor; false if it is not one.
    fn send_file(&self, gil: Gil<'_>, filelike: &Obj<'_>) -> PyResult<bool> {
        let Some(plan) = file::plan(gil, filelike)? else {
            return Ok(false);
        };
        self.default_content_length(plan.size);
        self.ensure_head_sent(gil)?;
        let len = self.allowance(plan.size, false);
        if len > 0 {
            let sent = match self.transport.queue_file(plan.fd, plan.offset, len) {
                Ok(true) => Ok(()),
                Ok(false) => allow_threads(gil, || self.transport.send_file(plan.fd, plan.offset, len)),
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => self.state.borrow_mut().sent += len,
                Err(_) => self.state.borrow_mut().client_gone = true,
            }
        }
        Ok(true)
    }

    /// Sends one item of the iterable; false when the client has gone (stop iterating).
    fn send_item(&self, gil: Gil<'_>, item: &Obj<'_>, flush: bool) -> PyResult<bool> {
        let Some(bytes) = item.as_bytes() else {
            return Err(gil.raise(
                ErrorKind::Type,
                &format!(
                    "the response iterable must yield bytes, not {} ({})",
                    item.type_name(),
                    item.repr()
                ),
            ));
        };
        match self.deliver(gil, bytes, flush) {
            Ok(()) => Ok(true),
            Err(Undelivered::Raised(raised)) => Err(raised),
            Err(Undelivered::ClientGone) => {
                self.transport.log(
                    Level::Debug,
                    "client closed the connection; stopped sending the response",
                );
                Ok(false)
            }
        }
    }
}

impl CallTarget for Exchange<'_, '_> {
    fn call<'g>(&self, gil: Gil<'g>, tag: u32, args: Args<'g>) -> PyResult<Obj<'g>> {
        match tag {
            START_RESPONSE => self.start_response(gil, args),
            _ => self.write(gil, args),
        }
    }
}

/// Limits on what start_response accepts, the same in both modes (and below
/// what the daemon protocol carries): no client or proxy takes more.
const MAX_RESPONSE_HEADERS: usize = 1000;
const MAX_RESPONSE_HEAD_BYTES: usize = 256 * 1024;

fn validate<'py>(gil: Gil<'py>, status: &Obj<'py>, headers: &Obj<'py>) -> PyResult<Head> {
    let bad = |message: String| Err(gil.raise(ErrorKind::Value, &message));
    let Some(status_text) = status.as_str().filter(|_| status.is_str()) else {
        return Err(gil.raise(
            ErrorKind::Type,
            &format!("status must be a str such as '200 OK', not {}", status.type_name()),
        ));
    };
    let code = match parse_status(status_text) {
        Ok(code) => code,
        Err(message) => return bad(message),
    };
    if !headers.is_list() {
        return Err(gil.raise(
            ErrorKind::Type,
            &format!(
                "response_headers must be a list of (name, value) tuples, not {}",
                headers.type_name()
            ),
        ));
    }
    let count = headers.sequence_len();
    if count > MAX_RESPONSE_HEADERS {
        return bad(format!(
            "too many response headers: {count} (limit {MAX_RESPONSE_HEADERS})"
        ));
    }
    let mut out = Vec::with_capacity(count);
    let mut content_length = None;
    let mut head_bytes = status_text.len();
    for i in 0..count {
        let Some(item) = headers.sequence_item(i) else { break };
        let pair = (item.is_tuple() && item.sequence_len() == 2)
            .then(|| (item.sequence_item(0), item.sequence_item(1)))
            .and_then(|(n, v)| Some((n?, v?)));
        let Some((name, value)) = pair else {
            return Err(gil.raise(
                ErrorKind::Type,
                &format!("response header {} is not a (name, value) tuple", item.repr()),
            ));
        };
        let (Some(n), Some(v)) = (
            name.as_str().filter(|_| name.is_str()),
            value.as_str().filter(|_| value.is_str()),
        ) else {
            return Err(gil.raise(
                ErrorKind::Type,
                &format!("response header {} must be a pair of str", item.repr()),
            ));
        };
        if let Err(message) = check_header(n, v) {
            return bad(message);
        }
        head_bytes += n.len() + v.len() + 4;
        if head_bytes > MAX_RESPONSE_HEAD_BYTES {
            return bad(format!(
                "response headers too large: over {MAX_RESPONSE_HEAD_BYTES} bytes (at header {n:?})"
            ));
        }
        if n.eq_ignore_ascii_case("content-length") {
            match (content_length, v.parse::<u64>()) {
                (None, Ok(len)) => content_length = Some(len),
                (Some(first), Ok(len)) if first == len => continue,
                _ => return bad(format!("conflicting or invalid Content-Length headers ({v:?})")),
            }
        }
        out.push((n.to_string(), v.to_string()));
    }
    Ok(Head {
        status: code,
        status_line: status_text.to_string(),
        headers: out,
        content_length,
    })
}
