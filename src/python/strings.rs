//! Objects made once per interpreter and reused by every request: environ
//! keys and constant values. An environ then creates (and hashes) only the
//! per-request values; a cached `str` also keeps its hash.

use super::object::{Gil, Obj, PyResult};
use parking_lot::Mutex;
use std::collections::HashMap;

/// Distinct strings kept per interpreter; beyond this (e.g. a client sending
/// random header names) new ones are made per request and not kept.
const MAX_STRINGS: usize = 1024;

#[derive(Default)]
pub struct Cache {
    /// latin-1 bytes → owned `str` (address of a reference the cache holds).
    strings: Mutex<HashMap<Box<[u8]>, usize>>,
    /// Named constants (tuples and the like).
    constants: Mutex<HashMap<&'static str, usize>>,
}

impl Cache {
    /// The `str` for `bytes` decoded as latin-1.
    pub fn str<'py>(&self, gil: Gil<'py>, bytes: &[u8]) -> PyResult<Obj<'py>> {
        let mut strings = self.strings.lock();
        if let Some(&ptr) = strings.get(bytes) {
            // SAFETY: attached; the cache owns a reference for the interpreter's lifetime.
            return Ok(unsafe { Obj::from_borrowed(gil, ptr as *mut _) });
        }
        let s = gil.str_latin1(bytes)?;
        if strings.len() < MAX_STRINGS {
            strings.insert(bytes.into(), s.clone().into_ptr() as usize);
        }
        Ok(s)
    }

    /// The constant called `name`, made by `make` the first time.
    pub fn constant<'py>(
        &self,
        gil: Gil<'py>,
        name: &'static str,
        make: impl FnOnce() -> PyResult<Obj<'py>>,
    ) -> PyResult<Obj<'py>> {
        let mut constants = self.constants.lock();
        if let Some(&ptr) = constants.get(name) {
            // SAFETY: attached; the cache owns a reference for the interpreter's lifetime.
            return Ok(unsafe { Obj::from_borrowed(gil, ptr as *mut _) });
        }
        let obj = make()?;
        constants.insert(name, obj.clone().into_ptr() as usize);
        Ok(obj)
    }
}
