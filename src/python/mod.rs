//! The only place that talks to CPython: initialisation, interpreters and
//! thread states, owned references, errors, script loading and the Python
//! types implemented in Rust. Every `unsafe` here carries a `// SAFETY:` line.

mod error;
mod interpreter;
mod native;
mod object;
mod runtime;
mod script;
mod strings;

pub use error::PyException;
pub use interpreter::{allow_threads, get_or_create, is_initialized};
pub use native::{Args, CallTarget, InputTarget, LineTarget, NativeTypes, Scope};
pub use object::{ErrorKind, FillError, Gil, Obj, PyResult, Raised};
pub use runtime::{
    current_pid, finalize, initialize, leave_forked_child, setup_interpreter, start_exit_watchdog, Options,
};
pub use script::{load, script_mtime, LoadError};
pub use strings::Cache;
