//! Safe wrappers over the httpd/APR API, one file per concept, and the
//! `extern "C"` entry points the C shim calls (`entry`).

mod cmd;
mod entry;
pub mod fdpass;
mod log;
pub mod poll;
mod pool;
pub mod process;
pub mod registry;
mod request;
mod server;

pub use cmd::CmdParms;
pub use log::log_main;
pub use pool::Pool;
pub use request::Request;
pub use server::Server;

/// What the handler hook returns to Apache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerOutcome {
    /// Not ours: let other handlers (or the static file handler) serve it.
    Declined,
    /// Response produced.
    Done,
    /// Let Apache send its error page for this HTTP status.
    Status(u16),
}

/// MPM facts for `wsgi.multithread` / `wsgi.multiprocess`.
pub fn mpm_is_threaded() -> bool {
    mpm_query(crate::ffi::AP_MPMQ_IS_THREADED) != 0
}

pub fn mpm_max_daemons() -> i32 {
    mpm_query(crate::ffi::AP_MPMQ_MAX_DAEMONS)
}

fn mpm_query(code: u32) -> i32 {
    let mut value = 0;
    // SAFETY: ap_mpm_query writes one int.
    unsafe { crate::ffi::ap_mpm_query(code as i32, &mut value) };
    value
}

/// `Apache/2.4.71 (Debian)`-style description, whatever ServerTokens says.
pub fn server_description() -> String {
    // SAFETY: returns a static string (or NULL before configuration).
    unsafe { server::cstr_or_empty(crate::ffi::ap_get_server_description()) }
}

/// Lowercase hex MD5 of `text` (APR's implementation; no extra crate).
pub fn md5_hex(text: &str) -> String {
    let mut digest = [0u8; crate::ffi::APR_MD5_DIGESTSIZE as usize];
    // SAFETY: digest has APR_MD5_DIGESTSIZE bytes; input is borrowed for the call.
    unsafe { crate::ffi::apr_md5(digest.as_mut_ptr(), text.as_ptr() as *const _, text.len() as _) };
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The record names of all modules loaded in this configuration.
pub fn loaded_module_names() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: ap_top_module heads the list of loaded modules for this
    // configuration; each record's name is a static string.
    unsafe {
        let mut m = crate::ffi::ap_top_module;
        while !m.is_null() {
            names.push(server::cstr_or_empty((*m).name));
            m = (*m).next;
        }
    }
    names
}
