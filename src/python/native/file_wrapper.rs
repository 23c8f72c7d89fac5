//! `wsgi.file_wrapper(filelike, blksize=8192)`: an iterable over the file's
//! blocks. The response code recognises it (`NativeTypes::file_wrapper_parts`)
//! and sends a real file straight from its descriptor instead of iterating.

use super::{alloc, slot, state_of, State};
use crate::python::object::{ErrorKind, Gil, Obj, Raised};
use pyo3::ffi;

pub(super) unsafe extern "C" fn file_wrapper_new(
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let args = super::collect_args(gil, args, kwargs);
        let mut positional = args.positional.into_iter();
        let filelike = positional.next();
        let mut blksize = positional.next();
        if positional.next().is_some() {
            return Err(gil.raise(ErrorKind::Type, "file_wrapper() takes at most 2 arguments"));
        }
        for (key, value) in args.keywords {
            if key != "blksize" || blksize.replace(value).is_some() {
                return Err(gil.raise(
                    ErrorKind::Type,
                    &format!("file_wrapper() got an unexpected argument '{key}'"),
                ));
            }
        }
        let Some(filelike) = filelike else {
            return Err(gil.raise(ErrorKind::Type, "file_wrapper() requires a file-like object"));
        };
        let blksize = match blksize {
            None => 8192,
            Some(b) => {
                let n = ffi::PyLong_AsSsize_t(b.as_ptr());
                if n == -1 && gil.error_occurred() {
                    return Err(Raised);
                }
                if n <= 0 {
                    return Err(gil.raise(ErrorKind::Value, "file_wrapper() blksize must be positive"));
                }
                n as usize
            }
        };
        alloc(
            gil,
            subtype as usize,
            State::FileWrapper {
                filelike: filelike.into_ptr(),
                blksize,
            },
        )
    })
}

unsafe fn parts<'py>(gil: Gil<'py>, slf: *mut ffi::PyObject) -> (Obj<'py>, usize) {
    match state_of(slf) {
        State::FileWrapper { filelike, blksize } => (Obj::from_borrowed(gil, *filelike), *blksize),
        _ => unreachable!("FileWrapper slots run only on FileWrapper objects"),
    }
}

pub(super) unsafe extern "C" fn file_wrapper_next(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let (filelike, blksize) = parts(gil, slf);
        let block = filelike.call_method("read", &[&gil.int(blksize as i64)?])?;
        let empty = block.as_bytes().is_some_and(<[u8]>::is_empty) || block.as_str().is_some_and(str::is_empty);
        if empty {
            // End of iteration: NULL with no exception set.
            return Err(Raised);
        }
        Ok(block)
    })
}

pub(super) unsafe extern "C" fn file_wrapper_close(
    slf: *mut ffi::PyObject,
    _args: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let (filelike, _) = parts(gil, slf);
        if let Some(close) = filelike.getattr_opt("close")? {
            close.call(&[])?;
        }
        Ok(gil.none())
    })
}
