//! `start_response`, `write` and sending the application's iterable.

use super::headers::{check_header, parse_status};
use super::{log_lines, log_traceback, Outcome, Transport};
use crate::python::{Args, CallTarget, ErrorKind, Gil, Obj, PyException, PyResult, Raised};
use std::cell::RefCell;

pub const START_RESPONSE: u32 = 0;
pub const WRITE: u32 = 1;

struct Head {
    status: u16,
    status_line: String,
    headers: Vec<(String, String)>,
}

#[derive(Default)]
struct State<'py> {
    head: Option<Head>,
    head_sent: bool,
    write: Option<Obj<'py>>,
}

/// One WSGI call's response side.
pub struct Exchange<'t, 'py> {
    transport: &'t dyn Transport,
    state: RefCell<State<'py>>,
}

impl<'t, 'py> Exchange<'t, 'py> {
    pub fn new(transport: &'t dyn Transport) -> Self {
        Exchange {
            transport,
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
                    &format!("start_response() got multiple values for argument '{key}'"),
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

    fn send(&self, gil: Gil<'_>, data: &[u8], flush: bool) -> PyResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.ensure_head_sent(gil)?;
        crate::python::allow_threads(gil, || self.transport.send_body(data, flush)).map_err(|e| gil.raise_io(&e))
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
        self.send(gil, bytes, true)?;
        Ok(gil.none())
    }

    /// Handles an exception from the app: a 500 if nothing was sent, else a visible abort.
    fn fail(&self, gil: Gil<'_>, raised: Raised, script: &str) -> Outcome {
        let exc = PyException::from_raised(gil, raised);
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
        let mut outcome = match self.send_iterable(gil, &result) {
            Ok(()) => None,
            Err(raised) => Some(self.fail(gil, raised, script)),
        };
        match result.getattr_opt("close") {
            Ok(None) => {}
            Ok(Some(close)) => {
                if let Err(raised) = close.call(&[]) {
                    let failed = self.fail(gil, raised, script);
                    outcome.get_or_insert(failed);
                }
            }
            Err(raised) => {
                let failed = self.fail(gil, raised, script);
                outcome.get_or_insert(failed);
            }
        }
        if let Some(outcome) = outcome {
            return outcome;
        }
        if self.state.borrow().head.is_none() {
            log_lines(
                self.transport,
                &format!("WSGI script '{script}': handle_request returned without calling start_response()"),
            );
            return Outcome::Failed;
        }
        if let Err(raised) = self.ensure_head_sent(gil) {
            return self.fail(gil, raised, script);
        }
        Outcome::Responded
    }

    fn send_iterable<'g>(&self, gil: Gil<'g>, result: &Obj<'g>) -> PyResult<()> {
        if result.is_list_or_tuple() {
            // A sequence is all there is: no need to flush between items.
            for i in 0..result.sequence_len() {
                let Some(item) = result.sequence_item(i) else { break };
                self.send_item(gil, &item, false)?;
            }
            return Ok(());
        }
        let iter = result.iter()?;
        while let Some(item) = iter.next()? {
            self.send_item(gil, &item, true)?;
        }
        Ok(())
    }

    fn send_item(&self, gil: Gil<'_>, item: &Obj<'_>, flush: bool) -> PyResult<()> {
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
        self.send(gil, bytes, flush)
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
    let mut out = Vec::with_capacity(headers.sequence_len());
    for i in 0..headers.sequence_len() {
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
        out.push((n.to_string(), v.to_string()));
    }
    Ok(Head {
        status: code,
        status_line: status_text.to_string(),
        headers: out,
    })
}
