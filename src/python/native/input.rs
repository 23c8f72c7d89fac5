//! `wsgi.input` methods: read, readline, readlines, iteration.

use super::{ended, slot, state_of, InputTarget, State};
use crate::python::object::{ErrorKind, Gil, PyResult, Raised};
use pyo3::ffi;

/// Optional size argument: absent, None or negative mean "no limit".
unsafe fn size_arg(gil: Gil<'_>, args: *mut ffi::PyObject, what: &str) -> PyResult<Option<usize>> {
    let n = ffi::PyTuple_Size(args);
    if n > 1 {
        return Err(gil.raise(
            ErrorKind::Type,
            &format!("{what}() takes at most 1 argument ({n} given)"),
        ));
    }
    if n == 0 {
        return Ok(None);
    }
    let arg = ffi::PyTuple_GetItem(args, 0);
    if arg == ffi::Py_None() {
        return Ok(None);
    }
    if ffi::PyLong_Check(arg) == 0 {
        return Err(gil.raise(ErrorKind::Type, &format!("{what}() argument must be an int or None")));
    }
    let v = ffi::PyLong_AsSsize_t(arg);
    if v == -1 && !ffi::PyErr_Occurred().is_null() {
        return Err(Raised);
    }
    Ok((v >= 0).then_some(v as usize))
}

unsafe fn input_target<'s>(gil: Gil<'_>, slf: *mut ffi::PyObject) -> PyResult<&'s dyn InputTarget> {
    match state_of(slf) {
        State::Input { target: Some(t) } => Ok(&**t),
        _ => Err(ended(gil)),
    }
}

pub(super) unsafe extern "C" fn input_read(slf: *mut ffi::PyObject, args: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let size = size_arg(gil, args, "read")?;
        input_target(gil, slf)?.read(gil, size)
    })
}

pub(super) unsafe extern "C" fn input_readline(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let limit = size_arg(gil, args, "readline")?;
        input_target(gil, slf)?.readline(gil, limit)
    })
}

pub(super) unsafe extern "C" fn input_readlines(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let hint = size_arg(gil, args, "readlines")?;
        let target = input_target(gil, slf)?;
        let lines = gil.list()?;
        let mut total = 0usize;
        loop {
            let line = target.readline(gil, None)?;
            let len = line.as_bytes().map_or(0, <[u8]>::len);
            if len == 0 {
                break;
            }
            gil.list_append(&lines, &line)?;
            total += len;
            if hint.is_some_and(|h| h > 0 && total >= h) {
                break;
            }
        }
        Ok(lines)
    })
}

pub(super) unsafe extern "C" fn input_next(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let line = input_target(gil, slf)?.readline(gil, None)?;
        if line.as_bytes().is_some_and(<[u8]>::is_empty) {
            // End of iteration: NULL with no exception set.
            return Err(Raised);
        }
        Ok(line)
    })
}
