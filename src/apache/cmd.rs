//! `cmd_parms`: what a directive handler learns about where it is.

use super::server::cstr_or_empty;
use super::{Pool, Server};
use crate::ffi;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::raw::c_char;

pub struct CmdParms<'a> {
    raw: *mut ffi::cmd_parms,
    _life: PhantomData<&'a ffi::cmd_parms>,
}

impl<'a> CmdParms<'a> {
    /// # Safety
    /// `raw` is the cmd_parms Apache passed to a directive handler.
    pub unsafe fn from_raw(raw: *mut ffi::cmd_parms) -> CmdParms<'a> {
        CmdParms {
            raw,
            _life: PhantomData,
        }
    }

    pub fn directive_name(&self) -> String {
        // SAFETY: cmd->cmd is the command_rec being processed; its name is static.
        unsafe { CStr::from_ptr((*(*self.raw).cmd).name).to_string_lossy().into_owned() }
    }

    pub fn pool(&self) -> Pool<'a> {
        // SAFETY: cmd->pool lives as long as the configuration being read.
        unsafe { Pool::from_raw((*self.raw).pool) }
    }

    pub fn server(&self) -> Server<'a> {
        // SAFETY: cmd->server is the (virtual) server being configured.
        unsafe { Server::from_raw((*self.raw).server) }
    }

    /// File and line of the directive.
    pub fn location(&self) -> (String, u32) {
        // SAFETY: cmd->directive is the node being processed (NULL only for
        // synthetic directives); filename is a pool string.
        unsafe {
            let d = (*self.raw).directive;
            if d.is_null() {
                (String::new(), 0)
            } else {
                (cstr_or_empty((*d).filename), (*d).line_num.max(0) as u32)
            }
        }
    }

    /// Splits RAW_ARGS text into words with Apache's quoting rules.
    pub fn words(&self, args: *const c_char) -> Vec<String> {
        let mut words = Vec::new();
        if args.is_null() {
            return words;
        }
        let mut cursor = args;
        // SAFETY: args is Apache's NUL-terminated argument string; ap_getword_conf
        // advances the cursor within it and returns pool copies.
        unsafe {
            while *cursor != 0 {
                let word = ffi::ap_getword_conf((*self.raw).temp_pool, &mut cursor);
                if word.is_null() {
                    break;
                }
                // ap_getword_conf skips blanks around words, so "" here was written as "".
                words.push(CStr::from_ptr(word).to_string_lossy().into_owned());
            }
        }
        words
    }

    /// An absolute path: relative ones are taken from ServerRoot.
    pub fn server_root_relative(&self, path: &str) -> String {
        let c = std::ffi::CString::new(path).unwrap_or_default();
        // SAFETY: pool is live; the result is a pool string or NULL (bad path).
        unsafe {
            let abs = ffi::ap_server_root_relative((*self.raw).pool, c.as_ptr());
            if abs.is_null() {
                path.to_string()
            } else {
                cstr_or_empty(abs)
            }
        }
    }

    /// True when the configuration is read while serving requests (.htaccess).
    pub fn at_request_time(&self) -> bool {
        // SAFETY: ap_state_query is always callable.
        unsafe { ffi::ap_state_query(ffi::AP_SQ_MAIN_STATE as i32) == ffi::AP_SQ_MS_RUN_MPM as i32 }
    }
}
