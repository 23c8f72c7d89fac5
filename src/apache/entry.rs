//! The `extern "C"` functions the shim's module record and command table
//! point at. Each converts raw pointers to wrappers, runs the safe logic in
//! `crate::module` under `catch_unwind` (a panic must never cross into C),
//! and converts the result back.

use super::{CmdParms, HandlerOutcome, Pool, Request, Server};
use crate::config::{DirConfig, ServerConfig};
use crate::ffi;
use crate::log::Level;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn guarded<T>(what: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        super::log_main(
            Level::Error,
            &format!("internal error (Rust panic) in {what}; see the message above"),
        );
        fallback
    })
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_directive(
    cmd: *mut ffi::cmd_parms,
    dconf: *mut c_void,
    args: *const c_char,
) -> *const c_char {
    // SAFETY: Apache passes the live cmd_parms and our per-dir config for this section.
    let cmd = CmdParms::from_raw(cmd);
    let dir = &mut *(dconf as *mut DirConfig);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let words = cmd.words(args);
        crate::module::directive(&cmd, dir, &words)
    }))
    .unwrap_or_else(|_| {
        Err(format!(
            "{}: internal error (Rust panic) while reading the directive",
            cmd.directive_name()
        ))
    });
    match result {
        Ok(()) => std::ptr::null(),
        Err(message) => cmd.pool().strdup(&message),
    }
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_create_dir_config(p: *mut ffi::apr_pool_t, _dir: *mut c_char) -> *mut c_void {
    // SAFETY: p is the pool the config must live in.
    guarded("create_dir_config", std::ptr::null_mut(), || {
        Pool::from_raw(p).own(DirConfig::default()) as *mut c_void
    })
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_merge_dir_config(
    p: *mut ffi::apr_pool_t,
    base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    guarded("merge_dir_config", std::ptr::null_mut(), || {
        // SAFETY: both are DirConfigs made by create/merge_dir_config.
        let merged = DirConfig::merge(&*(base as *const DirConfig), &*(add as *const DirConfig));
        Pool::from_raw(p).own(merged) as *mut c_void
    })
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_create_server_config(
    p: *mut ffi::apr_pool_t,
    _s: *mut ffi::server_rec,
) -> *mut c_void {
    // SAFETY: p is the configuration pool.
    guarded("create_server_config", std::ptr::null_mut(), || {
        Pool::from_raw(p).own(ServerConfig::default()) as *mut c_void
    })
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_merge_server_config(
    p: *mut ffi::apr_pool_t,
    _base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    guarded("merge_server_config", std::ptr::null_mut(), || {
        // SAFETY: add is a ServerConfig; a virtual host keeps only its own references.
        let own = (*(add as *const ServerConfig)).clone();
        Pool::from_raw(p).own(own) as *mut c_void
    })
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_check_config(
    _pconf: *mut ffi::apr_pool_t,
    _plog: *mut ffi::apr_pool_t,
    _ptemp: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
) -> c_int {
    // SAFETY: s is the main server, linked to every virtual host.
    let ok = guarded("check_config", false, || {
        crate::module::check_config(Server::from_raw(s))
    });
    if ok {
        ffi::OK as c_int
    } else {
        ffi::HTTP_INTERNAL_SERVER_ERROR as c_int
    }
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_post_config(
    pconf: *mut ffi::apr_pool_t,
    _plog: *mut ffi::apr_pool_t,
    _ptemp: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
) -> c_int {
    // SAFETY: s is the main server.
    guarded("post_config", (), || {
        crate::module::post_config(Server::from_raw(s), Pool::from_raw(pconf))
    });
    ffi::OK as c_int
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_child_init(pchild: *mut ffi::apr_pool_t, s: *mut ffi::server_rec) {
    guarded("child_init", (), || {
        super::process::note_child_mpm();
        // SAFETY: s is the main server; pchild lives until the child exits.
        if let Some(on_exit) = crate::module::child_init(Server::from_raw(s)) {
            Pool::from_raw(pchild).on_cleanup(on_exit);
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_child_stopping(_pchild: *mut ffi::apr_pool_t, graceful: c_int) {
    guarded("child_stopping", (), || crate::module::child_stopping(graceful != 0))
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_create_connection(
    ptrans: *mut ffi::apr_pool_t,
    _server: *mut ffi::server_rec,
    _socket: *mut c_void,
    _id: std::os::raw::c_long,
    _sbh: *mut c_void,
    _alloc: *mut c_void,
) -> *mut ffi::conn_rec {
    // SAFETY: ptrans is the pool of the connection being created; it is cleared when the connection ends.
    let pool = Pool::from_raw(ptrans);
    guarded("create_connection", (), || {
        super::process::note_prefork_connection(&pool)
    });
    std::ptr::null_mut()
}

#[no_mangle]
pub unsafe extern "C" fn wsgi_rs_handler(r: *mut ffi::request_rec) -> c_int {
    // SAFETY: r is the request being handled.
    let request = Request::from_raw(r);
    let outcome = catch_unwind(AssertUnwindSafe(|| crate::module::handle(&request))).unwrap_or_else(|_| {
        request.log(
            Level::Error,
            "internal error (Rust panic) while handling the request; see the message above",
        );
        HandlerOutcome::Status(500)
    });
    match outcome {
        HandlerOutcome::Declined => ffi::DECLINED as c_int,
        HandlerOutcome::Done => ffi::OK as c_int,
        HandlerOutcome::Status(status) => status as c_int,
    }
}
