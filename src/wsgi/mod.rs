//! PEP 3333 over a `Transport`: environ, start_response/write, wsgi.input,
//! wsgi.errors and the response iteration. Independent of where the request
//! came from (an Apache request now, a daemon socket later).

mod environ;
mod file;
mod fork;
mod headers;
mod input;
mod response;
mod script;

pub use environ::{parse_version, script_name, EnvironInfo};
pub use headers::latin1_bytes;
pub use script::{run_script, ScriptCall};

use crate::log::Level;
use crate::python::{Gil, NativeTypes, Obj, PyException, Raised, Scope};
use input::BodyReader;
use response::Exchange;
use std::io;

/// The request/response channel the adapter talks to.
pub trait Transport {
    /// Visits the CGI variables of the request.
    fn cgi_vars(&self, f: &mut dyn FnMut(&[u8], &[u8]));
    /// Reads body bytes, waiting for them; 0 at the end of the body.
    fn read_body(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Body bytes already in memory, taken without a system call, so the GIL
    /// can stay held (the daemon's rest of a BODY frame); None when there are
    /// none. Embedded mode has none: reading through Apache's filters with
    /// the GIL held cost more in GIL hand-overs than it saved (BENCHMARKS.md).
    fn read_body_ready(&self, _buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(None)
    }
    /// Records status and headers; they go out with the first body bytes.
    fn send_head(&self, status: u16, status_line: &str, headers: &[(String, String)]);
    fn send_body(&self, data: &[u8], flush: bool) -> io::Result<()>;
    /// Takes `len` bytes of the open regular file `fd` from `offset` to send
    /// without blocking (so the GIL can stay held): false if this transport
    /// cannot, and `send_file` must be used.
    fn queue_file(&self, _fd: i32, _offset: u64, _len: u64) -> io::Result<bool> {
        Ok(false)
    }
    /// Sends `len` bytes of the open file `fd` from `offset`, without copying
    /// through Python; may block.
    fn send_file(&self, fd: i32, offset: u64, len: u64) -> io::Result<()>;
    /// True for HEAD: the body is produced but not sent.
    fn is_head(&self) -> bool;
    /// Ends a started response as failed (the client must see it truncated).
    fn abort(&self);
    fn log(&self, level: Level, message: &str);
}

pub enum Outcome {
    /// A response was produced (possibly aborted after its head).
    Responded,
    /// Nothing was sent: the caller answers 500.
    Failed,
}

/// Logs a multi-line text one line per log entry, so every line carries the tag.
pub fn log_lines(t: &dyn Transport, text: &str) {
    for line in text.lines() {
        t.log(Level::Error, line);
    }
}

pub fn log_traceback(t: &dyn Transport, headline: &str, exc: &PyException<'_>) {
    t.log(Level::Error, headline);
    log_lines(t, &exc.format());
}

/// `wsgi.errors`: each complete line to the request's error log.
struct ErrorsStream<'t>(&'t dyn Transport);

impl crate::python::LineTarget for ErrorsStream<'_> {
    fn line(&self, text: &str) {
        self.0.log(Level::Error, text);
    }
}

/// Calls the application and sends its response.
pub fn serve<'py>(
    gil: Gil<'py>,
    types: &NativeTypes,
    app: &Obj<'py>,
    t: &dyn Transport,
    info: &EnvironInfo<'_>,
) -> Outcome {
    let guard = fork::ForkGuard::new(t);
    let t: &dyn Transport = &guard;
    let reader = BodyReader::new(t);
    let errors = ErrorsStream(t);
    let exchange = Exchange::new(t, types);
    let scope = Scope::new(gil);
    let prepared = (|| {
        let input = scope.input(types, &reader)?;
        let errors = scope.log(types, &errors)?;
        let start_response = scope.callable(types, &exchange, response::START_RESPONSE)?;
        exchange.set_write(scope.callable(types, &exchange, response::WRITE)?);
        let environ = environ::build(gil, &types.cache, t, info, &input, &errors, &types.file_wrapper(gil))?;
        Ok::<_, Raised>((environ, start_response))
    })();
    let (environ, start_response) = match prepared {
        Ok(v) => v,
        Err(raised) => {
            let exc = PyException::from_raised(gil, raised);
            log_traceback(
                t,
                &format!("Cannot prepare the WSGI call for '{}'.", info.handler_script),
                &exc,
            );
            return Outcome::Failed;
        }
    };
    let outcome = exchange.run(gil, app, &environ, &start_response, info.handler_script);
    drop(scope);
    // A forked child whose response needed no transport call must not return to Apache either.
    guard.check();
    outcome
}
