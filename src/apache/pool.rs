//! APR pools: Rust values owned by a pool (dropped by a pool cleanup) and
//! strings copied into it for Apache to keep.

use crate::ffi;
use std::ffi::c_void;
use std::marker::PhantomData;

#[derive(Clone, Copy)]
pub struct Pool<'a> {
    raw: *mut ffi::apr_pool_t,
    _life: PhantomData<&'a ffi::apr_pool_t>,
}

unsafe extern "C" fn drop_boxed<T>(data: *mut c_void) -> ffi::apr_status_t {
    // SAFETY: registered by `Pool::own` with a pointer from Box::into_raw::<T>; runs once.
    drop(Box::from_raw(data as *mut T));
    ffi::APR_SUCCESS as ffi::apr_status_t
}

unsafe extern "C" fn call_fn(data: *mut c_void) -> ffi::apr_status_t {
    // SAFETY: registered by `Pool::on_cleanup` with a `fn()` pointer.
    let f: fn() = std::mem::transmute(data);
    // A panic's message is already in the error log (stderr); nothing more is
    // logged here, as this may run in a signal handler.
    let _ = std::panic::catch_unwind(f);
    ffi::APR_SUCCESS as ffi::apr_status_t
}

impl<'a> Pool<'a> {
    /// # Safety
    /// `raw` is a live pool for `'a`.
    pub unsafe fn from_raw(raw: *mut ffi::apr_pool_t) -> Pool<'a> {
        Pool {
            raw,
            _life: PhantomData,
        }
    }

    pub(super) fn raw(&self) -> *mut ffi::apr_pool_t {
        self.raw
    }

    /// Runs `f` when the pool is cleared or destroyed. Nothing is freed then
    /// (unlike `own`), so it is safe where prefork destroys pools from a
    /// signal handler.
    pub fn on_cleanup(&self, f: fn()) {
        // SAFETY: the pool is live; the cleanup gets the fn pointer back as its data.
        unsafe {
            ffi::apr_pool_cleanup_register(
                self.raw,
                f as *const c_void,
                Some(call_fn),
                Some(ffi::apr_pool_cleanup_null),
            )
        };
    }

    /// Moves `value` into the pool: it is dropped when the pool is cleared or destroyed.
    pub fn own<T>(&self, value: T) -> *mut T {
        let ptr = Box::into_raw(Box::new(value));
        // SAFETY: the pool is live; the cleanup frees exactly this box once.
        unsafe {
            ffi::apr_pool_cleanup_register(
                self.raw,
                ptr as *const c_void,
                Some(drop_boxed::<T>),
                Some(ffi::apr_pool_cleanup_null),
            )
        };
        ptr
    }

    /// A NUL-terminated copy of `s` in the pool (interior NULs cut the string).
    pub fn strdup(&self, s: &str) -> *const std::os::raw::c_char {
        self.strdup_bytes(s.as_bytes())
    }

    /// A NUL-terminated pool copy of `bytes` (cut at an embedded NUL).
    pub fn strdup_bytes(&self, bytes: &[u8]) -> *const std::os::raw::c_char {
        let len = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        // SAFETY: the pool is live; apr_pstrmemdup copies len bytes and adds a NUL.
        unsafe { ffi::apr_pstrmemdup(self.raw, bytes.as_ptr() as *const _, len as ffi::apr_size_t) }
    }
}
