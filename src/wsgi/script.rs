//! Running a handler script's `handle_request` for one request: pick the
//! interpreter, load (or reload) the script, call it. Shared by embedded mode
//! and the daemon processes.

use super::{log_lines, log_traceback, serve, EnvironInfo, Outcome, Transport};
use crate::log::Level;
use crate::python::{self, LoadError, PyException};

/// What to run: `info.application_group` names the interpreter, `info.handler_script` the script.
pub struct ScriptCall<'a> {
    pub info: EnvironInfo<'a>,
    /// `_mod_wsgi_<md5 of path>`: the script's name in `sys.modules`.
    pub module_name: &'a str,
}

pub fn run_script(call: &ScriptCall<'_>, t: &dyn Transport) -> Outcome {
    let group = call.info.application_group;
    let script = call.info.handler_script;
    let interpreter = match python::get_or_create(group, python::setup_interpreter) {
        Ok(i) => i,
        Err(error) => {
            t.log(
                Level::Error,
                &format!("cannot use application group '{group}': {error}"),
            );
            return Outcome::Failed;
        }
    };
    let mtime = call.info.script_reloading.then(|| python::script_mtime(script));
    let attached = interpreter.attach();
    let gil = attached.gil();
    let module = match python::load(gil, interpreter, script, call.module_name, mtime) {
        Ok(m) => m,
        Err(LoadError::Unreadable(reason)) => {
            t.log(
                Level::Error,
                &format!("Could not read WSGI handler script '{script}': {reason}"),
            );
            return Outcome::Failed;
        }
        Err(LoadError::Compile(trace)) => {
            t.log(
                Level::Error,
                &format!("Could not compile WSGI handler script '{script}'."),
            );
            log_lines(t, &trace);
            return Outcome::Failed;
        }
        Err(LoadError::Execute(trace)) => {
            t.log(Level::Error, &format!("Failed to exec Python script file '{script}'."));
            log_lines(t, &trace);
            return Outcome::Failed;
        }
    };
    let app = match interpreter
        .types()
        .cache
        .str(gil, b"handle_request")
        .and_then(|name| module.lookup_attr(&name))
    {
        Ok(Some(app)) => app,
        Ok(None) => {
            t.log(
                Level::Error,
                &format!("Target WSGI script '{script}' does not contain WSGI application 'handle_request'."),
            );
            return Outcome::Failed;
        }
        Err(raised) => {
            let exc = PyException::from_raised(gil, raised);
            log_traceback(
                t,
                &format!("Cannot get 'handle_request' from WSGI script '{script}'."),
                &exc,
            );
            return Outcome::Failed;
        }
    };
    serve(gil, interpreter.types(), &app, t, &call.info)
}
