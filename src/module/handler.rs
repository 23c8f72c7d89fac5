//! Request dispatch: find our handler for `r->handler`, then either forward
//! the request to its daemon process group or, embedded, run the script here.

use crate::apache::{process, HandlerOutcome, Request};
use crate::config::{GroupContext, HandlerScript};
use crate::log::Level;
use crate::wsgi::{self, EnvironInfo, ScriptCall, Transport};
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
    if r.header_in("Authorization").is_none() || !AUTHORIZATION_HINTS.lock().insert(handler.name.clone()) {
        return;
    }
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
    enable_sendfile: Option<bool>,
}

impl Transport for Embedded<'_, '_> {
    fn cgi_vars(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        self.request.for_each_cgi_var(self.pass_authorization, f)
    }
    fn read_body(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.request.read_body(buf)
    }
    fn send_head(&self, status: u16, status_line: &str, headers: &[(String, String)]) {
        let headers = headers
            .iter()
            .map(|(n, v)| (wsgi::latin1_bytes(n), wsgi::latin1_bytes(v)));
        self.request
            .set_response_head(status, &wsgi::latin1_bytes(status_line), headers)
    }
    fn send_body(&self, data: &[u8], flush: bool) -> io::Result<()> {
        self.request.write(data, flush)
    }
    fn queue_file(&self, fd: i32, offset: u64, len: u64) -> io::Result<bool> {
        // Passed on by `handle` once the GIL is released, with the end of the response.
        self.request
            .queue_file(fd, offset, len, self.enable_sendfile)
            .map(|()| true)
    }
    fn send_file(&self, fd: i32, offset: u64, len: u64) -> io::Result<()> {
        self.request.queue_file(fd, offset, len, self.enable_sendfile)?;
        self.request.write(&[], false)
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
    let daemon = if process_group.is_empty() {
        None
    } else {
        match super::visible_group(&process_group, r.server(), r.server().main()) {
            Some(defined) => Some(defined),
            None => {
                // Only reachable through a %{ENV:…}-style value; literal names fail at config time.
                r.log(
                    Level::Error,
                    &format!(
                        "WSGI process group '{process_group}' of handler '{}' is not defined here",
                        handler.name
                    ),
                );
                return HandlerOutcome::Status(500);
            }
        }
    };
    if r.path_info_rejected() {
        return HandlerOutcome::Status(404);
    }
    if let Err(status) = r.setup_body(settings.chunked_request) {
        return HandlerOutcome::Status(status as u16);
    }
    if let Some(defined) = daemon {
        let main = r.server().main();
        let socket_path = crate::daemon::supervisor::socket_path(main, r.pool(), &defined.group.name);
        let forward = crate::daemon::client::Forward {
            group: &defined.group,
            socket_path: &socket_path,
            script: &handler.script,
            module_name: &handler.module_name,
            application_group: &settings.application_group.expand(r),
            request_handler: name,
            script_reloading: settings.script_reloading,
            pass_authorization: settings.pass_authorization,
            enable_sendfile: settings.enable_sendfile,
            default_timeout: process::server_timeout(r.server()),
            generation: process::generation() as u64,
        };
        return crate::daemon::client::forward(r, &forward);
    }

    if !crate::python::is_initialized() {
        r.log(
            Level::Error,
            &format!(
                "handler '{}' runs in embedded mode here, but Python is not running in this Apache \
                 child (WSGIRestrictEmbedded On, or Python failed to start: see the error log from \
                 the child's start)",
                handler.name
            ),
        );
        return HandlerOutcome::Status(500);
    }
    if !settings.pass_authorization {
        hint_authorization(r, handler);
    }
    let group = settings.application_group.expand(r);
    let facts = FACTS.get();
    let call = ScriptCall {
        info: EnvironInfo {
            process_group: &process_group,
            application_group: &group,
            handler_script: &handler.script,
            request_handler: name,
            script_reloading: settings.script_reloading,
            multithread: facts.is_some_and(|f| f.threaded),
            multiprocess: facts.is_none_or(|f| f.multiprocess),
            apache_version: facts.map_or((2, 4, 0), |f| f.apache_version),
        },
        module_name: &handler.module_name,
    };
    let transport = Embedded {
        request: r,
        pass_authorization: settings.pass_authorization,
        enable_sendfile: settings.enable_sendfile,
    };
    match wsgi::run_script(&call, &transport) {
        wsgi::Outcome::Responded => {
            // A queued file goes out now, without the GIL; a client gone meanwhile is no error here.
            let _ = r.end_queued();
            HandlerOutcome::Done
        }
        wsgi::Outcome::Failed => HandlerOutcome::Status(500),
    }
}
