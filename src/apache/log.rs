//! Apache error-log output (through the shim, which supplies APLOG_MARK and
//! our module index so lines carry the `[wsgi_rs:…]` tag).

use super::{Request, Server};
use crate::ffi;
use crate::log::Level;
use std::ffi::CString;

pub(super) fn aplog_level(level: Level) -> i32 {
    (match level {
        Level::Error => ffi::APLOG_ERR,
        Level::Warning => ffi::APLOG_WARNING,
        Level::Info => ffi::APLOG_INFO,
        Level::Debug => ffi::APLOG_DEBUG,
    }) as i32
}

fn message(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).unwrap_or_default()
}

impl Server<'_> {
    pub fn log(&self, level: Level, text: &str) {
        let lvl = aplog_level(level);
        // SAFETY: the server_rec is valid for 'a; the shim formats with "%s".
        unsafe {
            if ffi::wsgi_rs_server_log_enabled(self.raw(), lvl) != 0 {
                ffi::wsgi_rs_log_server(self.raw(), lvl, 0, message(text).as_ptr());
            }
        }
    }
}

impl Request<'_> {
    pub fn log(&self, level: Level, text: &str) {
        let lvl = aplog_level(level);
        // SAFETY: the request_rec is valid for 'a; the shim formats with "%s".
        unsafe {
            if ffi::wsgi_rs_request_log_enabled(self.raw(), lvl) != 0 {
                ffi::wsgi_rs_log_request(self.raw(), lvl, 0, message(text).as_ptr());
            }
        }
    }
}

/// Logs to the main server's error log; for code with no request or server at hand.
pub fn log_main(level: Level, text: &str) {
    // SAFETY: ap_server_conf is the main server once configured (NULL before:
    // Apache then logs to stderr, keeping only warnings and above).
    let main = unsafe { ffi::ap_server_conf };
    if main.is_null() {
        // SAFETY: a NULL server_rec is allowed by ap_log_error.
        unsafe { ffi::wsgi_rs_log_server(std::ptr::null(), aplog_level(level), 0, message(text).as_ptr()) };
    } else {
        // SAFETY: main is a valid server_rec.
        unsafe { Server::from_raw(main) }.log(level, text);
    }
}
