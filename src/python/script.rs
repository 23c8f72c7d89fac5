//! Loading handler scripts as modules, once per interpreter, reloading when
//! the file's mtime changes. The module is named `_mod_wsgi_<md5 of path>`,
//! as mod_wsgi names it, so tools that look for that name keep working.

use super::error::PyException;
use super::interpreter::{allow_threads, Interpreter};
use super::object::{cstring, Gil, Obj, Raised};
use once_cell::sync::Lazy;
use parking_lot::Mutex;
use pyo3::ffi;
use std::collections::HashMap;
use std::sync::Arc;

/// Why a script could not provide its module.
pub enum LoadError {
    /// Missing or unreadable file.
    Unreadable(String),
    /// Syntax error or other compile failure (traceback text).
    Compile(String),
    /// Exception while running the module's top level (traceback text).
    Execute(String),
}

/// One lock per (interpreter, script): concurrent first requests wait for the
/// one that loads instead of seeing a half-initialised module. Taken detached.
type LoadLocks = HashMap<(String, String), Arc<Mutex<()>>>;
static LOAD_LOCKS: Lazy<Mutex<LoadLocks>> = Lazy::new(Default::default);

/// The script file's mtime, taken before attaching: a `stat` per request
/// (script reloading) need not hold the GIL.
pub fn script_mtime(path: &str) -> Result<f64, LoadError> {
    let meta = std::fs::metadata(path).map_err(|e| LoadError::Unreadable(format!("cannot stat '{path}': {e}")))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    Ok(mtime)
}

/// The loaded module if present and complete (`__mtime__` is set only after
/// the top level ran) and, when `check_mtime`, still current.
fn current_module<'py>(
    gil: Gil<'py>,
    interpreter: Interpreter,
    module_name: &str,
    mtime: Option<f64>,
) -> Option<Obj<'py>> {
    let cache = &interpreter.types().cache;
    let found = (|| {
        // SAFETY: attached; PyImport_GetModuleDict returns a borrowed dict.
        let modules = unsafe { Obj::from_borrowed(gil, ffi::PyImport_GetModuleDict()) };
        let Some(module) = modules.dict_get(&cache.str(gil, module_name.as_bytes())?) else {
            return Ok(None);
        };
        let Some(loaded) = module.lookup_attr(&cache.str(gil, b"__mtime__")?)? else {
            return Ok(None);
        };
        // SAFETY: attached.
        let loaded = unsafe { ffi::PyFloat_AsDouble(loaded.as_ptr()) };
        if gil.error_occurred() {
            return Err(Raised);
        }
        Ok(Some((module, loaded)))
    })();
    // Any failure here (a strange `__mtime__`) means: load the script anew,
    // with no exception left set.
    let Ok(Some((module, loaded))) = found else {
        // SAFETY: attached.
        unsafe { ffi::PyErr_Clear() };
        return None;
    };
    match mtime {
        Some(m) if m != loaded => None,
        _ => Some(module),
    }
}

/// Returns the script's module in the attached interpreter, loading or
/// reloading it as needed. `mtime`: with script reloading, the file's
/// current mtime (`script_mtime`), which a loaded module must match.
pub fn load<'py>(
    gil: Gil<'py>,
    interpreter: Interpreter,
    path: &str,
    module_name: &str,
    mtime: Option<Result<f64, LoadError>>,
) -> Result<Obj<'py>, LoadError> {
    let mtime = mtime.transpose()?;
    let reloading = mtime.is_some();
    if let Some(module) = current_module(gil, interpreter, module_name, mtime) {
        return Ok(module);
    }
    let lock = Arc::clone(
        LOAD_LOCKS
            .lock()
            .entry((interpreter.name().to_string(), path.to_string()))
            .or_default(),
    );
    let _loading = allow_threads(gil, || lock.lock());
    // Another thread may have loaded it while we waited.
    let mtime = match mtime {
        Some(m) => m,
        None => script_mtime(path)?,
    };
    if let Some(module) = current_module(gil, interpreter, module_name, reloading.then_some(mtime)) {
        return Ok(module);
    }
    let source = allow_threads(gil, || std::fs::read(path))
        .map_err(|e| LoadError::Unreadable(format!("cannot read '{path}': {e}")))?;
    let mut source = source;
    source.retain(|b| *b != 0);
    source.push(0);
    let filename = cstring(path);
    let name = cstring(module_name);
    // SAFETY: attached; source is NUL-terminated.
    let code = unsafe {
        Obj::from_owned(
            gil,
            ffi::Py_CompileString(source.as_ptr() as *const _, filename.as_ptr(), ffi::Py_file_input),
        )
    }
    .map_err(|raised| LoadError::Compile(PyException::from_raised(gil, raised).format()))?;
    // A reload executes into a fresh module: drop the old one first.
    // SAFETY: attached; the modules dict is borrowed.
    unsafe {
        let modules = ffi::PyImport_GetModuleDict();
        if !ffi::PyDict_GetItemString(modules, name.as_ptr()).is_null() {
            ffi::PyDict_DelItemString(modules, name.as_ptr());
        }
    }
    // SAFETY: attached; on failure CPython removes the half-made module from sys.modules.
    let module = unsafe {
        Obj::from_owned(
            gil,
            ffi::PyImport_ExecCodeModuleEx(name.as_ptr(), code.as_ptr(), filename.as_ptr()),
        )
    }
    .map_err(|raised| LoadError::Execute(PyException::from_raised(gil, raised).format()))?;
    let marked = gil.float(mtime).and_then(|m| module.setattr("__mtime__", &m));
    if let Err(Raised) = marked {
        return Err(LoadError::Execute(PyException::from_raised(gil, Raised).format()));
    }
    Ok(module)
}
