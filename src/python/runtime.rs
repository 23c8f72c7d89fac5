//! Python's lifetime in one process (an Apache child, later a daemon):
//! initialise once, set up each interpreter, finalise quickly at exit.

use super::error::PyException;
use super::interpreter::{self, Interpreter};
use super::native::{self, LogTarget, NativeTypes};
use super::object::{Gil, PyResult};
use crate::log::{Level, ServerLog};
use pyo3::ffi;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

static FINALIZING: AtomicBool = AtomicBool::new(false);
/// Threads currently attached to an interpreter (see `Attached`).
pub(super) static ATTACHED: AtomicUsize = AtomicUsize::new(0);
static INIT_TSTATE: AtomicUsize = AtomicUsize::new(0);
static SERVER_LOG: once_cell::sync::OnceCell<ServerLog> = once_cell::sync::OnceCell::new();
static PYTHON_PATH: once_cell::sync::OnceCell<Vec<String>> = once_cell::sync::OnceCell::new();

pub fn is_finalizing() -> bool {
    FINALIZING.load(Ordering::Acquire)
}

fn log(level: Level, message: &str) {
    if let Some(log) = SERVER_LOG.get() {
        log(level, message);
    }
}

/// This process's pid without a system call: cached, and refreshed in the
/// child of any fork() (a pthread_atfork handler, registered on first use; it
/// goes away with the module image, as glibc ties it to the DSO).
pub fn current_pid() -> u32 {
    static PID: AtomicU32 = AtomicU32::new(0);
    static REGISTER: std::sync::Once = std::sync::Once::new();
    extern "C" fn refresh_in_child() {
        PID.store(std::process::id(), Ordering::Relaxed);
    }
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only stores into an atomic; a
        // failure (ENOMEM) leaves PID at 0, which means "ask the kernel".
        unsafe { libc::pthread_atfork(None, None, Some(refresh_in_child)) };
        PID.store(std::process::id(), Ordering::Relaxed);
    });
    match PID.load(Ordering::Relaxed) {
        0 => std::process::id(),
        pid => pid,
    }
}

/// Ends a process the application forked (`os.fork`) that came back into
/// the request: logs why, then `_exit`, running no exit handlers.
pub fn leave_forked_child(message: &str) -> ! {
    log(Level::Warning, message);
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(0) }
}

/// What `initialize` needs to know.
pub struct Options<'a> {
    /// `sys.executable`-like program name; steers where Python finds its library.
    pub program_name: &'a str,
    /// An installation prefix to use instead of the one found from `program_name`.
    pub home: Option<&'a str>,
    /// Directories put at the front of every interpreter's `sys.path` (`site.addsitedir`).
    pub python_path: Vec<String>,
    pub server_log: ServerLog,
}

fn status_error(what: &str, status: &ffi::PyStatus) -> String {
    let detail = if status.err_msg.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: err_msg is a static NUL-terminated string set by CPython.
        unsafe { std::ffi::CStr::from_ptr(status.err_msg) }
            .to_string_lossy()
            .into_owned()
    };
    format!("{what}: {detail}")
}

/// Initialises Python in this process (never in Apache's parent) and sets up
/// the main interpreter; on return the calling thread is detached.
pub fn initialize(options: &Options<'_>) -> Result<Interpreter, String> {
    let _ = SERVER_LOG.set(options.server_log);
    let _ = PYTHON_PATH.set(options.python_path.clone());
    // SAFETY: runs once per process before any other Python call; the PyConfig
    // is initialised by CPython and cleared after use.
    unsafe {
        if ffi::Py_IsInitialized() != 0 {
            return Err("Python is already initialised in this process".into());
        }
        let mut pre: ffi::PyPreConfig = std::mem::zeroed();
        ffi::PyPreConfig_InitPythonConfig(&mut pre);
        // UTF-8 mode: Apache children usually run in the C locale.
        pre.utf8_mode = 1;
        pre.parse_argv = 0;
        let status = ffi::Py_PreInitialize(&pre);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(status_error("Python pre-initialisation failed", &status));
        }
        let mut config: ffi::PyConfig = std::mem::zeroed();
        ffi::PyConfig_InitPythonConfig(&mut config);
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let program = super::object::cstring(options.program_name);
        let status = ffi::PyConfig_SetBytesString(&mut config, &mut config.program_name, program.as_ptr());
        if ffi::PyStatus_Exception(status) != 0 {
            ffi::PyConfig_Clear(&mut config);
            return Err(status_error("Python configuration failed", &status));
        }
        if let Some(home) = options.home {
            let home = super::object::cstring(home);
            let status = ffi::PyConfig_SetBytesString(&mut config, &mut config.home, home.as_ptr());
            if ffi::PyStatus_Exception(status) != 0 {
                ffi::PyConfig_Clear(&mut config);
                return Err(status_error("Python configuration failed", &status));
            }
        }
        let status = ffi::Py_InitializeFromConfig(&config);
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(status_error("Python initialisation failed", &status));
        }
    }
    // SAFETY: Py_InitializeFromConfig left this thread attached to the main interpreter.
    let gil = unsafe { Gil::assume() };
    let types = setup_interpreter(gil);
    // SAFETY: attached; detach and keep the init thread state for finalisation.
    let init_tstate = unsafe { ffi::PyEval_SaveThread() };
    INIT_TSTATE.store(init_tstate as usize, Ordering::Release);
    Ok(interpreter::register_main(init_tstate, types?))
}

/// Per-interpreter set-up: our Python types, `sys.argv`, `sys.stdout`/`stderr`
/// into the error log, and `threading` imported now so its main thread is not
/// some request thread (otherwise `threading._shutdown` can hang at exit).
pub fn setup_interpreter(gil: Gil<'_>) -> Result<NativeTypes, String> {
    let result = (|| -> PyResult<NativeTypes> {
        let types = NativeTypes::create(gil)?;
        let sys = gil.import("sys")?;
        let argv = gil.list()?;
        gil.list_append(&argv, &gil.str("mod_wsgi")?)?;
        sys.setattr("argv", &argv)?;
        let stdout = native::new_log(gil, &types, LogTarget::Server(Level::Info, log))?;
        let stderr = native::new_log(gil, &types, LogTarget::Server(Level::Error, log))?;
        sys.setattr("stdout", &stdout)?;
        sys.setattr("stderr", &stderr)?;
        gil.import("threading")?;
        add_site_dirs_first(gil, &sys, PYTHON_PATH.get().map(Vec::as_slice).unwrap_or_default())?;
        Ok(types)
    })();
    result.map_err(|raised| PyException::from_raised(gil, raised).format())
}

/// `site.addsitedir(dir)` for each of `dirs`, with the entries added moved,
/// in order, to the front of `sys.path`.
fn add_site_dirs_first(gil: Gil<'_>, sys: &super::object::Obj<'_>, dirs: &[String]) -> PyResult<()> {
    if dirs.is_empty() {
        return Ok(());
    }
    let before = sys.getattr("path")?.sequence_len();
    let site = gil.import("site")?;
    for dir in dirs {
        site.call_method("addsitedir", &[&gil.str(dir)?])?;
    }
    let path = sys.getattr("path")?;
    let reordered = gil.list()?;
    let len = path.sequence_len();
    for i in (before..len).chain(0..before.min(len)) {
        if let Some(item) = path.sequence_item(i) {
            gil.list_append(&reordered, &item)?;
        }
    }
    sys.setattr("path", &reordered)
}

/// Ends the process with `_exit(0)` after `budget` unless it has exited by then.
pub fn start_exit_watchdog(budget: Duration, why: &'static str) {
    let spawned = std::thread::Builder::new().name("wsgi-rs-exit".into()).spawn(move || {
        std::thread::sleep(budget);
        log(Level::Warning, &format!("{why}; exiting the process now"));
        // SAFETY: _exit ends the process at once; nothing else runs after it.
        unsafe { libc::_exit(0) };
    });
    if spawned.is_err() {
        log(Level::Warning, "could not start the exit watchdog thread");
    }
}

/// Python's part of process exit: runs the `atexit` functions of every
/// interpreter and flushes its streams, within `budget` (a watchdog ends the
/// process if an exit function hangs).
///
/// Deliberately no `Py_FinalizeEx`/`Py_EndInterpreter`: an application's
/// daemon thread that wakes up during finalisation aborts the process
/// ("Fatal Python error: take_gil"), and joining non-daemon threads can hang
/// the exit. Instead this thread keeps the GIL, so no Python code runs while
/// the process exits.
pub fn finalize(budget: Duration) {
    let init = INIT_TSTATE.swap(0, Ordering::AcqRel) as *mut ffi::PyThreadState;
    if init.is_null() || FINALIZING.swap(true, Ordering::AcqRel) {
        return;
    }
    if ATTACHED.load(Ordering::Acquire) > 0 {
        // Only when the MPM ends the process from a signal handler in the
        // middle of a request (prefork's SIGTERM): Python cannot be entered.
        log(
            Level::Info,
            "skipping Python exit functions: a request is still running in Python",
        );
        return;
    }
    start_exit_watchdog(budget, "Python exit functions did not finish in time");
    // SAFETY: request threads have stopped; the init thread state was detached
    // by `initialize` and is re-attached here, on the thread running the
    // child's exit cleanups. It is never released again.
    unsafe { ffi::PyEval_RestoreThread(init) };
    interpreter::for_each_sub_interpreter(init, run_exit_functions);
    // SAFETY: attached to the main interpreter again.
    run_exit_functions(unsafe { Gil::assume() });
}

fn run_exit_functions(gil: Gil<'_>) {
    let result = (|| -> PyResult<()> {
        let sys = gil.import("sys")?;
        if sys.getattr("modules")?.dict_get_str("atexit").is_some() {
            gil.import("atexit")?.call_method("_run_exitfuncs", &[])?;
        }
        for stream in ["stdout", "stderr"] {
            if let Some(s) = sys.getattr_opt(stream)?.filter(|s| !s.is_none()) {
                s.call_method("flush", &[])?;
            }
        }
        Ok(())
    })();
    if let Err(raised) = result {
        let trace = PyException::from_raised(gil, raised).format();
        for line in trace.lines() {
            log(Level::Error, line);
        }
    }
}
