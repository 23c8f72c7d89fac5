//! An app may call `os.fork()` inside a request. If the child process then
//! returns into the adapter (instead of `os._exit`), it must not touch the
//! request: it would answer the client (or a daemon's Apache child) a second
//! time and corrupt the connection. Every transport call checks the pid, and
//! a forked child leaves at once. (The pid is cached, so the check costs no
//! system call.)

use super::Transport;
use crate::log::Level;
use crate::python::current_pid;
use std::io;

pub struct ForkGuard<'t> {
    inner: &'t dyn Transport,
    pid: u32,
}

impl<'t> ForkGuard<'t> {
    pub fn new(inner: &'t dyn Transport) -> Self {
        ForkGuard {
            inner,
            pid: current_pid(),
        }
    }

    /// Ends this process if it is not the one the request belongs to.
    pub fn check(&self) {
        let pid = current_pid();
        if pid != self.pid {
            // Straight to the error log: the request's own channel belongs to the parent.
            crate::python::leave_forked_child(&format!(
                "process {pid}, forked by the application in process {}, returned into the request; it exits now",
                self.pid
            ));
        }
    }
}

impl Transport for ForkGuard<'_> {
    fn cgi_vars(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        self.inner.cgi_vars(f)
    }
    fn read_body(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.check();
        self.inner.read_body(buf)
    }
    fn read_body_ready(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.check();
        self.inner.read_body_ready(buf)
    }
    fn send_head(&self, status: u16, status_line: &str, headers: &[(String, String)]) {
        self.check();
        self.inner.send_head(status, status_line, headers)
    }
    fn send_body(&self, data: &[u8], flush: bool) -> io::Result<()> {
        self.check();
        self.inner.send_body(data, flush)
    }
    fn queue_file(&self, fd: i32, offset: u64, len: u64) -> io::Result<bool> {
        self.check();
        self.inner.queue_file(fd, offset, len)
    }
    fn send_file(&self, fd: i32, offset: u64, len: u64) -> io::Result<()> {
        self.check();
        self.inner.send_file(fd, offset, len)
    }
    fn is_head(&self) -> bool {
        self.inner.is_head()
    }
    fn abort(&self) {
        self.check();
        self.inner.abort()
    }
    fn log(&self, level: Level, message: &str) {
        self.check();
        self.inner.log(level, message)
    }
}
