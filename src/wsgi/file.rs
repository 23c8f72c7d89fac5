//! The `wsgi.file_wrapper` fast path: a regular file with a descriptor is
//! sent by Apache from the descriptor (sendfile/mmap), never read into Python.

use crate::apache::fdpass::regular_file_size;
use crate::python::{Gil, Obj, PyResult, Raised};

/// What to send for a wrapped file: descriptor, start offset, bytes to end of file.
pub struct FilePlan {
    pub fd: i32,
    pub offset: u64,
    pub size: u64,
}

/// The plan for `filelike` if it is a regular file with `fileno()` and an
/// integer `tell()`; `None` means "iterate it with read(blksize) instead".
pub fn plan<'py>(gil: Gil<'py>, filelike: &Obj<'py>) -> PyResult<Option<FilePlan>> {
    let attempt = || -> PyResult<Option<FilePlan>> {
        let (Some(fileno), Some(tell)) = (filelike.getattr_opt("fileno")?, filelike.getattr_opt("tell")?) else {
            return Ok(None);
        };
        let (Some(fd), Some(offset)) = (fileno.call(&[])?.as_i64(), tell.call(&[])?.as_i64()) else {
            return Ok(None);
        };
        let (Ok(fd), Ok(offset)) = (i32::try_from(fd), u64::try_from(offset)) else {
            return Ok(None);
        };
        let Some(size) = regular_file_size(fd) else {
            return Ok(None);
        };
        Ok(Some(FilePlan {
            fd,
            offset,
            size: size.saturating_sub(offset),
        }))
    };
    match attempt() {
        Ok(plan) => Ok(plan),
        // io.UnsupportedOperation and friends: not a real file; fall back to iteration.
        Err(Raised) if gil.take_os_or_value_error() => Ok(None),
        Err(e) => Err(e),
    }
}
