//! Log stream methods (wsgi.errors, sys.stdout/stderr): line-buffered text
//! handed to Apache's error log one line at a time.

use super::{ended, slot, state_of, State};
use crate::python::object::{ErrorKind, Gil, Obj, PyResult};
use pyo3::ffi;

/// Emits every complete line in `buffer`; with `all`, the remainder too.
fn emit_lines(state: &mut State, all: bool) {
    let State::Log { server, target, buffer } = state else {
        return;
    };
    let mut emit = |line: &str| {
        if let Some(t) = target {
            // SAFETY: the target is live while set (Scope clears it before it ends).
            unsafe { (**t).line(line) };
        } else if let Some((level, log)) = server {
            log(*level, line);
        }
    };
    while let Some(pos) = buffer.find('\n') {
        emit(&buffer[..pos]);
        buffer.drain(..=pos);
    }
    if all && !buffer.is_empty() {
        emit(buffer);
        buffer.clear();
    }
}

unsafe fn log_append(gil: Gil<'_>, slf: *mut ffi::PyObject, text: *mut ffi::PyObject) -> PyResult<()> {
    let text = Obj::from_borrowed(gil, text);
    let Some(s) = text.as_str() else {
        return Err(gil.raise(
            ErrorKind::Type,
            &format!("write() argument must be str, not {}", text.type_name()),
        ));
    };
    let state = state_of(slf);
    match state {
        State::Log {
            server: None,
            target: None,
            ..
        } => return Err(ended(gil)),
        State::Log { buffer, .. } => buffer.push_str(s),
        _ => return Err(ended(gil)),
    }
    emit_lines(state, false);
    Ok(())
}

pub(super) unsafe extern "C" fn log_write(slf: *mut ffi::PyObject, text: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        log_append(gil, slf, text)?;
        let len = ffi::PyUnicode_GetLength(text);
        gil.int(len as i64)
    })
}

pub(super) unsafe extern "C" fn log_writelines(
    slf: *mut ffi::PyObject,
    lines: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let iter = Obj::from_borrowed(gil, lines).iter()?;
        while let Some(item) = iter.next()? {
            log_append(gil, slf, item.as_ptr())?;
        }
        Ok(gil.none())
    })
}

pub(super) unsafe extern "C" fn log_flush(slf: *mut ffi::PyObject, _args: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        emit_lines(state_of(slf), true);
        Ok(gil.none())
    })
}
