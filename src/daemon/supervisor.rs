//! Apache's parent side of daemon mode: one listening socket per group (kept
//! open across restarts, so clients never meet a closed queue), `processes=`
//! daemons forked per group, each replaced when it dies.
//!
//! Generations: the parent makes a pipe per configuration generation and
//! keeps only its write end, owned by the generation's pool. When Apache
//! restarts, the pool is cleared, the write end closes, and that
//! generation's daemons see end-of-file: they stop accepting and finish what
//! they are serving while the new generation's daemons take the queue over.

use super::server;
use crate::apache::process::{self, Identity};
use crate::apache::registry;
use crate::apache::{Pool, Server};
use crate::config::DaemonGroup;
use crate::log::Level;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

/// Everything a daemon process needs, decided in the parent.
pub struct DaemonPlan {
    pub group: Arc<DaemonGroup>,
    pub socket_path: String,
    pub listener_fd: i32,
    /// Who the daemon runs as.
    pub identity: Identity,
    /// Apache's children's user: the only peer (besides root) a daemon serves.
    pub client_uid: u32,
    pub generation: i32,
    /// Read end of this generation's pipe: end-of-file means "drain and exit".
    pub generation_fd: i32,
    /// Connections each process (by slot) holds, shared by the group's processes.
    pub connections: Arc<process::SharedCounters>,
}

/// This generation's pipe write end, which every forked process but the parent must close.
static GENERATION_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

pub fn generation_write_fd() -> i32 {
    GENERATION_WRITE_FD.load(Ordering::Relaxed)
}

/// Where a group's socket lives: `WSGISocketPrefix` (or `<runtime dir>/wsgi-rs`) + `.<group>.sock`.
pub fn socket_path(main: Server<'_>, pool: Pool<'_>, group: &str) -> String {
    let prefix = main
        .config()
        .socket_prefix
        .clone()
        .unwrap_or_else(|| process::runtime_dir_path(pool, "wsgi-rs"));
    format!("{prefix}.{group}.sock")
}

fn identity_for(group: &DaemonGroup) -> Result<Identity, String> {
    let mut identity = match &group.user {
        Some(user) => process::resolve_user(user)?,
        None => process::apache_identity(),
    };
    if let Some(name) = &group.group {
        identity.gid = process::resolve_group(name)?;
    }
    if identity.uid == 0 {
        return Err("daemon processes must not run as root; set user= or Apache's User".into());
    }
    Ok(identity)
}

/// Ends a generation's daemons with the configuration pool (it must be
/// dropped after the generation pipe closes, so it is registered first).
/// Graceful restart: nothing to do, the closed pipe makes them drain and the
/// next generation watches them. `-k restart`: SIGTERM, so they finish within
/// their shutdown grace. `-k stop`: SIGTERM, then wait for them (SIGKILL late ones).
struct StopOnShutdown<'a> {
    main: Server<'a>,
}

impl Drop for StopOnShutdown<'_> {
    fn drop(&mut self) {
        let exiting = process::apache_is_exiting();
        if !exiting && process::restart_is_graceful() {
            return;
        }
        let pids: Vec<i32> = registry::recorded_daemons(self.main).iter().map(|d| d.pid).collect();
        if !exiting {
            process::terminate_children(&pids);
            return;
        }
        let killed = process::stop_children(&pids, std::time::Duration::from_millis(2500));
        for pid in &pids {
            registry::forget_daemon(self.main, *pid);
        }
        if !killed.is_empty() {
            self.main.log(
                Level::Warning,
                &format!("WSGI daemon processes {killed:?} did not stop in time and were killed"),
            );
        }
    }
}

/// Starts every configured group's daemons (the real start-up pass only),
/// and watches those of earlier generations until they have drained.
pub fn start(main: Server<'_>, pool: Pool<'_>) {
    if process::is_preflight() {
        return;
    }
    let generation = process::generation();
    for old in registry::recorded_daemons(main)
        .into_iter()
        .filter(|d| d.generation != generation)
    {
        let group = old.group;
        process::watch_child(
            main,
            pool,
            old.pid,
            Box::new(move |main, _pool, pid, _status| {
                registry::forget_daemon(main, pid);
                main.log(
                    Level::Info,
                    &format!("WSGI daemon process {pid} of group '{group}' exited (previous generation, drained)"),
                );
            }),
        );
    }
    pool.own(StopOnShutdown { main });
    let groups: Vec<Arc<DaemonGroup>> = main
        .distinct_configs()
        .into_iter()
        .flat_map(|(_, c)| c.daemon_groups.iter().map(|d| Arc::clone(&d.group)))
        .collect();
    if groups.is_empty() {
        registry::retire_listeners(main, generation);
        return;
    }
    let (reader, writer) = match std::io::pipe() {
        Ok(pair) => pair,
        Err(e) => {
            main.log(Level::Error, &format!("cannot create the daemon generation pipe: {e}"));
            return;
        }
    };
    GENERATION_WRITE_FD.store(writer.as_raw_fd(), Ordering::Relaxed);
    pool.own(writer);
    // Kept open for the whole generation: replacement daemons forked later inherit it.
    let generation_fd = reader.as_raw_fd();
    pool.own(reader);
    let client = process::apache_identity();
    for group in groups {
        let socket_path = socket_path(main, pool, &group.name);
        let identity = match identity_for(&group) {
            Ok(i) => i,
            Err(e) => {
                main.log(
                    Level::Error,
                    &format!("WSGI daemon process group '{}': {e}", group.name),
                );
                continue;
            }
        };
        let listener_fd = match registry::persistent_listener(main, &socket_path, generation, || {
            process::bind_listener(&socket_path, group.listen_backlog, &client)
        }) {
            Ok(fd) => fd,
            Err(e) => {
                main.log(
                    Level::Error,
                    &format!(
                        "WSGI daemon process group '{}': cannot listen on '{socket_path}': {e}",
                        group.name
                    ),
                );
                continue;
            }
        };
        let connections = match process::SharedCounters::new(group.processes as usize) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                main.log(
                    Level::Error,
                    &format!(
                        "WSGI daemon process group '{}': cannot map shared memory: {e}",
                        group.name
                    ),
                );
                continue;
            }
        };
        let plan = Arc::new(DaemonPlan {
            group: Arc::clone(&group),
            socket_path,
            listener_fd,
            identity,
            client_uid: client.uid,
            generation,
            generation_fd,
            connections,
        });
        for slot in 0..group.processes {
            spawn(main, pool, Arc::clone(&plan), slot);
        }
    }
    registry::retire_listeners(main, generation);
}

/// `slot` numbers the group's processes (0..processes); a replacement keeps it.
fn spawn(main: Server<'_>, pool: Pool<'_>, plan: Arc<DaemonPlan>, slot: u32) {
    match process::fork() {
        Ok(None) => server::run(main, &plan, slot),
        Ok(Some(pid)) => {
            registry::record_daemon(main, pid, plan.generation, &plan.group.name);
            main.log(
                Level::Info,
                &format!(
                    "started WSGI daemon process {pid} of group '{}' on {}",
                    plan.group.name, plan.socket_path
                ),
            );
            process::watch_child(
                main,
                pool,
                pid,
                Box::new(move |main, pool, pid, status| {
                    registry::forget_daemon(main, pid);
                    let stopping = process::mpm_is_stopping();
                    main.log(
                        if stopping { Level::Info } else { Level::Warning },
                        &format!(
                            "WSGI daemon process {pid} of group '{}' exited (exit status or signal {status}){}",
                            plan.group.name,
                            if stopping { "" } else { "; starting a replacement" }
                        ),
                    );
                    if !stopping {
                        spawn(main, pool, Arc::clone(&plan), slot);
                    }
                }),
            );
        }
        Err(e) => main.log(
            Level::Error,
            &format!("cannot fork a WSGI daemon process for group '{}': {e}", plan.group.name),
        ),
    }
}
