//! `wsgi.input`: the request body, read on demand with the GIL released.

use super::Transport;
use crate::python::{allow_threads, Gil, InputTarget, Obj, PyResult};
use std::cell::{Cell, RefCell};

const CHUNK: usize = 64 * 1024;

pub struct BodyReader<'t> {
    transport: &'t dyn Transport,
    /// Bytes read from the client but not yet handed to the app.
    pending: RefCell<Vec<u8>>,
    eof: Cell<bool>,
}

impl<'t> BodyReader<'t> {
    pub fn new(transport: &'t dyn Transport) -> Self {
        BodyReader {
            transport,
            pending: RefCell::new(Vec::new()),
            eof: Cell::new(false),
        }
    }

    /// Reads one more chunk into `pending`; false at the end of the body.
    fn fill(&self, gil: Gil<'_>, want: usize) -> std::io::Result<bool> {
        if self.eof.get() {
            return Ok(false);
        }
        let mut buf = vec![0u8; want.clamp(1, CHUNK)];
        let n = allow_threads(gil, || self.transport.read_body(&mut buf))?;
        if n == 0 {
            self.eof.set(true);
            return Ok(false);
        }
        self.pending.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(true)
    }

    fn take<'py>(&self, gil: Gil<'py>, n: usize) -> PyResult<Obj<'py>> {
        let mut pending = self.pending.borrow_mut();
        let n = n.min(pending.len());
        let out = gil.bytes(&pending[..n]);
        pending.drain(..n);
        out
    }
}

impl InputTarget for BodyReader<'_> {
    fn read<'py>(&self, gil: Gil<'py>, size: Option<usize>) -> PyResult<Obj<'py>> {
        let want = size.unwrap_or(usize::MAX);
        while self.pending.borrow().len() < want {
            let missing = want - self.pending.borrow().len();
            match self.fill(gil, missing) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(gil.raise_io(&e)),
            }
        }
        self.take(gil, want)
    }

    fn readline<'py>(&self, gil: Gil<'py>, limit: Option<usize>) -> PyResult<Obj<'py>> {
        let limit = limit.unwrap_or(usize::MAX);
        let mut scanned = 0;
        loop {
            let (found, len) = {
                let pending = self.pending.borrow();
                (
                    pending[scanned..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map(|p| scanned + p + 1),
                    pending.len(),
                )
            };
            if let Some(end) = found {
                return self.take(gil, end.min(limit));
            }
            if len >= limit {
                return self.take(gil, limit);
            }
            scanned = len;
            match self.fill(gil, 8192) {
                Ok(true) => {}
                Ok(false) => return self.take(gil, len),
                Err(e) => return Err(gil.raise_io(&e)),
            }
        }
    }
}
