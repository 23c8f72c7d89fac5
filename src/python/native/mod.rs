//! Python objects implemented in Rust, as heap types created per interpreter
//! (`PyType_FromSpec`; pyo3's `#[pyclass]` cannot be used in sub-interpreters):
//! a callable (start_response, write), an input stream (wsgi.input), a
//! line-buffered text log stream (wsgi.errors, sys.stdout/stderr) and
//! `wsgi.file_wrapper`; plus the `ClientDisconnected` exception class.
//!
//! Request-bound objects borrow Rust state through a `Scope`; when the scope
//! ends the borrow is cut, and an app that kept the object gets RuntimeError.

mod file_wrapper;
mod input;
mod log;

use file_wrapper::{file_wrapper_close, file_wrapper_new, file_wrapper_next};
use input::{input_next, input_read, input_readline, input_readlines};
use log::{log_flush, log_write, log_writelines};

use super::object::{ErrorKind, Gil, Obj, PyResult, Raised};
use crate::log::{Level, ServerLog};
use pyo3::ffi;
use std::cell::RefCell;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Positional and keyword arguments of a call into Rust.
pub struct Args<'py> {
    pub positional: Vec<Obj<'py>>,
    pub keywords: Vec<(String, Obj<'py>)>,
}

/// Rust behind a callable object; `tag` tells which of the target's functions it is.
pub trait CallTarget {
    fn call<'py>(&self, gil: Gil<'py>, tag: u32, args: Args<'py>) -> PyResult<Obj<'py>>;
}

/// Rust behind `wsgi.input`.
pub trait InputTarget {
    /// Up to `size` bytes (all that remain when `None`); empty at end of body.
    fn read<'py>(&self, gil: Gil<'py>, size: Option<usize>) -> PyResult<Obj<'py>>;
    /// One line including its `\n`, at most `limit` bytes.
    fn readline<'py>(&self, gil: Gil<'py>, limit: Option<usize>) -> PyResult<Obj<'py>>;
}

/// Rust behind a request-bound log stream: receives whole lines.
pub trait LineTarget {
    fn line(&self, text: &str);
}

/// Where a process-wide log stream writes.
pub enum LogTarget {
    Server(Level, ServerLog),
}

#[allow(private_interfaces)]
pub(super) enum State {
    Callback {
        target: Option<*const (dyn CallTarget + 'static)>,
        tag: u32,
    },
    Input {
        target: Option<*const (dyn InputTarget + 'static)>,
    },
    Log {
        server: Option<(Level, ServerLog)>,
        target: Option<*const (dyn LineTarget + 'static)>,
        buffer: String,
    },
    /// Owns a reference to the file-like object (released in `Drop`, under the GIL).
    FileWrapper {
        filelike: *mut ffi::PyObject,
        blksize: usize,
    },
}

impl Drop for State {
    fn drop(&mut self) {
        if let State::FileWrapper { filelike, .. } = self {
            // SAFETY: states are dropped in tp_dealloc, with the GIL held; we own one reference.
            unsafe { ffi::Py_DECREF(*filelike) };
        }
    }
}

#[repr(C)]
struct NativeObject {
    ob_base: ffi::PyObject,
    state: *mut State,
}

/// The per-interpreter type objects (`*mut PyTypeObject` as addresses).
pub struct NativeTypes {
    callback: usize,
    input: usize,
    log: usize,
    file_wrapper: usize,
    /// `mod_wsgi_rs.ClientDisconnected`, an OSError subclass.
    disconnected: usize,
    /// Environ keys and constants of this interpreter.
    pub cache: super::Cache,
}

fn method(name: &'static CStr, meth: ffi::PyCFunction, flags: c_int) -> ffi::PyMethodDef {
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunction: meth },
        ml_flags: flags,
        ml_doc: std::ptr::null(),
    }
}

fn sentinel() -> ffi::PyMethodDef {
    // SAFETY: an all-zero PyMethodDef terminates a method table.
    unsafe { std::mem::zeroed() }
}

fn make_type(
    gil: Gil<'_>,
    name: &'static CStr,
    mut slots: Vec<ffi::PyType_Slot>,
    methods: Vec<ffi::PyMethodDef>,
) -> PyResult<usize> {
    let _ = gil;
    // Types keep pointers to their method table for ever: leak it (a few per interpreter).
    let methods: &'static mut [ffi::PyMethodDef] = Box::leak(methods.into_boxed_slice());
    slots.push(ffi::PyType_Slot {
        slot: ffi::Py_tp_dealloc,
        pfunc: dealloc as *mut c_void,
    });
    slots.push(ffi::PyType_Slot {
        slot: ffi::Py_tp_methods,
        pfunc: methods.as_mut_ptr() as *mut c_void,
    });
    slots.push(ffi::PyType_Slot::default());
    let mut spec = ffi::PyType_Spec {
        name: name.as_ptr(),
        basicsize: std::mem::size_of::<NativeObject>() as c_int,
        itemsize: 0,
        flags: ffi::Py_TPFLAGS_DEFAULT as std::os::raw::c_uint,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: attached; spec and slots are valid for the call (CPython copies them).
    let ty = unsafe { ffi::PyType_FromSpec(&mut spec) };
    if ty.is_null() {
        Err(Raised)
    } else {
        Ok(ty as usize)
    }
}

impl NativeTypes {
    /// Creates the types in the current interpreter.
    pub fn create(gil: Gil<'_>) -> PyResult<NativeTypes> {
        let callback = make_type(
            gil,
            c"mod_wsgi_rs.Callable",
            vec![ffi::PyType_Slot {
                slot: ffi::Py_tp_call,
                pfunc: callback_call as *mut c_void,
            }],
            vec![sentinel()],
        )?;
        let input = make_type(
            gil,
            c"mod_wsgi_rs.Input",
            vec![
                ffi::PyType_Slot {
                    slot: ffi::Py_tp_iter,
                    pfunc: iter_self as *mut c_void,
                },
                ffi::PyType_Slot {
                    slot: ffi::Py_tp_iternext,
                    pfunc: input_next as *mut c_void,
                },
            ],
            vec![
                method(c"read", input_read, ffi::METH_VARARGS),
                method(c"readline", input_readline, ffi::METH_VARARGS),
                method(c"readlines", input_readlines, ffi::METH_VARARGS),
                method(c"close", noop, ffi::METH_NOARGS),
                sentinel(),
            ],
        )?;
        let log = make_type(
            gil,
            c"mod_wsgi_rs.Log",
            vec![],
            vec![
                method(c"write", log_write, ffi::METH_O),
                method(c"writelines", log_writelines, ffi::METH_O),
                method(c"flush", log_flush, ffi::METH_NOARGS),
                method(c"isatty", return_false, ffi::METH_NOARGS),
                method(c"readable", return_false, ffi::METH_NOARGS),
                method(c"seekable", return_false, ffi::METH_NOARGS),
                method(c"writable", return_true, ffi::METH_NOARGS),
                method(c"close", noop, ffi::METH_NOARGS),
                sentinel(),
            ],
        )?;
        let file_wrapper = make_type(
            gil,
            c"mod_wsgi_rs.FileWrapper",
            vec![
                ffi::PyType_Slot {
                    slot: ffi::Py_tp_new,
                    pfunc: file_wrapper_new as *mut c_void,
                },
                ffi::PyType_Slot {
                    slot: ffi::Py_tp_iter,
                    pfunc: iter_self as *mut c_void,
                },
                ffi::PyType_Slot {
                    slot: ffi::Py_tp_iternext,
                    pfunc: file_wrapper_next as *mut c_void,
                },
            ],
            vec![method(c"close", file_wrapper_close, ffi::METH_NOARGS), sentinel()],
        )?;
        // SAFETY: attached; creates a new exception class deriving from OSError.
        let disconnected = unsafe {
            ffi::PyErr_NewException(
                c"mod_wsgi_rs.ClientDisconnected".as_ptr(),
                ffi::PyExc_OSError,
                std::ptr::null_mut(),
            )
        };
        if disconnected.is_null() {
            return Err(Raised);
        }
        Ok(NativeTypes {
            callback,
            input,
            log,
            file_wrapper,
            disconnected: disconnected as usize,
            cache: super::Cache::default(),
        })
    }

    /// The `wsgi.file_wrapper` callable (the FileWrapper type itself).
    pub fn file_wrapper<'py>(&self, gil: Gil<'py>) -> Obj<'py> {
        // SAFETY: attached; the type object lives as long as the interpreter.
        unsafe { Obj::from_borrowed(gil, self.file_wrapper as *mut ffi::PyObject) }
    }

    /// For a FileWrapper made by this interpreter: its file-like object and block size.
    pub fn file_wrapper_parts<'py>(&self, obj: &Obj<'py>) -> Option<(Obj<'py>, usize)> {
        // SAFETY: attached (obj holds the token); the type check makes the state a FileWrapper.
        unsafe {
            if ffi::Py_TYPE(obj.as_ptr()) as usize != self.file_wrapper {
                return None;
            }
            match state_of(obj.as_ptr()) {
                State::FileWrapper { filelike, blksize } => Some((Obj::from_borrowed(obj.gil(), *filelike), *blksize)),
                _ => None,
            }
        }
    }

    /// Raises `ClientDisconnected(message)`.
    pub fn raise_disconnected(&self, gil: Gil<'_>, message: &str) -> Raised {
        let _ = gil;
        let message = super::object::cstring(message);
        // SAFETY: attached; the class is a valid exception type of this interpreter.
        unsafe { ffi::PyErr_SetString(self.disconnected as *mut ffi::PyObject, message.as_ptr()) };
        Raised
    }

    /// True if `exc` is a `ClientDisconnected`.
    pub fn is_disconnect(&self, exc: &super::PyException<'_>) -> bool {
        exc.is_instance_of(self.disconnected)
    }
}

pub(super) fn alloc<'py>(gil: Gil<'py>, ty: usize, state: State) -> PyResult<Obj<'py>> {
    // SAFETY: attached; ty is one of our heap types, whose instances are NativeObject.
    unsafe {
        let obj = Obj::from_owned(gil, ffi::PyType_GenericAlloc(ty as *mut ffi::PyTypeObject, 0))?;
        (*(obj.as_ptr() as *mut NativeObject)).state = Box::into_raw(Box::new(state));
        Ok(obj)
    }
}

/// A process-wide log stream (sys.stdout / sys.stderr).
pub fn new_log<'py>(gil: Gil<'py>, types: &NativeTypes, target: LogTarget) -> PyResult<Obj<'py>> {
    let LogTarget::Server(level, log) = target;
    alloc(
        gil,
        types.log,
        State::Log {
            server: Some((level, log)),
            target: None,
            buffer: String::new(),
        },
    )
}

/// Request-bound objects; dropping the scope detaches them from the Rust
/// state they borrow (flushing a pending partial log line first).
pub struct Scope<'py, 'a> {
    gil: Gil<'py>,
    objects: RefCell<Vec<Obj<'py>>>,
    _borrows: PhantomData<&'a ()>,
}

impl<'py, 'a> Scope<'py, 'a> {
    pub fn new(gil: Gil<'py>) -> Self {
        Scope {
            gil,
            objects: RefCell::new(Vec::new()),
            _borrows: PhantomData,
        }
    }

    fn bind(&self, ty: usize, state: State) -> PyResult<Obj<'py>> {
        let obj = alloc(self.gil, ty, state)?;
        self.objects.borrow_mut().push(obj.clone());
        Ok(obj)
    }

    pub fn callable(&self, types: &NativeTypes, target: &'a dyn CallTarget, tag: u32) -> PyResult<Obj<'py>> {
        // SAFETY (lifetime erasure): the pointer is cleared in Drop, before 'a ends.
        let target: *const (dyn CallTarget + 'a) = target;
        let target: *const (dyn CallTarget + 'static) = unsafe { std::mem::transmute(target) };
        self.bind(
            types.callback,
            State::Callback {
                target: Some(target),
                tag,
            },
        )
    }

    pub fn input(&self, types: &NativeTypes, target: &'a dyn InputTarget) -> PyResult<Obj<'py>> {
        let target: *const (dyn InputTarget + 'a) = target;
        // SAFETY (lifetime erasure): cleared in Drop, before 'a ends.
        let target: *const (dyn InputTarget + 'static) = unsafe { std::mem::transmute(target) };
        self.bind(types.input, State::Input { target: Some(target) })
    }

    pub fn log(&self, types: &NativeTypes, target: &'a dyn LineTarget) -> PyResult<Obj<'py>> {
        let target: *const (dyn LineTarget + 'a) = target;
        // SAFETY (lifetime erasure): cleared in Drop, before 'a ends.
        let target: *const (dyn LineTarget + 'static) = unsafe { std::mem::transmute(target) };
        self.bind(
            types.log,
            State::Log {
                server: None,
                target: Some(target),
                buffer: String::new(),
            },
        )
    }
}

impl Drop for Scope<'_, '_> {
    fn drop(&mut self) {
        for obj in self.objects.borrow_mut().drain(..) {
            // SAFETY: attached (Obj holds the token); every bound object is a NativeObject
            // whose state box is alive until its dealloc.
            let state = unsafe { &mut *(*(obj.as_ptr() as *mut NativeObject)).state };
            match state {
                State::Callback { target, .. } => *target = None,
                State::Input { target } => *target = None,
                State::Log { target, buffer, .. } => {
                    if let Some(t) = target.take() {
                        if !buffer.is_empty() {
                            // SAFETY: the target is still borrowed ('a has not ended).
                            unsafe { (*t).line(buffer) };
                            buffer.clear();
                        }
                    }
                }
                State::FileWrapper { .. } => {}
            }
        }
    }
}

// ---- slot and method implementations ----

/// Runs a slot body: panics become SystemError, results become owned pointers.
pub(super) fn slot<'py>(gil: Gil<'py>, body: impl FnOnce() -> PyResult<Obj<'py>>) -> *mut ffi::PyObject {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(Raised)) => std::ptr::null_mut(),
        Err(_) => {
            gil.raise(
                ErrorKind::System,
                "internal error in mod_wsgi_rs (Rust panic); see the error log",
            );
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `slf` is a live instance of one of our types and the thread is attached.
pub(super) unsafe fn state_of<'s>(slf: *mut ffi::PyObject) -> &'s mut State {
    &mut *(*(slf as *mut NativeObject)).state
}

pub(super) fn ended(gil: Gil<'_>) -> Raised {
    gil.raise(ErrorKind::Runtime, "this WSGI request has already ended")
}

unsafe extern "C" fn dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: called by CPython once the refcount hits zero; the state box was
    // made in `alloc` (or is NULL if allocation of the box never happened).
    let obj = slf as *mut NativeObject;
    if !(*obj).state.is_null() {
        drop(Box::from_raw((*obj).state));
    }
    let ty = ffi::Py_TYPE(slf);
    let free: ffi::freefunc = std::mem::transmute(ffi::PyType_GetSlot(ty, ffi::Py_tp_free));
    free(slf as *mut c_void);
    ffi::Py_DECREF(ty as *mut ffi::PyObject);
}

pub(super) unsafe fn collect_args<'py>(
    gil: Gil<'py>,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> Args<'py> {
    // SAFETY (caller): args is a tuple and kwargs NULL or a dict, both borrowed.
    let tuple = Obj::from_borrowed(gil, args);
    let positional = (0..tuple.sequence_len())
        .filter_map(|i| tuple.sequence_item(i))
        .collect();
    let mut keywords = Vec::new();
    if !kwargs.is_null() {
        let (mut pos, mut key, mut value) = (0, std::ptr::null_mut(), std::ptr::null_mut());
        while ffi::PyDict_Next(kwargs, &mut pos, &mut key, &mut value) != 0 {
            let key = Obj::from_borrowed(gil, key);
            keywords.push((
                key.as_str().unwrap_or_default().to_string(),
                Obj::from_borrowed(gil, value),
            ));
        }
    }
    Args { positional, keywords }
}

unsafe extern "C" fn callback_call(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let State::Callback { target, tag } = state_of(slf) else {
            return Err(ended(gil));
        };
        let (Some(target), tag) = (*target, *tag) else {
            return Err(ended(gil));
        };
        (*target).call(gil, tag, collect_args(gil, args, kwargs))
    })
}

pub(super) unsafe extern "C" fn iter_self(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    ffi::Py_INCREF(slf);
    slf
}

unsafe extern "C" fn noop(_slf: *mut ffi::PyObject, _args: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let none = ffi::Py_None();
    ffi::Py_INCREF(none);
    none
}

unsafe extern "C" fn return_false(_slf: *mut ffi::PyObject, _args: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let v = ffi::Py_False();
    ffi::Py_INCREF(v);
    v
}

unsafe extern "C" fn return_true(_slf: *mut ffi::PyObject, _args: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let v = ffi::Py_True();
    ffi::Py_INCREF(v);
    v
}
