//! `wsgi.input`: the request body, read on demand with the GIL released.

use super::Transport;
use crate::python::{allow_threads, FillError, Gil, InputTarget, Obj, PyResult};
use std::cell::{Cell, RefCell};

const CHUNK: usize = 64 * 1024;
/// read(n) up to this size reads straight into the result (a larger n may be far beyond the body).
const DIRECT_MAX: usize = 1024 * 1024;

pub struct BodyReader<'t> {
    transport: &'t dyn Transport,
    /// Bytes read from the client but not yet handed to the app.
    pending: RefCell<Vec<u8>>,
    /// Where reads land before joining `pending` (allocated once per request).
    scratch: RefCell<Vec<u8>>,
    eof: Cell<bool>,
}

impl<'t> BodyReader<'t> {
    pub fn new(transport: &'t dyn Transport) -> Self {
        BodyReader {
            transport,
            pending: RefCell::new(Vec::new()),
            scratch: RefCell::new(Vec::new()),
            eof: Cell::new(false),
        }
    }

    /// Reads into `buf` until it is full or the body ends (with `first_only`,
    /// stops after the first read that returns data); sets `eof`. Bytes the
    /// transport already holds in memory are taken with the GIL held; for
    /// the rest the GIL is released once, for all the reads that follow.
    fn read_into(&self, gil: Gil<'_>, buf: &mut [u8], first_only: bool) -> std::io::Result<usize> {
        if self.eof.get() || buf.is_empty() {
            return Ok(0);
        }
        // Adds a read's count; true when reading should stop.
        let advance = |at: &mut usize, n: usize, len: usize| {
            if n == 0 {
                self.eof.set(true);
            }
            *at += n;
            n == 0 || first_only || *at == len
        };
        let len = buf.len();
        let mut at = 0;
        while let Some(n) = self.transport.read_body_ready(&mut buf[at..])? {
            if advance(&mut at, n, len) {
                return Ok(at);
            }
        }
        allow_threads(gil, || loop {
            let n = self.transport.read_body(&mut buf[at..])?;
            if advance(&mut at, n, len) {
                return Ok(at);
            }
        })
    }

    /// Reads until `pending` holds `want` bytes or the body ends (with
    /// `first_only`, stops after the first read that returns data). False if
    /// nothing more could be read.
    fn fill(&self, gil: Gil<'_>, want: usize, first_only: bool) -> std::io::Result<bool> {
        let mut scratch = self.scratch.borrow_mut();
        if scratch.is_empty() {
            scratch.resize(CHUNK, 0);
        }
        let mut pending = self.pending.borrow_mut();
        let start = pending.len();
        while pending.len() < want && !self.eof.get() {
            let room = (want - pending.len()).min(CHUNK);
            let n = self.read_into(gil, &mut scratch[..room], first_only)?;
            pending.extend_from_slice(&scratch[..n]);
            if first_only && n > 0 {
                break;
            }
        }
        Ok(pending.len() > start)
    }

    /// read(n) with nothing buffered: the body goes straight into the new bytes object.
    fn read_direct<'py>(&self, gil: Gil<'py>, n: usize) -> PyResult<Obj<'py>> {
        match gil.bytes_filled(n, |buf| self.read_into(gil, buf, false)) {
            Ok(bytes) => Ok(bytes),
            Err(FillError::Raised(raised)) => Err(raised),
            Err(FillError::Io(e)) => Err(gil.raise_io(&e)),
        }
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
        if let Some(n) = size.filter(|n| (1..=DIRECT_MAX).contains(n)) {
            if self.pending.borrow().is_empty() && !self.eof.get() {
                return self.read_direct(gil, n);
            }
        }
        let want = size.unwrap_or(usize::MAX);
        if let Err(e) = self.fill(gil, want, false) {
            return Err(gil.raise_io(&e));
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
            match self.fill(gil, len + 8192, true) {
                Ok(true) => {}
                Ok(false) => return self.take(gil, len),
                Err(e) => return Err(gil.raise_io(&e)),
            }
        }
    }
}
