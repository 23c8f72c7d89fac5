//! Owned Python references and the GIL token. `Obj<'py>` can exist only while
//! the thread is attached (it borrows a `Gil<'py>`), so its Drop may decref.

use pyo3::ffi;
use std::ffi::CString;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::ptr::NonNull;

/// Proof that this thread holds the GIL (of some interpreter) for `'py`.
#[derive(Clone, Copy)]
pub struct Gil<'py>(PhantomData<&'py ()>, PhantomData<*mut ()>);

impl Gil<'_> {
    /// # Safety
    /// The calling thread must be attached for the token's whole lifetime.
    pub(crate) unsafe fn assume<'py>() -> Gil<'py> {
        Gil(PhantomData, PhantomData)
    }
}

/// A Python exception is set in this thread's error indicator.
#[derive(Debug)]
pub struct Raised;
pub type PyResult<T> = Result<T, Raised>;

/// Python's built-in exception classes we raise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Runtime,
    Type,
    Value,
    OS,
    System,
}

impl ErrorKind {
    fn class(self) -> *mut ffi::PyObject {
        // SAFETY: the PyExc_* statics are initialised by the interpreter and never change.
        unsafe {
            match self {
                ErrorKind::Runtime => ffi::PyExc_RuntimeError,
                ErrorKind::Type => ffi::PyExc_TypeError,
                ErrorKind::Value => ffi::PyExc_ValueError,
                ErrorKind::OS => ffi::PyExc_OSError,
                ErrorKind::System => ffi::PyExc_SystemError,
            }
        }
    }
}

/// Why `Gil::bytes_filled` produced nothing.
pub enum FillError {
    Raised(Raised),
    Io(std::io::Error),
}

/// A strong reference, released on drop.
pub struct Obj<'py> {
    ptr: NonNull<ffi::PyObject>,
    gil: Gil<'py>,
}

impl<'py> Obj<'py> {
    /// Takes ownership of a new reference; NULL means an exception is set.
    ///
    /// # Safety
    /// `ptr` is NULL or a new (owned) reference, and the thread is attached.
    pub(crate) unsafe fn from_owned(gil: Gil<'py>, ptr: *mut ffi::PyObject) -> PyResult<Obj<'py>> {
        NonNull::new(ptr).map(|ptr| Obj { ptr, gil }).ok_or(Raised)
    }

    /// # Safety
    /// `ptr` is a valid borrowed reference and the thread is attached.
    pub(crate) unsafe fn from_borrowed(gil: Gil<'py>, ptr: *mut ffi::PyObject) -> Obj<'py> {
        ffi::Py_INCREF(ptr);
        Obj {
            ptr: NonNull::new_unchecked(ptr),
            gil,
        }
    }

    /// A new reference to the same object under another proof of attachment
    /// (e.g. inside a callback from Python while the outer call is running).
    pub fn rebind<'g>(&self, gil: Gil<'g>) -> Obj<'g> {
        // SAFETY: `gil` proves this thread is attached; the object is alive (self holds it).
        unsafe { Obj::from_borrowed(gil, self.as_ptr()) }
    }

    pub fn gil(&self) -> Gil<'py> {
        self.gil
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::PyObject {
        self.ptr.as_ptr()
    }

    pub(crate) fn into_ptr(self) -> *mut ffi::PyObject {
        let ptr = self.ptr.as_ptr();
        std::mem::forget(self);
        ptr
    }

    pub fn getattr(&self, name: &str) -> PyResult<Obj<'py>> {
        let name = cstring(name);
        // SAFETY: attached (self borrows the GIL token); name is NUL-terminated.
        unsafe { Obj::from_owned(self.gil, ffi::PyObject_GetAttrString(self.as_ptr(), name.as_ptr())) }
    }

    /// `getattr` that maps a missing attribute to `None` (other errors stay errors).
    pub fn getattr_opt(&self, name: &str) -> PyResult<Option<Obj<'py>>> {
        self.lookup_attr(&self.gil.str(name)?)
    }

    /// `getattr_opt` with the name as a `str` (one from the interpreter's
    /// cache is interned, which also lets CPython's type attribute cache
    /// serve it). A missing attribute costs no exception object: since 3.10
    /// an AttributeError is built with `name` and `obj` set, which for the
    /// `close` of every list a response returns was ~1 µs.
    pub fn lookup_attr(&self, name: &Obj<'py>) -> PyResult<Option<Obj<'py>>> {
        let mut found = std::ptr::null_mut();
        // SAFETY: attached; name is a str; on 1 `found` is a new reference,
        // on 0 nothing is set, on -1 an exception is.
        match unsafe { get_optional_attr(self.as_ptr(), name.as_ptr(), &mut found) } {
            // SAFETY: attached; `found` is a new, non-null reference.
            1 => unsafe { Obj::from_owned(self.gil, found) }.map(Some),
            0 => Ok(None),
            _ => Err(Raised),
        }
    }

    pub fn setattr(&self, name: &str, value: &Obj<'py>) -> PyResult<()> {
        let name = cstring(name);
        // SAFETY: attached; both references are valid.
        check(unsafe { ffi::PyObject_SetAttrString(self.as_ptr(), name.as_ptr(), value.as_ptr()) })
    }

    pub fn call(&self, args: &[&Obj<'py>]) -> PyResult<Obj<'py>> {
        let mut argv: Vec<*mut ffi::PyObject> = args.iter().map(|a| a.as_ptr()).collect();
        // SAFETY: attached; argv holds `args.len()` valid borrowed references.
        unsafe {
            Obj::from_owned(
                self.gil,
                ffi::PyObject_Vectorcall(self.as_ptr(), argv.as_mut_ptr(), argv.len(), std::ptr::null_mut()),
            )
        }
    }

    pub fn call_method(&self, name: &str, args: &[&Obj<'py>]) -> PyResult<Obj<'py>> {
        self.getattr(name)?.call(args)
    }

    /// `iter(self)`.
    pub fn iter(&self) -> PyResult<Obj<'py>> {
        // SAFETY: attached.
        unsafe { Obj::from_owned(self.gil, ffi::PyObject_GetIter(self.as_ptr())) }
    }

    /// `next(self)` on an iterator; `Ok(None)` when exhausted.
    pub fn next(&self) -> PyResult<Option<Obj<'py>>> {
        // SAFETY: attached; self is an iterator (PyObject_GetIter result).
        let item = unsafe { ffi::PyIter_Next(self.as_ptr()) };
        if item.is_null() {
            // SAFETY: attached.
            if unsafe { ffi::PyErr_Occurred() }.is_null() {
                Ok(None)
            } else {
                Err(Raised)
            }
        } else {
            // SAFETY: PyIter_Next returned a new reference.
            Ok(Some(unsafe { Obj::from_owned(self.gil, item) }?))
        }
    }

    /// The bytes of a `bytes` object (or subclass), borrowed from it.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        // SAFETY: attached; the buffer lives as long as the object, which `&self` keeps alive.
        unsafe {
            if ffi::PyBytes_Check(self.as_ptr()) == 0 {
                return None;
            }
            let data = ffi::PyBytes_AsString(self.as_ptr()) as *const u8;
            let len = ffi::PyBytes_Size(self.as_ptr()) as usize;
            Some(std::slice::from_raw_parts(data, len))
        }
    }

    /// The text of a `str`, if it is one and is valid UTF-8 (no lone surrogates).
    pub fn as_str(&self) -> Option<&str> {
        // SAFETY: attached; the UTF-8 buffer is cached in the object and lives as long as it.
        unsafe {
            if ffi::PyUnicode_Check(self.as_ptr()) == 0 {
                return None;
            }
            let mut len: ffi::Py_ssize_t = 0;
            let data = ffi::PyUnicode_AsUTF8AndSize(self.as_ptr(), &mut len);
            if data.is_null() {
                ffi::PyErr_Clear();
                return None;
            }
            std::str::from_utf8(std::slice::from_raw_parts(data as *const u8, len as usize)).ok()
        }
    }

    pub fn is_str(&self) -> bool {
        // SAFETY: attached.
        unsafe { ffi::PyUnicode_Check(self.as_ptr()) != 0 }
    }

    pub fn is_none(&self) -> bool {
        // SAFETY: Py_None is a static singleton.
        self.as_ptr() == unsafe { ffi::Py_None() }
    }

    pub fn is_list_or_tuple(&self) -> bool {
        // SAFETY: attached.
        unsafe { ffi::PyList_Check(self.as_ptr()) != 0 || ffi::PyTuple_Check(self.as_ptr()) != 0 }
    }

    pub fn is_list(&self) -> bool {
        // SAFETY: attached.
        unsafe { ffi::PyList_Check(self.as_ptr()) != 0 }
    }

    pub fn is_tuple(&self) -> bool {
        // SAFETY: attached.
        unsafe { ffi::PyTuple_Check(self.as_ptr()) != 0 }
    }

    /// `len()` of a list or tuple (0 for anything else).
    pub fn sequence_len(&self) -> usize {
        // SAFETY: attached; the checks select the matching size function.
        unsafe {
            if ffi::PyList_Check(self.as_ptr()) != 0 {
                ffi::PyList_Size(self.as_ptr()) as usize
            } else if ffi::PyTuple_Check(self.as_ptr()) != 0 {
                ffi::PyTuple_Size(self.as_ptr()) as usize
            } else {
                0
            }
        }
    }

    /// Item `i` of a list or tuple (checked by the caller with `sequence_len`).
    pub fn sequence_item(&self, i: usize) -> Option<Obj<'py>> {
        // SAFETY: attached; Get*Item return borrowed references (or NULL when out of range).
        unsafe {
            let item = if ffi::PyList_Check(self.as_ptr()) != 0 {
                ffi::PyList_GetItem(self.as_ptr(), i as ffi::Py_ssize_t)
            } else {
                ffi::PyTuple_GetItem(self.as_ptr(), i as ffi::Py_ssize_t)
            };
            if item.is_null() {
                ffi::PyErr_Clear();
                None
            } else {
                Some(Obj::from_borrowed(self.gil, item))
            }
        }
    }

    /// `repr(self)` as Rust text, for log lines.
    pub fn repr(&self) -> String {
        // SAFETY: attached.
        match unsafe { Obj::from_owned(self.gil, ffi::PyObject_Repr(self.as_ptr())) } {
            Ok(r) => r.as_str().unwrap_or("<unprintable>").to_string(),
            Err(Raised) => {
                // SAFETY: attached.
                unsafe { ffi::PyErr_Clear() };
                "<repr failed>".to_string()
            }
        }
    }

    /// The value of an `int` that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        // SAFETY: attached; the check makes PyLong_AsLongLong valid; overflow clears its error.
        unsafe {
            if ffi::PyLong_Check(self.as_ptr()) == 0 {
                return None;
            }
            let v = ffi::PyLong_AsLongLong(self.as_ptr());
            if v == -1 && !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear();
                return None;
            }
            Some(v)
        }
    }

    pub fn type_name(&self) -> String {
        // SAFETY: attached; every object has a type with a NUL-terminated tp_name.
        unsafe {
            let ty = ffi::Py_TYPE(self.as_ptr());
            std::ffi::CStr::from_ptr((*ty).tp_name).to_string_lossy().into_owned()
        }
    }

    /// Sets `self[key] = value` on a dict.
    pub fn dict_set(&self, key: &Obj<'py>, value: &Obj<'py>) -> PyResult<()> {
        // SAFETY: attached; self is a dict (created by `Gil::dict`).
        check(unsafe { ffi::PyDict_SetItem(self.as_ptr(), key.as_ptr(), value.as_ptr()) })
    }

    /// `self[key]` of a dict, without an exception when absent.
    pub fn dict_get(&self, key: &Obj<'py>) -> Option<Obj<'py>> {
        // SAFETY: attached; self is a dict; the result is borrowed (str keys
        // hash without failing).
        unsafe {
            let v = ffi::PyDict_GetItem(self.as_ptr(), key.as_ptr());
            (!v.is_null()).then(|| Obj::from_borrowed(self.gil, v))
        }
    }

    pub fn dict_get_str(&self, key: &str) -> Option<Obj<'py>> {
        let key = cstring(key);
        // SAFETY: attached; self is a dict; the result is borrowed.
        unsafe {
            let v = ffi::PyDict_GetItemString(self.as_ptr(), key.as_ptr());
            (!v.is_null()).then(|| Obj::from_borrowed(self.gil, v))
        }
    }
}

impl Clone for Obj<'_> {
    fn clone(&self) -> Self {
        // SAFETY: attached (the token is alive); ptr is valid.
        unsafe { Obj::from_borrowed(self.gil, self.as_ptr()) }
    }
}

impl Drop for Obj<'_> {
    fn drop(&mut self) {
        // SAFETY: the Gil token proves the thread is attached; we own one reference.
        unsafe { ffi::Py_DECREF(self.ptr.as_ptr()) }
    }
}

fn check(rc: std::os::raw::c_int) -> PyResult<()> {
    if rc < 0 {
        Err(Raised)
    } else {
        Ok(())
    }
}

#[cfg(Py_3_13)]
use ffi::PyObject_GetOptionalAttr as get_optional_attr;

#[cfg(not(Py_3_13))]
extern "C" {
    /// CPython 3.7-3.12's name for what 3.13 made public as
    /// `PyObject_GetOptionalAttr` (pyo3's compat version of it raises and
    /// clears the AttributeError, the cost it exists to avoid).
    #[link_name = "_PyObject_LookupAttr"]
    fn get_optional_attr(obj: *mut ffi::PyObject, name: *mut ffi::PyObject, result: *mut *mut ffi::PyObject) -> c_int;
}

/// A C string for Python APIs; interior NULs (never in our own names) are cut.
pub(crate) fn cstring(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|e| {
        let end = e.nul_position();
        CString::new(&s[..end]).unwrap_or_default()
    })
}

impl<'py> Gil<'py> {
    pub fn str(self, s: &str) -> PyResult<Obj<'py>> {
        // SAFETY: attached; the pointer/length pair describes valid UTF-8.
        unsafe {
            Obj::from_owned(
                self,
                ffi::PyUnicode_FromStringAndSize(s.as_ptr() as *const c_char, s.len() as ffi::Py_ssize_t),
            )
        }
    }

    /// The interned `str` equal to `s` (`s` itself if it is the first).
    pub fn intern(self, s: Obj<'py>) -> PyResult<Obj<'py>> {
        let mut ptr = s.into_ptr();
        // SAFETY: attached; ptr is an owned reference to an exact str, which
        // InternInPlace replaces by an owned reference to the interned one.
        unsafe {
            ffi::PyUnicode_InternInPlace(&mut ptr);
            Obj::from_owned(self, ptr)
        }
    }

    /// A native `str` from bytes decoded as latin-1 (PEP 3333's rule for environ values).
    pub fn str_latin1(self, b: &[u8]) -> PyResult<Obj<'py>> {
        // SAFETY: attached; latin-1 decoding accepts any bytes.
        unsafe {
            Obj::from_owned(
                self,
                ffi::PyUnicode_DecodeLatin1(
                    b.as_ptr() as *const c_char,
                    b.len() as ffi::Py_ssize_t,
                    std::ptr::null(),
                ),
            )
        }
    }

    pub fn bytes(self, b: &[u8]) -> PyResult<Obj<'py>> {
        // SAFETY: attached; the slice is valid for its length.
        unsafe {
            Obj::from_owned(
                self,
                ffi::PyBytes_FromStringAndSize(b.as_ptr() as *const c_char, b.len() as ffi::Py_ssize_t),
            )
        }
    }

    /// A new `bytes` of at most `len` bytes written in place by `fill`, which
    /// runs with the GIL released (the object is not visible to any other
    /// thread yet) and returns how many bytes it wrote.
    pub fn bytes_filled(
        self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
    ) -> Result<Obj<'py>, FillError> {
        extern "C" {
            fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> std::os::raw::c_int;
        }
        // SAFETY: attached; a NULL source makes an uninitialised bytes object of `len`.
        let obj = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), len as ffi::Py_ssize_t) };
        if obj.is_null() {
            return Err(FillError::Raised(Raised));
        }
        // SAFETY: the buffer belongs to the new, unshared object for `len` bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(obj) as *mut u8, len) };
        let filled = fill(buf);
        let mut obj = obj;
        match filled {
            Ok(n) if n == len => {}
            // SAFETY: obj is ours alone (refcount 1); on failure it is freed and set to NULL.
            Ok(n) => unsafe {
                if _PyBytes_Resize(&mut obj, n.min(len) as ffi::Py_ssize_t) < 0 {
                    return Err(FillError::Raised(Raised));
                }
            },
            Err(e) => {
                // SAFETY: drops our only reference.
                unsafe { ffi::Py_DECREF(obj) };
                return Err(FillError::Io(e));
            }
        }
        // SAFETY: obj is a new reference.
        unsafe { Obj::from_owned(self, obj) }.map_err(FillError::Raised)
    }

    pub fn int(self, v: i64) -> PyResult<Obj<'py>> {
        // SAFETY: attached.
        unsafe { Obj::from_owned(self, ffi::PyLong_FromLongLong(v)) }
    }

    pub fn float(self, v: f64) -> PyResult<Obj<'py>> {
        // SAFETY: attached.
        unsafe { Obj::from_owned(self, ffi::PyFloat_FromDouble(v)) }
    }

    pub fn bool(self, v: bool) -> Obj<'py> {
        // SAFETY: Py_True/Py_False are immortal-enough singletons; we take a new reference.
        unsafe { Obj::from_borrowed(self, if v { ffi::Py_True() } else { ffi::Py_False() }) }
    }

    pub fn none(self) -> Obj<'py> {
        // SAFETY: Py_None is a singleton; we take a new reference.
        unsafe { Obj::from_borrowed(self, ffi::Py_None()) }
    }

    pub fn tuple(self, items: &[&Obj<'py>]) -> PyResult<Obj<'py>> {
        // SAFETY: attached; PyTuple_SetItem steals the new reference made by clone().into_ptr().
        unsafe {
            let t = Obj::from_owned(self, ffi::PyTuple_New(items.len() as ffi::Py_ssize_t))?;
            for (i, item) in items.iter().enumerate() {
                ffi::PyTuple_SetItem(t.as_ptr(), i as ffi::Py_ssize_t, (*item).clone().into_ptr());
            }
            Ok(t)
        }
    }

    pub fn list(self) -> PyResult<Obj<'py>> {
        // SAFETY: attached.
        unsafe { Obj::from_owned(self, ffi::PyList_New(0)) }
    }

    pub fn list_append(self, list: &Obj<'py>, item: &Obj<'py>) -> PyResult<()> {
        // SAFETY: attached; list is a list.
        check(unsafe { ffi::PyList_Append(list.as_ptr(), item.as_ptr()) })
    }

    pub fn dict(self) -> PyResult<Obj<'py>> {
        // SAFETY: attached.
        unsafe { Obj::from_owned(self, ffi::PyDict_New()) }
    }

    pub fn import(self, name: &str) -> PyResult<Obj<'py>> {
        let name = cstring(name);
        // SAFETY: attached.
        unsafe { Obj::from_owned(self, ffi::PyImport_ImportModule(name.as_ptr())) }
    }

    /// Sets a Python exception and returns the marker to propagate.
    pub fn raise(self, kind: ErrorKind, message: &str) -> Raised {
        let message = cstring(message);
        // SAFETY: attached; the class is a valid exception type.
        unsafe { ffi::PyErr_SetString(kind.class(), message.as_ptr()) };
        Raised
    }

    /// Raises `OSError(errno, message)`-like text for an I/O failure.
    pub fn raise_io(self, err: &std::io::Error) -> Raised {
        self.raise(ErrorKind::OS, &err.to_string())
    }

    pub fn error_occurred(self) -> bool {
        // SAFETY: attached.
        !unsafe { ffi::PyErr_Occurred() }.is_null()
    }

    /// Clears the current exception if it is an OSError or ValueError
    /// (e.g. io.UnsupportedOperation) and says whether it did.
    pub fn take_os_or_value_error(self) -> bool {
        // SAFETY: attached.
        unsafe {
            let matches = ffi::PyErr_ExceptionMatches(ffi::PyExc_OSError) != 0
                || ffi::PyErr_ExceptionMatches(ffi::PyExc_ValueError) != 0;
            if matches {
                ffi::PyErr_Clear();
            }
            matches
        }
    }

    /// Re-raises an exception given as `(type, value, traceback)`, as `exc_info` carries it.
    pub fn reraise(self, exc_info: &Obj<'py>) -> Raised {
        let parts: Vec<Obj<'py>> = (0..3).filter_map(|i| exc_info.sequence_item(i)).collect();
        if parts.len() != 3 {
            return self.raise(ErrorKind::Type, "exc_info must be a (type, value, traceback) tuple");
        }
        // SAFETY: attached; PyErr_Restore steals the three references we pass.
        unsafe {
            let tb = if parts[2].is_none() {
                std::ptr::null_mut()
            } else {
                parts[2].clone().into_ptr()
            };
            ffi::PyErr_Restore(parts[0].clone().into_ptr(), parts[1].clone().into_ptr(), tb);
        }
        Raised
    }
}
