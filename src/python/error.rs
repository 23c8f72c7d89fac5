//! Taking a raised exception out of the error indicator and formatting it for
//! Apache's error log (never `PyErr_Print`: it exits on SystemExit and pins
//! the request's objects in `sys.last_*`).

use super::object::{Gil, Obj, Raised};
use pyo3::ffi;

/// A fetched, normalised exception.
pub struct PyException<'py> {
    kind: Obj<'py>,
    value: Obj<'py>,
    traceback: Option<Obj<'py>>,
}

impl<'py> PyException<'py> {
    /// Takes the current exception; `None` if none is set.
    pub fn take(gil: Gil<'py>) -> Option<PyException<'py>> {
        // SAFETY: attached; PyErr_Fetch hands us new references (or NULL), which we own.
        unsafe {
            let (mut t, mut v, mut tb) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
            ffi::PyErr_Fetch(&mut t, &mut v, &mut tb);
            if t.is_null() {
                return None;
            }
            ffi::PyErr_NormalizeException(&mut t, &mut v, &mut tb);
            if v.is_null() {
                ffi::Py_INCREF(ffi::Py_None());
                v = ffi::Py_None();
            }
            if !tb.is_null() {
                ffi::PyException_SetTraceback(v, tb);
            }
            Some(PyException {
                kind: Obj::from_owned(gil, t).ok()?,
                value: Obj::from_owned(gil, v).ok()?,
                traceback: Obj::from_owned(gil, tb).ok(),
            })
        }
    }

    /// Takes the exception that `Raised` stands for.
    pub fn from_raised(gil: Gil<'py>, _raised: Raised) -> PyException<'py> {
        PyException::take(gil).unwrap_or_else(|| {
            // A callee returned failure without setting an exception: report that instead.
            gil.raise(super::ErrorKind::System, "error return without exception set");
            PyException::take(gil).expect("exception just set")
        })
    }

    /// True if the exception is an instance of the class at address `class`.
    pub(crate) fn is_instance_of(&self, class: usize) -> bool {
        // SAFETY: attached; class is a live exception class.
        unsafe { ffi::PyErr_GivenExceptionMatches(self.kind.as_ptr(), class as *mut ffi::PyObject) != 0 }
    }

    /// The full traceback text (`traceback.format_exception`), falling back to `repr`.
    pub fn format(&self) -> String {
        let gil = self.value.gil();
        let formatted = (|| {
            let traceback = gil.import("traceback")?;
            let tb = self.traceback.clone().unwrap_or_else(|| gil.none());
            let lines = traceback.call_method("format_exception", &[&self.kind, &self.value, &tb])?;
            let joined = gil.str("")?.call_method("join", &[&lines])?;
            Ok::<String, Raised>(joined.as_str().unwrap_or_default().trim_end().to_string())
        })();
        match formatted {
            Ok(text) => text,
            Err(Raised) => {
                // SAFETY: attached; drop the formatting failure.
                unsafe { ffi::PyErr_Clear() };
                format!("{}: {}", self.kind.repr(), self.value.repr())
            }
        }
    }
}
