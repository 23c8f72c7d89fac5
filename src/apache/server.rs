//! `server_rec`: one per virtual host, linked from the main server.

use crate::config::ServerConfig;
use crate::ffi;
use std::ffi::CStr;
use std::marker::PhantomData;

#[derive(Clone, Copy)]
pub struct Server<'a> {
    raw: *mut ffi::server_rec,
    _life: PhantomData<&'a ffi::server_rec>,
}

impl<'a> Server<'a> {
    /// # Safety
    /// `raw` is a valid server_rec for `'a`.
    pub unsafe fn from_raw(raw: *mut ffi::server_rec) -> Server<'a> {
        Server {
            raw,
            _life: PhantomData,
        }
    }

    pub(super) fn raw(&self) -> *mut ffi::server_rec {
        self.raw
    }

    /// This server and the virtual hosts after it.
    pub fn iter(self) -> impl Iterator<Item = Server<'a>> {
        std::iter::successors(Some(self), |s| {
            // SAFETY: `next` links valid server_recs (or NULL) for the configuration's life.
            let next = unsafe { (*s.raw).next };
            (!next.is_null()).then(|| unsafe { Server::from_raw(next) })
        })
    }

    /// This server's and its virtual hosts' configs, each once: a virtual host
    /// without any of our directives shares the main server's config object.
    pub fn distinct_configs(self) -> Vec<(Server<'a>, &'a ServerConfig)> {
        let mut out: Vec<(Server<'a>, &'a ServerConfig)> = Vec::new();
        for server in self.iter() {
            let config = server.config();
            if !out.iter().any(|(_, c)| std::ptr::eq(*c, config)) {
                out.push((server, config));
            }
        }
        out
    }

    pub fn config(&self) -> &'a ServerConfig {
        // SAFETY: create/merge_server_config stored a pool-owned ServerConfig for our module.
        unsafe { &*(ffi::wsgi_rs_server_config(self.raw) as *const ServerConfig) }
    }

    /// Mutable access while directives are read (single-threaded config phase).
    pub fn config_mut(&self) -> &'a mut ServerConfig {
        // SAFETY: as `config`; configuration is read by one thread at a time.
        unsafe { &mut *(ffi::wsgi_rs_server_config(self.raw) as *mut ServerConfig) }
    }

    /// The main server (`ap_server_conf`).
    pub fn main(&self) -> Server<'a> {
        // SAFETY: ap_server_conf is the main server of the running configuration.
        unsafe { Server::from_raw(ffi::ap_server_conf) }
    }

    pub fn is_virtual(&self) -> bool {
        // SAFETY: plain field read.
        unsafe { (*self.raw).is_virtual != 0 }
    }

    pub fn hostname(&self) -> String {
        // SAFETY: server_hostname is NULL or a NUL-terminated pool string.
        unsafe { cstr_or_empty((*self.raw).server_hostname) }
    }
}

/// # Safety
/// `p` is NULL or a valid NUL-terminated string.
pub(super) unsafe fn cstr_or_empty(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}
