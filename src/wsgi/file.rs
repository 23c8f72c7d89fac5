//! The `wsgi.file_wrapper` fast path: a regular file with a descriptor is
//! sent by Apache from the descriptor (sendfile/mmap), never read into Python.

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
        let fd_obj = fileno.call(&[])?;
        let pos_obj = tell.call(&[])?;
        let os = gil.import("os")?;
        let st = os.call_method("fstat", &[&fd_obj])?;
        let is_regular = gil.import("stat")?.call_method("S_ISREG", &[&st.getattr("st_mode")?])?;
        let (Some(fd), Some(offset), Some(size), true) = (
            fd_obj.as_i64(),
            pos_obj.as_i64(),
            st.getattr("st_size")?.as_i64(),
            is_regular.is_true(),
        ) else {
            return Ok(None);
        };
        let (Ok(fd), Ok(offset), Ok(size)) = (i32::try_from(fd), u64::try_from(offset), u64::try_from(size)) else {
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
