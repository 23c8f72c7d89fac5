//! Python objects implemented in Rust, as heap types created per interpreter
//! (`PyType_FromSpec`; pyo3's `#[pyclass]` cannot be used in sub-interpreters):
//! a callable (start_response, write), an input stream (wsgi.input) and a
//! line-buffered text log stream (wsgi.errors, sys.stdout/stderr).
//!
//! Request-bound objects borrow Rust state through a `Scope`; when the scope
//! ends the borrow is cut, and an app that kept the object gets RuntimeError.

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

enum State {
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
        Ok(NativeTypes { callback, input, log })
    }
}

fn alloc<'py>(gil: Gil<'py>, ty: usize, state: State) -> PyResult<Obj<'py>> {
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
            }
        }
    }
}

// ---- slot and method implementations ----

/// Runs a slot body: panics become SystemError, results become owned pointers.
fn slot<'py>(gil: Gil<'py>, body: impl FnOnce() -> PyResult<Obj<'py>>) -> *mut ffi::PyObject {
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
unsafe fn state_of<'s>(slf: *mut ffi::PyObject) -> &'s mut State {
    &mut *(*(slf as *mut NativeObject)).state
}

fn ended(gil: Gil<'_>) -> Raised {
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

unsafe fn collect_args<'py>(gil: Gil<'py>, args: *mut ffi::PyObject, kwargs: *mut ffi::PyObject) -> Args<'py> {
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

unsafe extern "C" fn input_read(slf: *mut ffi::PyObject, args: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let size = size_arg(gil, args, "read")?;
        input_target(gil, slf)?.read(gil, size)
    })
}

unsafe extern "C" fn input_readline(slf: *mut ffi::PyObject, args: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let limit = size_arg(gil, args, "readline")?;
        input_target(gil, slf)?.readline(gil, limit)
    })
}

unsafe extern "C" fn input_readlines(slf: *mut ffi::PyObject, args: *mut ffi::PyObject) -> *mut ffi::PyObject {
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

unsafe extern "C" fn input_next(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
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

unsafe extern "C" fn iter_self(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
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

unsafe extern "C" fn log_write(slf: *mut ffi::PyObject, text: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        log_append(gil, slf, text)?;
        let len = ffi::PyUnicode_GetLength(text);
        gil.int(len as i64)
    })
}

unsafe extern "C" fn log_writelines(slf: *mut ffi::PyObject, lines: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        let iter = Obj::from_borrowed(gil, lines).iter()?;
        while let Some(item) = iter.next()? {
            log_append(gil, slf, item.as_ptr())?;
        }
        Ok(gil.none())
    })
}

unsafe extern "C" fn log_flush(slf: *mut ffi::PyObject, _args: *mut ffi::PyObject) -> *mut ffi::PyObject {
    let gil = Gil::assume();
    slot(gil, || {
        emit_lines(state_of(slf), true);
        Ok(gil.none())
    })
}
