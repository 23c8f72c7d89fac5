//! Interpreters (main + one sub-interpreter per application group), the
//! per-thread thread states for them, and the attach guard.
//!
//! Thread-state model: the first Python use on an OS thread creates its
//! main-interpreter thread state through PyGILState (so it becomes the
//! thread's PyGILState state and `%{GLOBAL}` always means the main
//! interpreter); sub-interpreter thread states are made with
//! `PyThreadState_New`, one per (thread, interpreter), cached forever.

use super::native::NativeTypes;
use super::object::Gil;
use once_cell::sync::Lazy;
use parking_lot::{Mutex, RwLock};
use pyo3::ffi;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// One Python interpreter of this process, with its per-interpreter types.
pub struct InterpreterState {
    /// `*mut PyInterpreterState`, as an address so the state is Send + Sync.
    ptr: usize,
    /// The application group name; `""` for the main interpreter.
    pub name: String,
    pub types: NativeTypes,
}

/// A handle to an interpreter; interpreters are never destroyed before process exit.
#[derive(Clone, Copy)]
pub struct Interpreter(&'static InterpreterState);

impl Interpreter {
    pub fn name(&self) -> &'static str {
        &self.0.name
    }

    pub fn types(&self) -> &'static NativeTypes {
        &self.0.types
    }

    fn is_main(&self) -> bool {
        self.0.name.is_empty()
    }

    /// Makes this thread current in the interpreter, taking the GIL.
    pub fn attach(&self) -> Attached {
        let tstate = if self.is_main() {
            thread_main_tstate()
        } else {
            thread_sub_tstate(self.0.ptr)
        };
        // SAFETY: tstate belongs to this thread and is not current (we are detached here).
        unsafe { ffi::PyEval_RestoreThread(tstate) };
        super::runtime::ATTACHED.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Attached {
            _not_send: std::marker::PhantomData,
        }
    }
}

/// While alive, this thread holds the GIL in one interpreter.
pub struct Attached {
    _not_send: std::marker::PhantomData<*mut ()>,
}

impl Attached {
    pub fn gil(&self) -> Gil<'_> {
        // SAFETY: the guard holds the GIL until it is dropped, which outlives the token.
        unsafe { Gil::assume() }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        super::runtime::ATTACHED.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        // SAFETY: we made the thread state current in `attach`; this releases the GIL.
        unsafe { ffi::PyEval_SaveThread() };
    }
}

/// Runs `f` with the GIL released (for blocking I/O), re-attaching afterwards, also on unwind.
pub fn allow_threads<R>(_gil: Gil<'_>, f: impl FnOnce() -> R) -> R {
    struct Restore(*mut ffi::PyThreadState);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: re-attaches the thread state that PyEval_SaveThread detached.
            unsafe { ffi::PyEval_RestoreThread(self.0) };
        }
    }
    // SAFETY: the Gil token proves this thread is attached.
    let _restore = Restore(unsafe { ffi::PyEval_SaveThread() });
    f()
}

thread_local! {
    /// This thread's main-interpreter thread state (NULL until first use).
    static MAIN_TSTATE: Cell<usize> = const { Cell::new(0) };
    /// This thread's sub-interpreter thread states: (interpreter, thread state).
    static SUB_TSTATES: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

static MAIN: once_cell::sync::OnceCell<Interpreter> = once_cell::sync::OnceCell::new();
static NAMED: Lazy<RwLock<HashMap<String, Interpreter>>> = Lazy::new(Default::default);
/// Serialises interpreter creation; taken only while detached (lock order: never under the GIL).
static CREATION: Mutex<()> = Mutex::new(());

/// Records the main interpreter; called once by `runtime::initialize` on the
/// thread that initialised Python, whose thread state becomes its main one.
pub(super) fn register_main(init_tstate: *mut ffi::PyThreadState, types: NativeTypes) -> Interpreter {
    // SAFETY: called right after initialisation; PyInterpreterState_Main is valid.
    let ptr = unsafe { ffi::PyInterpreterState_Main() } as usize;
    MAIN_TSTATE.with(|t| t.set(init_tstate as usize));
    *MAIN.get_or_init(|| {
        Interpreter(Box::leak(Box::new(InterpreterState {
            ptr,
            name: String::new(),
            types,
        })))
    })
}

pub fn main_interpreter() -> Option<Interpreter> {
    MAIN.get().copied()
}

/// Python runs in this process (it does not in Apache's children under `WSGIRestrictEmbedded`).
pub fn is_initialized() -> bool {
    MAIN.get().is_some()
}

fn thread_main_tstate() -> *mut ffi::PyThreadState {
    let known = MAIN_TSTATE.with(Cell::get);
    if known != 0 {
        return known as *mut ffi::PyThreadState;
    }
    // SAFETY: first Python use on this thread (detached). PyGILState_Ensure creates
    // the thread's gilstate-bound main thread state; SaveThread leaves its counter
    // at 1 so the state persists for the thread's life.
    let tstate = unsafe {
        ffi::PyGILState_Ensure();
        ffi::PyEval_SaveThread()
    };
    MAIN_TSTATE.with(|t| t.set(tstate as usize));
    tstate
}

fn thread_sub_tstate(interp: usize) -> *mut ffi::PyThreadState {
    if let Some(ts) = SUB_TSTATES.with(|s| s.borrow().iter().find(|(i, _)| *i == interp).map(|(_, t)| *t)) {
        return ts as *mut ffi::PyThreadState;
    }
    // The main-interpreter state must exist first so PyGILState stays bound to it.
    thread_main_tstate();
    // SAFETY: interp is a live interpreter (never destroyed before exit); we are detached.
    let ts = unsafe { ffi::PyThreadState_New(interp as *mut ffi::PyInterpreterState) };
    SUB_TSTATES.with(|s| s.borrow_mut().push((interp, ts as usize)));
    ts
}

/// The interpreter for an application group (`""` = main), created on first use.
pub fn get_or_create(
    name: &str,
    setup: impl FnOnce(Gil<'_>) -> Result<NativeTypes, String>,
) -> Result<Interpreter, String> {
    let Some(main) = main_interpreter() else {
        return Err("Python is not initialised in this process".to_string());
    };
    if name.is_empty() {
        return Ok(main);
    }
    if let Some(found) = NAMED.read().get(name) {
        return Ok(*found);
    }
    let _creating = CREATION.lock();
    if let Some(found) = NAMED.read().get(name) {
        return Ok(*found);
    }
    if super::runtime::is_finalizing() {
        return Err("Python is shutting down".into());
    }
    let main_ts = thread_main_tstate();
    // SAFETY: we are detached; attach to main, then Py_NewInterpreter makes and
    // switches to a new interpreter's thread state (or restores ours on failure).
    let new_ts = unsafe {
        ffi::PyEval_RestoreThread(main_ts);
        ffi::Py_NewInterpreter()
    };
    if new_ts.is_null() {
        // SAFETY: still attached to main after a failed Py_NewInterpreter.
        unsafe { ffi::PyEval_SaveThread() };
        return Err(format!(
            "could not create the Python sub-interpreter for application group '{name}'"
        ));
    }
    // SAFETY: attached to the new interpreter until SaveThread below.
    let result = setup(unsafe { Gil::assume() });
    // SAFETY: new_ts is current; the interpreter pointer stays valid for the process.
    let ptr = unsafe { ffi::PyThreadState_GetInterpreter(new_ts) } as usize;
    SUB_TSTATES.with(|s| s.borrow_mut().push((ptr, new_ts as usize)));
    // SAFETY: detaches new_ts, releasing the GIL.
    unsafe { ffi::PyEval_SaveThread() };
    let types = result?;
    let interp = Interpreter(Box::leak(Box::new(InterpreterState {
        ptr,
        name: name.to_string(),
        types,
    })));
    NAMED.write().insert(name.to_string(), interp);
    Ok(interp)
}

/// Runs `f` in each sub-interpreter; called at process exit while attached to
/// the main interpreter on the exiting thread, which is left attached to
/// `main_tstate` afterwards.
pub(super) fn for_each_sub_interpreter(main_tstate: *mut ffi::PyThreadState, mut f: impl FnMut(Gil<'_>)) {
    let named: Vec<Interpreter> = NAMED.read().values().copied().collect();
    for interp in named {
        let ts = thread_sub_tstate(interp.0.ptr);
        // SAFETY: we hold the GIL (main_tstate current); swapping to this thread's
        // own state for the sub-interpreter keeps it, and we swap back after.
        unsafe { ffi::PyThreadState_Swap(ts) };
        // SAFETY: attached to the sub-interpreter until the swap below.
        f(unsafe { Gil::assume() });
        // SAFETY: as above.
        unsafe { ffi::PyThreadState_Swap(main_tstate) };
    }
}
