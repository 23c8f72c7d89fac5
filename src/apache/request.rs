//! `request_rec`: what the handler reads from and writes to.

use super::server::cstr_or_empty;
use super::{Pool, Server};
use crate::config::DirConfig;
use crate::ffi;
use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

pub struct Request<'a> {
    raw: *mut ffi::request_rec,
    brigade: Cell<*mut ffi::apr_bucket_brigade>,
    input_brigade: Cell<*mut ffi::apr_bucket_brigade>,
    _life: PhantomData<&'a ffi::request_rec>,
}

/// Iterates an apr_table_t's entries as byte slices.
///
/// # Safety
/// `table` is a live apr table whose entries outlive the calls to `f`.
unsafe fn for_each_entry(table: *const ffi::apr_table_t, mut f: impl FnMut(&[u8], &[u8])) {
    let arr = ffi::apr_table_elts(table);
    let entries = (*arr).elts as *const ffi::apr_table_entry_t;
    for i in 0..(*arr).nelts.max(0) as usize {
        let e = &*entries.add(i);
        if e.key.is_null() {
            continue;
        }
        let value: &[u8] = if e.val.is_null() {
            b""
        } else {
            CStr::from_ptr(e.val).to_bytes()
        };
        f(CStr::from_ptr(e.key).to_bytes(), value);
    }
}

impl<'a> Request<'a> {
    /// # Safety
    /// `raw` is the request being handled, valid for `'a`.
    pub unsafe fn from_raw(raw: *mut ffi::request_rec) -> Request<'a> {
        Request {
            raw,
            brigade: Cell::new(std::ptr::null_mut()),
            input_brigade: Cell::new(std::ptr::null_mut()),
            _life: PhantomData,
        }
    }

    pub(super) fn raw(&self) -> *mut ffi::request_rec {
        self.raw
    }

    pub fn pool(&self) -> Pool<'a> {
        // SAFETY: r->pool lives as long as the request.
        unsafe { Pool::from_raw((*self.raw).pool) }
    }

    /// `r->handler` as set by SetHandler/AddHandler (or another module).
    pub fn handler(&self) -> Option<&'a str> {
        // SAFETY: handler is NULL or a NUL-terminated string living as long as the request.
        unsafe {
            let h = (*self.raw).handler;
            (!h.is_null()).then(|| CStr::from_ptr(h).to_str().ok()).flatten()
        }
    }

    pub fn dir_config(&self) -> &'a DirConfig {
        // SAFETY: per_dir_config holds our merged DirConfig for this request.
        unsafe { &*(ffi::wsgi_rs_dir_config((*self.raw).per_dir_config) as *const DirConfig) }
    }

    pub fn server(&self) -> Server<'a> {
        // SAFETY: r->server is the request's virtual host.
        unsafe { Server::from_raw((*self.raw).server) }
    }

    pub fn uri(&self) -> String {
        // SAFETY: NULL or a request-pool string.
        unsafe { cstr_or_empty((*self.raw).uri) }
    }

    pub fn path_info(&self) -> String {
        // SAFETY: NULL or a request-pool string.
        unsafe { cstr_or_empty((*self.raw).path_info) }
    }

    /// True when `AcceptPathInfo Off` applies and the URL has path info.
    pub fn path_info_rejected(&self) -> bool {
        // SAFETY: plain field read.
        let rejected = unsafe { (*self.raw).used_path_info } == ffi::AP_REQ_REJECT_PATH_INFO as i32;
        rejected && !self.path_info().is_empty()
    }

    pub fn header_in(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        // SAFETY: headers_in is the request's live table.
        unsafe {
            let v = ffi::apr_table_get((*self.raw).headers_in, name.as_ptr());
            (!v.is_null()).then(|| CStr::from_ptr(v).to_string_lossy().into_owned())
        }
    }

    /// A request environment variable (subprocess_env, then notes).
    pub fn env_var(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        // SAFETY: both tables are live for the request.
        unsafe {
            for table in [(*self.raw).subprocess_env, (*self.raw).notes] {
                let v = ffi::apr_table_get(table, name.as_ptr());
                if !v.is_null() {
                    return Some(CStr::from_ptr(v).to_string_lossy().into_owned());
                }
            }
        }
        None
    }

    pub fn server_port(&self) -> u16 {
        // SAFETY: valid request.
        unsafe { ffi::ap_get_server_port(self.raw) }
    }

    /// Adds the CGI variables (ap_add_common_vars/ap_add_cgi_vars) to the
    /// request environment and visits all of it. Apache leaves out the
    /// `Authorization` header; `pass_authorization` adds it as HTTP_AUTHORIZATION.
    pub fn for_each_cgi_var(&self, pass_authorization: bool, f: impl FnMut(&[u8], &[u8])) {
        // SAFETY: valid request; the table entries live in the request pool.
        unsafe {
            ffi::ap_add_common_vars(self.raw);
            ffi::ap_add_cgi_vars(self.raw);
            let env = (*self.raw).subprocess_env;
            if pass_authorization {
                let auth = ffi::apr_table_get((*self.raw).headers_in, c"Authorization".as_ptr());
                if !auth.is_null() {
                    ffi::apr_table_setn(env, c"HTTP_AUTHORIZATION".as_ptr(), auth);
                }
            } else {
                ffi::apr_table_unset(env, c"HTTP_AUTHORIZATION".as_ptr());
            }
            for_each_entry(env, f);
        }
    }

    /// Prepares to read the body; a chunked body is refused with 411 unless `chunked_ok`.
    pub fn setup_body(&self, chunked_ok: bool) -> Result<(), i32> {
        let policy = if chunked_ok {
            ffi::REQUEST_CHUNKED_DECHUNK
        } else {
            ffi::REQUEST_CHUNKED_ERROR
        };
        // SAFETY: valid request; called once before any read.
        match unsafe { ffi::ap_setup_client_block(self.raw, policy as i32) } {
            0 => Ok(()),
            status => Err(status),
        }
    }

    /// After `setup_body`: the body's length, None when it is chunked (0: no body).
    pub fn body_length(&self) -> Option<u64> {
        // SAFETY: valid request; fields set by ap_setup_client_block.
        unsafe { ((*self.raw).read_chunked == 0).then(|| (*self.raw).remaining.max(0) as u64) }
    }

    /// Reads body bytes, waiting for them (and sending `100 Continue` first
    /// if the client waits for it); 0 at the end of the body.
    pub fn read_body(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut len = buf.len() as ffi::apr_size_t;
        // SAFETY: valid request after setup_body; buf is writable for `len` bytes;
        // the input brigade is the request's own and empty between calls.
        let rv =
            unsafe { ffi::wsgi_rs_read(self.raw, self.input_brigade(), buf.as_mut_ptr() as *mut _, &mut len) } as u32;
        match rv {
            ffi::APR_SUCCESS => Ok(len as usize),
            ffi::APR_EOF => Ok(0),
            _ => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "error reading the request body from the client",
            )),
        }
    }

    /// Hands up to `max` request body bytes, as they lie in Apache's buckets
    /// (no copy), to `send`, waiting for at least one; `None` at the end of
    /// the body. What `send` was given is dropped afterwards, whatever it returns.
    pub fn send_body_from_buckets<R>(
        &self,
        max: usize,
        send: impl FnOnce(&[IoSlice<'_>]) -> R,
    ) -> io::Result<Option<R>> {
        const PIECES: usize = 16;
        let mut pieces = [IoSlice::new(&[]); PIECES];
        let (mut count, mut len): (i32, ffi::apr_size_t) = (PIECES as i32, 0);
        let brigade = self.input_brigade();
        // SAFETY: valid request after setup_body, its own input brigade; IoSlice
        // is ABI-compatible with struct iovec, and `pieces` has `count` of them.
        let rv = unsafe {
            ffi::wsgi_rs_body_peek(
                self.raw,
                brigade,
                max as _,
                pieces.as_mut_ptr() as *mut ffi::iovec,
                &mut count,
                &mut len,
            )
        } as u32;
        match rv {
            ffi::APR_SUCCESS => {}
            ffi::APR_EOF => return Ok(None),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "error reading the request body from the client",
                ))
            }
        }
        // The buckets described stay in the brigade until consumed below.
        let result = send(&pieces[..count as usize]);
        // SAFETY: as above; `len` is what peek described.
        unsafe { ffi::wsgi_rs_body_consumed(self.raw, brigade, len) };
        Ok(Some(result))
    }

    /// Sets status and headers (latin-1 bytes); they go out with the first body bytes.
    pub fn set_response_head<B: AsRef<[u8]>>(
        &self,
        status: u16,
        status_line: &[u8],
        headers: impl Iterator<Item = (B, B)>,
    ) {
        let pool = self.pool();
        // SAFETY: valid request; every string handed over is a request-pool copy.
        unsafe {
            (*self.raw).status = status as i32;
            (*self.raw).status_line = pool.strdup_bytes(status_line);
            for (name, value) in headers {
                let (name, value) = (name.as_ref(), value.as_ref());
                if name.eq_ignore_ascii_case(b"content-type") {
                    ffi::ap_set_content_type(self.raw, pool.strdup_bytes(value));
                } else {
                    // WWW-Authenticate is kept on error responses too, which headers_out is not.
                    let table = if name.eq_ignore_ascii_case(b"www-authenticate") {
                        (*self.raw).err_headers_out
                    } else {
                        (*self.raw).headers_out
                    };
                    ffi::apr_table_add(table, pool.strdup_bytes(name), pool.strdup_bytes(value));
                }
            }
        }
    }

    /// The brigade for output (created on first use, lives in the request pool).
    fn brigade(&self) -> *mut ffi::apr_bucket_brigade {
        Self::request_brigade(self.raw, &self.brigade)
    }

    /// The brigade body reads go through (separate: a read never meets output buckets).
    fn input_brigade(&self) -> *mut ffi::apr_bucket_brigade {
        Self::request_brigade(self.raw, &self.input_brigade)
    }

    fn request_brigade(
        raw: *mut ffi::request_rec,
        slot: &Cell<*mut ffi::apr_bucket_brigade>,
    ) -> *mut ffi::apr_bucket_brigade {
        if slot.get().is_null() {
            // SAFETY: valid request; the brigade lives in the request pool.
            slot.set(unsafe { ffi::wsgi_rs_brigade(raw) });
        }
        slot.get()
    }

    /// Sends body bytes down the output filters (headers first, on the first call).
    pub fn write(&self, data: &[u8], flush: bool) -> io::Result<()> {
        // SAFETY: valid request; data is only borrowed for the call (transient bucket).
        let rv = unsafe {
            ffi::wsgi_rs_write(
                self.raw,
                self.brigade(),
                data.as_ptr() as *const _,
                data.len() as _,
                flush as i32,
            )
        };
        if rv == ffi::APR_SUCCESS as i32 {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client closed the connection",
            ))
        }
    }

    /// Queues `len` bytes of the open file `fd` from `offset` as a file
    /// bucket (sent by mmap/sendfile), to go out with the end of the
    /// response (`end_queued`) or the next write. The descriptor is
    /// duplicated and the copy belongs to the request pool, since the MPM may
    /// write the bucket after the application closed its file.
    pub fn queue_file(&self, fd: i32, offset: u64, len: u64, sendfile: Option<bool>) -> io::Result<()> {
        // SAFETY: the caller holds `fd` open for the duration of this call.
        let dup = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
        self.insert_file(dup, offset, len, sendfile)
    }

    /// Sends what `queue_file` queued, with the end of the response, in one
    /// pass through the output filters; nothing if nothing is queued.
    pub fn end_queued(&self) -> io::Result<()> {
        // SAFETY: valid request and its output brigade.
        let rv = unsafe { ffi::wsgi_rs_end_queued(self.raw, self.brigade()) };
        if rv == ffi::APR_SUCCESS as i32 {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client closed the connection",
            ))
        }
    }

    /// Sends a file (a file bucket) that the request takes over (closed with
    /// the request pool), optionally flushed to the client.
    pub fn write_owned_file(
        &self,
        file: OwnedFd,
        offset: u64,
        len: u64,
        sendfile: Option<bool>,
        flush: bool,
    ) -> io::Result<()> {
        self.insert_file(file, offset, len, sendfile)?;
        self.write(&[], flush)
    }

    /// Appends a file bucket for `file` (now owned by the request pool) to
    /// the output brigade, sent the way Apache sends a static file of this
    /// directory (`EnableSendfile` unless `sendfile` says, `EnableMMAP`).
    fn insert_file(&self, file: OwnedFd, offset: u64, len: u64, sendfile: Option<bool>) -> io::Result<()> {
        let fd = file.as_raw_fd();
        self.pool().own(file);
        let sendfile = sendfile.map_or(-1, i32::from);
        // SAFETY: valid request; the descriptor is owned by the request pool,
        // which outlives the bucket.
        let rv = unsafe { ffi::wsgi_rs_insert_file(self.raw, self.brigade(), fd, offset as _, len as _, sendfile) };
        if rv == ffi::APR_SUCCESS as i32 {
            Ok(())
        } else {
            Err(io::Error::other("cannot wrap the file descriptor for Apache"))
        }
    }

    /// True for HEAD requests (Apache sends no body for them).
    pub fn header_only(&self) -> bool {
        // SAFETY: plain field read.
        unsafe { (*self.raw).header_only != 0 }
    }

    /// Ends a response whose body started as failed: the client sees it truncated.
    pub fn abort(&self) {
        // SAFETY: valid request.
        unsafe { ffi::wsgi_rs_abort(self.raw, self.brigade()) }
    }
}
