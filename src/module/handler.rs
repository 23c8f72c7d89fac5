//! Request dispatch in embedded mode: find our handler for `r->handler`,
//! pick the interpreter, load the script, run the WSGI call.

use crate::apache::{HandlerOutcome, Request};
use crate::config::{GroupContext, HandlerScript};
use crate::log::Level;
use crate::python::{self, LoadError};
use crate::wsgi::{self, EnvironInfo, Transport};
use once_cell::sync::{Lazy, OnceCell};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::io;

/// Facts about this Apache child, recorded once at child start.
struct ProcessFacts {
    threaded: bool,
    multiprocess: bool,
    apache_version: (u32, u32, u32),
}

static FACTS: OnceCell<ProcessFacts> = OnceCell::new();

pub fn record_process_facts(threaded: bool, max_daemons: i32, server_description: &str) {
    let _ = FACTS.set(ProcessFacts {
        threaded,
        multiprocess: max_daemons > 1,
        apache_version: wsgi::parse_version(server_description.strip_prefix("Apache/").unwrap_or_default()),
    });
}

/// Handlers whose dropped Authorization header was already pointed out (once per process).
static AUTHORIZATION_HINTS: Lazy<Mutex<HashSet<String>>> = Lazy::new(Default::default);

fn hint_authorization(r: &Request<'_>, handler: &HandlerScript) {
    if r.header_in("Authorization").is_none() || AUTHORIZATION_HINTS.lock().contains(&handler.name) {
        return;
    }
    AUTHORIZATION_HINTS.lock().insert(handler.name.clone());
    r.log(
        Level::Info,
        &format!(
            "handler '{}': the Authorization header is not passed to the application; set pass-authorization=On \
             on its WSGIHandlerScript (or WSGIPassAuthorization On) to pass it (logged once per process)",
            handler.name
        ),
    );
}

impl GroupContext for Request<'_> {
    fn server_hostname(&self) -> String {
        self.server().hostname()
    }
    fn server_port(&self) -> u16 {
        Request::server_port(self)
    }
    fn host_header(&self) -> Option<String> {
        self.header_in("Host")
    }
    fn script_name(&self) -> String {
        wsgi::script_name(&self.uri(), &self.path_info())
    }
    fn env(&self, name: &str) -> Option<String> {
        self.env_var(name).or_else(|| std::env::var(name).ok())
    }
}

/// The WSGI transport of an embedded request: the Apache request itself.
struct Embedded<'r, 'a> {
    request: &'r Request<'a>,
    pass_authorization: bool,
}

impl Transport for Embedded<'_, '_> {
    fn cgi_vars(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        self.request.for_each_cgi_var(self.pass_authorization, f)
    }
    fn read_body(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.request.read_body(buf)
    }
    fn send_head(&self, status: u16, status_line: &str, headers: &[(String, String)]) {
        self.request.set_response_head(status, status_line, headers)
    }
    fn send_body(&self, data: &[u8], flush: bool) -> io::Result<()> {
        self.request.write(data, flush)
    }
    fn send_file(&self, fd: i32, offset: u64, len: u64) -> io::Result<()> {
        self.request.write_file(fd, offset, len)
    }
    fn is_head(&self) -> bool {
        self.request.header_only()
    }
    fn abort(&self) {
        self.request.abort()
    }
    fn log(&self, level: Level, message: &str) {
        self.request.log(level, message)
    }
}

pub fn handle(r: &Request<'_>) -> HandlerOutcome {
    let Some(name) = r.handler() else {
        return HandlerOutcome::Declined;
    };
    let dir = r.dir_config();
    let Some(handler) = dir.handler(name) else {
        return HandlerOutcome::Declined;
    };
    let settings = dir.resolve(handler);

    let process_group = settings.process_group.expand(r);
    if !process_group.is_empty() {
        // Only reachable through a %{ENV:…}-style value; literal names fail at config time.
        r.log(
            Level::Error,
            &format!(
                "WSGI process group '{process_group}' for handler '{}' is not defined (daemon mode is not available)",
                handler.name
            ),
        );
        return HandlerOutcome::Status(500);
    }
    if r.path_info_rejected() {
        return HandlerOutcome::Status(404);
    }
    if let Err(status) = r.setup_body(settings.chunked_request) {
        return HandlerOutcome::Status(status as u16);
    }

    let group = settings.application_group.expand(r);
    let interpreter = match python::get_or_create(&group, python::setup_interpreter) {
        Ok(i) => i,
        Err(error) => {
            r.log(
                Level::Error,
                &format!("cannot use application group '{group}': {error}"),
            );
            return HandlerOutcome::Status(500);
        }
    };
    let attached = interpreter.attach();
    let gil = attached.gil();
    let module_name = format!("_mod_wsgi_{}", crate::apache::md5_hex(&handler.script));
    let module = match python::load(
        gil,
        interpreter,
        &handler.script,
        &module_name,
        settings.script_reloading,
    ) {
        Ok(m) => m,
        Err(error) => {
            log_load_error(r, handler, error);
            return HandlerOutcome::Status(500);
        }
    };
    let app = match module.getattr_opt("handle_request") {
        Ok(Some(app)) => app,
        Ok(None) => {
            r.log(
                Level::Error,
                &format!(
                    "Target WSGI script '{}' does not contain WSGI application 'handle_request'.",
                    handler.script
                ),
            );
            return HandlerOutcome::Status(500);
        }
        Err(raised) => {
            let exc = python::PyException::from_raised(gil, raised);
            wsgi::log_traceback(
                &Embedded {
                    request: r,
                    pass_authorization: false,
                },
                &format!("Cannot get 'handle_request' from WSGI script '{}'.", handler.script),
                &exc,
            );
            return HandlerOutcome::Status(500);
        }
    };
    if !settings.pass_authorization {
        hint_authorization(r, handler);
    }
    let facts = FACTS.get();
    let info = EnvironInfo {
        process_group: &process_group,
        application_group: interpreter.name(),
        handler_script: &handler.script,
        request_handler: name,
        script_reloading: settings.script_reloading,
        multithread: facts.is_some_and(|f| f.threaded),
        multiprocess: facts.is_none_or(|f| f.multiprocess),
        apache_version: facts.map_or((2, 4, 0), |f| f.apache_version),
    };
    let transport = Embedded {
        request: r,
        pass_authorization: settings.pass_authorization,
    };
    match wsgi::serve(gil, interpreter.types(), &app, &transport, &info) {
        wsgi::Outcome::Responded => HandlerOutcome::Done,
        wsgi::Outcome::Failed => HandlerOutcome::Status(500),
    }
}

fn log_load_error(r: &Request<'_>, handler: &HandlerScript, error: LoadError) {
    let script = &handler.script;
    let r = &Embedded {
        request: r,
        pass_authorization: false,
    };
    match error {
        LoadError::Unreadable(reason) => {
            r.log(
                Level::Error,
                &format!("Could not read WSGI handler script '{script}': {reason}"),
            );
        }
        LoadError::Compile(trace) => {
            r.log(
                Level::Error,
                &format!("Could not compile WSGI handler script '{script}'."),
            );
            wsgi::log_lines(r, &trace);
        }
        LoadError::Execute(trace) => {
            r.log(Level::Error, &format!("Failed to exec Python script file '{script}'."));
            wsgi::log_lines(r, &trace);
        }
    }
}
