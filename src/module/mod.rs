//! The module's behaviour, in safe Rust over the `apache` and `python`
//! wrappers: directives, configuration checks, child start/exit, and
//! request dispatch (`handler`).

mod handler;

pub use handler::handle;

use crate::apache::{self, process, registry, CmdParms, Pool, Server};
use crate::config::{
    check_python_home, parse_directive, DefinedGroup, DirConfig, Directive, GroupReference, GroupSpec, PythonHome,
    ServerConfig, PYTHON_VERSION,
};
use crate::daemon;
use crate::log::Level;
use crate::python;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Applies one directive to the section's config.
pub fn directive(cmd: &CmdParms<'_>, dir: &mut DirConfig, words: &[String]) -> Result<(), String> {
    let name = cmd.directive_name();
    let parsed = parse_directive(&name, words, &|path| cmd.server_root_relative(path))?;
    let (file, line) = cmd.location();
    let check_process_group = |group: &Option<GroupSpec>| -> Result<(), String> {
        let Some(group) = group.as_ref().and_then(GroupSpec::literal) else {
            return Ok(());
        };
        let reference = GroupReference {
            group: group.to_string(),
            file: file.clone(),
            line,
        };
        if cmd.at_request_time() {
            // .htaccess: the whole configuration is known already.
            let main = cmd.server().main();
            return undefined_group_error(&reference, cmd.server(), main).map_or(Ok(()), Err);
        }
        server_config_mut(cmd).process_group_references.push(reference);
        Ok(())
    };
    match parsed {
        Directive::HandlerScript(mut handler) => {
            check_process_group(&handler.process_group)?;
            let daemon_only = handler.process_group.as_ref().and_then(GroupSpec::literal).is_some();
            if !daemon_only {
                if cmd.at_request_time() && !python::is_initialized() {
                    return Err(format!(
                        "{name} in .htaccess may run in embedded mode, but Python is not running in \
                         Apache's children (WSGIRestrictEmbedded On, or no handler in the server \
                         configuration may run embedded): give it process-group=, or set \
                         WSGIRestrictEmbedded Off in the server configuration"
                    ));
                }
                server_config_mut(cmd).embedded_handlers = true;
            }
            // Computed once here rather than per request.
            handler.module_name = format!("_mod_wsgi_{}", apache::md5_hex(&handler.script));
            dir.add_handler(handler);
        }
        Directive::ApplicationGroup(group) => dir.application_group = Some(group),
        Directive::ProcessGroup(group) => {
            check_process_group(&Some(group.clone()))?;
            dir.process_group = Some(group);
        }
        Directive::PassAuthorization(on) => dir.pass_authorization = Some(on),
        Directive::ScriptReloading(on) => dir.script_reloading = Some(on),
        Directive::ChunkedRequest(on) => dir.chunked_request = Some(on),
        Directive::EnableSendfile(on) => dir.enable_sendfile = Some(on),
        Directive::PythonHome(home) => {
            main_server_only(cmd, &name)?;
            server_config_mut(cmd).python_home = Some(check_python_home(&home, PYTHON_VERSION)?);
        }
        Directive::PythonPath(dirs) => {
            main_server_only(cmd, &name)?;
            server_config_mut(cmd).python_path.extend(dirs);
        }
        Directive::DaemonProcess(group) => {
            check_daemon_group(&group)?;
            for option in &group.ignored {
                cmd.server().log(
                    Level::Warning,
                    &format!(
                        "{file}:{line}: WSGIDaemonProcess {}: option '{option}' is accepted but has no effect yet",
                        group.name
                    ),
                );
            }
            let defined = DefinedGroup {
                group: Arc::new(group),
                file: file.clone(),
                line,
            };
            server_config_mut(cmd).daemon_groups.push(defined);
        }
        Directive::RestrictEmbedded(on) => {
            main_server_only(cmd, &name)?;
            server_config_mut(cmd).restrict_embedded = Some(on);
        }
        Directive::SocketPrefix(prefix) => {
            main_server_only(cmd, &name)?;
            server_config_mut(cmd).socket_prefix = Some(prefix);
        }
        Directive::Ignored { warning } => {
            cmd.server().log(Level::Warning, &format!("{file}:{line}: {warning}"));
        }
    }
    Ok(())
}

/// What would keep a group's daemons from ever starting fails the
/// configuration instead: unknown user or group, root, a bad python-home.
fn check_daemon_group(group: &crate::config::DaemonGroup) -> Result<(), String> {
    let name = &group.name;
    if let Some(user) = &group.user {
        let identity =
            process::resolve_user(user).map_err(|e| format!("WSGIDaemonProcess {name}: user={user}: {e}"))?;
        if identity.uid == 0 {
            return Err(format!(
                "WSGIDaemonProcess {name}: user={user}: daemon processes must not run as root"
            ));
        }
    }
    if let Some(unix_group) = &group.group {
        process::resolve_group(unix_group).map_err(|e| format!("WSGIDaemonProcess {name}: group={unix_group}: {e}"))?;
    }
    if let Some(home) = &group.python_home {
        check_python_home(home, PYTHON_VERSION).map_err(|e| format!("WSGIDaemonProcess {name}: python-home: {e}"))?;
    }
    Ok(())
}

/// Python is one per process: its settings belong to the main server.
fn main_server_only(cmd: &CmdParms<'_>, name: &str) -> Result<(), String> {
    if cmd.server().is_virtual() {
        return Err(format!(
            "{name} applies to the whole server and cannot be used inside <VirtualHost>"
        ));
    }
    Ok(())
}

fn server_config_mut<'a>(cmd: &CmdParms<'a>) -> &'a mut ServerConfig {
    cmd.server().config_mut()
}

/// The group a reference names, if visible from `server`: defined in that
/// virtual host or in the main server (a group of another vhost is not).
pub fn visible_group<'a>(name: &str, server: Server<'a>, main: Server<'a>) -> Option<&'a DefinedGroup> {
    server
        .config()
        .daemon_group(name)
        .or_else(|| main.config().daemon_group(name))
}

fn undefined_group_error(reference: &GroupReference, server: Server<'_>, main: Server<'_>) -> Option<String> {
    if visible_group(&reference.group, server, main).is_some() {
        return None;
    }
    let elsewhere = main.iter().find_map(|s| s.config().daemon_group(&reference.group));
    let hint = match elsewhere {
        Some(g) => format!(
            " (a group of that name is defined at {}:{} in another virtual host, which is not visible here)",
            g.file, g.line
        ),
        None => String::new(),
    };
    Some(format!(
        "{}:{}: WSGI process group '{}' is not defined: no WSGIDaemonProcess '{}' for this server{hint}",
        reference.file, reference.line, reference.group, reference.group
    ))
}

/// Whole-configuration checks (`apache2 -t` runs these too).
pub fn check_config(main: Server<'_>) -> bool {
    let mut ok = true;
    if apache::loaded_module_names()
        .iter()
        .filter(|n| n.as_str() == "mod_wsgi.c")
        .count()
        > 1
    {
        main.log(
            Level::Error,
            "mod_wsgi is loaded together with mod_wsgi_rs; both define the WSGI* directives. \
             Load only one of them (Debian: a2dismod wsgi).",
        );
        ok = false;
    }
    let mut seen: Vec<&DefinedGroup> = Vec::new();
    for (server, config) in main.distinct_configs() {
        for defined in &config.daemon_groups {
            if let Some(first) = seen.iter().find(|g| g.group.name == defined.group.name) {
                main.log(
                    Level::Error,
                    &format!(
                        "{}:{}: WSGIDaemonProcess '{}' duplicates the group defined at {}:{}; names must be unique",
                        defined.file, defined.line, defined.group.name, first.file, first.line
                    ),
                );
                ok = false;
            }
            seen.push(defined);
        }
        for reference in &config.process_group_references {
            if let Some(error) = undefined_group_error(reference, server, main) {
                main.log(Level::Error, &error);
                ok = false;
            }
        }
    }
    ok
}

/// Counts post_config calls in this image of the module. Apache unloads and
/// reloads the module on every restart, so this stays 1 unless something
/// pins the old image (which would also keep a rebuilt .so from loading).
static POST_CONFIG_CALLS: AtomicUsize = AtomicUsize::new(0);

pub fn post_config(server: Server<'_>, pconf: Pool<'_>) {
    let calls = POST_CONFIG_CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    server.log(
        Level::Debug,
        &format!("post_config call #{calls} in this image of the module"),
    );
    daemon::supervisor::start(server, pconf);
}

/// Python comes up in each child (never in Apache's parent, which reloads
/// this module on every restart). Returns what to run at child exit.
pub fn child_init(server: Server<'_>) -> Option<fn()> {
    // Apache's children must not hold the daemons' sockets or generation pipe.
    process::close_fd(daemon::supervisor::generation_write_fd());
    for fd in registry::listener_fds(server) {
        process::close_fd(fd);
    }
    handler::record_process_facts(
        apache::mpm_is_threaded(),
        apache::mpm_max_daemons(),
        &apache::server_description(),
    );
    let config = server.config();
    let all = server.distinct_configs();
    if !ServerConfig::children_need_python(config, all.iter().map(|(_, c)| *c)) {
        server.log(
            Level::Debug,
            "Python is not started in this child: every handler runs in a daemon process group",
        );
        return None;
    }
    let (program_name, home) = match &config.python_home {
        Some(PythonHome::Venv { program }) => (program.as_str(), None),
        Some(PythonHome::Prefix { home }) => ("/usr/bin/python3", Some(home.as_str())),
        None => ("/usr/bin/python3", None),
    };
    let options = python::Options {
        program_name,
        home,
        python_path: config.python_path.clone(),
        server_log: apache::log_main,
    };
    match python::initialize(&options) {
        Ok(_) => Some(child_exit),
        Err(error) => {
            server.log(
                Level::Error,
                &format!("cannot initialise Python in this child: {error}"),
            );
            None
        }
    }
}

/// Apache kills a child that takes ~3 s to exit; finalise well within that.
fn child_exit() {
    if in_prefork_stop_handler() {
        if !apache::process::prefork_child_is_idle() {
            return;
        }
        apache::process::block_stop_signals();
    }
    python::finalize(Duration::from_millis(1500));
}

/// prefork ends a child at `-k stop`/`-k restart` from its SIGTERM or SIGHUP
/// handler, which runs the child_stopping hooks and the child pool's
/// cleanups. Unless the child was idle (waiting for a connection), the
/// interrupted code may hold malloc's or Python's locks, so nothing there
/// may allocate or enter Python (a child interrupted in malloc aborted when
/// a hook started a thread). The process exits right after.
fn in_prefork_stop_handler() -> bool {
    !apache::mpm_is_threaded()
        && (apache::process::signal_blocked(libc::SIGTERM) || apache::process::signal_blocked(libc::SIGHUP))
}

/// An ungraceful stop (`-k stop`/`-k restart`) must not wait for requests
/// stuck in Python: after a short grace period the child exits anyway,
/// sooner and more quietly than Apache's SIGKILL would end it.
pub fn child_stopping(graceful: bool) {
    if !graceful && !in_prefork_stop_handler() {
        daemon::client::cut_in_flight();
        python::start_exit_watchdog(
            Duration::from_millis(1000),
            "requests still running in Python at an ungraceful stop",
        );
    }
}
