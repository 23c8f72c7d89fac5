//! Pure configuration logic: directive parsing, merging and `%{…}` group
//! expansion. Nothing here touches httpd or Python, so it is unit-tested.

mod daemon;
mod directive;
mod group;
mod python_home;

pub use daemon::{parse_daemon_process, DaemonGroup};
pub use directive::{parse_directive, Directive, HandlerScript};
pub use group::{GroupContext, GroupSpec};
pub use python_home::{check_python_home, PythonHome, PYTHON_VERSION};

use std::sync::Arc;

/// Per-directory (and per-server default) settings, one per config section.
/// Merged by overlay: the more specific section wins, handler by handler.
#[derive(Clone, Debug, Default)]
pub struct DirConfig {
    pub handlers: Vec<Arc<HandlerScript>>,
    pub application_group: Option<GroupSpec>,
    pub process_group: Option<GroupSpec>,
    pub pass_authorization: Option<bool>,
    pub script_reloading: Option<bool>,
    pub chunked_request: Option<bool>,
    pub enable_sendfile: Option<bool>,
}

impl ServerConfig {
    /// Whether Apache's children need Python: `WSGIRestrictEmbedded` if set,
    /// else whether any server's handlers may run embedded.
    pub fn children_need_python<'a>(main: &ServerConfig, all: impl IntoIterator<Item = &'a ServerConfig>) -> bool {
        match main.restrict_embedded {
            Some(restrict) => !restrict,
            None => all.into_iter().any(|c| c.embedded_handlers),
        }
    }

    pub fn daemon_group(&self, name: &str) -> Option<&DefinedGroup> {
        self.daemon_groups.iter().find(|g| g.group.name == name)
    }
}

impl DirConfig {
    pub fn merge(base: &DirConfig, add: &DirConfig) -> DirConfig {
        let mut handlers = base.handlers.clone();
        for handler in &add.handlers {
            match handlers.iter_mut().find(|h| h.name == handler.name) {
                Some(slot) => *slot = Arc::clone(handler),
                None => handlers.push(Arc::clone(handler)),
            }
        }
        DirConfig {
            handlers,
            application_group: add.application_group.clone().or_else(|| base.application_group.clone()),
            process_group: add.process_group.clone().or_else(|| base.process_group.clone()),
            pass_authorization: add.pass_authorization.or(base.pass_authorization),
            script_reloading: add.script_reloading.or(base.script_reloading),
            chunked_request: add.chunked_request.or(base.chunked_request),
            enable_sendfile: add.enable_sendfile.or(base.enable_sendfile),
        }
    }

    /// Records a handler; a second registration of a name in the same section replaces the first.
    pub fn add_handler(&mut self, handler: HandlerScript) {
        let handler = Arc::new(handler);
        match self.handlers.iter_mut().find(|h| h.name == handler.name) {
            Some(slot) => *slot = handler,
            None => self.handlers.push(handler),
        }
    }

    /// The handler registered under `name` (as `r->handler` has it), case-insensitively.
    pub fn handler(&self, name: &str) -> Option<&Arc<HandlerScript>> {
        self.handlers.iter().find(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// Effective settings for a request served by `handler`: the handler's own
    /// option wins, then the directory default, then the built-in default.
    pub fn resolve(&self, handler: &HandlerScript) -> Resolved {
        Resolved {
            process_group: handler
                .process_group
                .clone()
                .or_else(|| self.process_group.clone())
                .unwrap_or(GroupSpec::Global),
            application_group: handler
                .application_group
                .clone()
                .or_else(|| self.application_group.clone())
                .unwrap_or(GroupSpec::Resource),
            pass_authorization: handler.pass_authorization.or(self.pass_authorization).unwrap_or(false),
            script_reloading: self.script_reloading.unwrap_or(true),
            chunked_request: self.chunked_request.unwrap_or(false),
            enable_sendfile: self.enable_sendfile,
        }
    }
}

/// The settings that apply to one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub process_group: GroupSpec,
    pub application_group: GroupSpec,
    pub pass_authorization: bool,
    pub script_reloading: bool,
    /// `WSGIChunkedRequest`: accept chunked request bodies (else 411).
    pub chunked_request: bool,
    /// `WSGIEnableSendfile`; None: as Apache's `EnableSendfile` for the directory.
    pub enable_sendfile: Option<bool>,
}

/// A `process-group=` / `WSGIProcessGroup` naming a daemon group, remembered
/// with its source so `apache2 -t` can point at it once the whole config is read.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupReference {
    pub group: String,
    pub file: String,
    pub line: u32,
}

/// A `WSGIDaemonProcess` with where it was defined.
#[derive(Clone, Debug)]
pub struct DefinedGroup {
    pub group: Arc<DaemonGroup>,
    pub file: String,
    pub line: u32,
}

/// Per-virtual-host state that is not per-directory.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    pub process_group_references: Vec<GroupReference>,
    /// `WSGIDaemonProcess` groups defined in this (virtual) server.
    pub daemon_groups: Vec<DefinedGroup>,
    /// Main server only: `WSGISocketPrefix`.
    pub socket_prefix: Option<String>,
    /// Main server only: `WSGIPythonHome`, checked.
    pub python_home: Option<PythonHome>,
    /// Main server only: `WSGIPythonPath` directories.
    pub python_path: Vec<String>,
    /// Main server only: `WSGIRestrictEmbedded` (None: decided from the handlers).
    pub restrict_embedded: Option<bool>,
    /// A `WSGIHandlerScript` here may run embedded: its process-group= is
    /// absent (a `WSGIProcessGroup` may or may not cover it), `%{GLOBAL}` or
    /// computed per request.
    pub embedded_handlers: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(name: &str, script: &str) -> HandlerScript {
        HandlerScript::new(name, script)
    }

    #[test]
    fn narrower_section_replaces_handler_of_same_name() {
        let mut base = DirConfig::default();
        base.add_handler(handler("app", "/a.wsgi"));
        base.add_handler(handler("other", "/o.wsgi"));
        let mut add = DirConfig::default();
        add.add_handler(handler("APP", "/b.wsgi"));
        let merged = DirConfig::merge(&base, &add);
        assert_eq!(merged.handler("app").unwrap().script, "/b.wsgi");
        assert_eq!(merged.handler("Other").unwrap().script, "/o.wsgi");
        assert_eq!(merged.handlers.len(), 2);
        assert!(merged.handler("missing").is_none());
    }

    #[test]
    fn resolve_prefers_handler_option_then_directory_default() {
        let mut dir = DirConfig {
            application_group: Some(GroupSpec::Literal("dirgroup".into())),
            pass_authorization: Some(true),
            ..Default::default()
        };
        let mut h = handler("x", "/x.wsgi");
        assert_eq!(dir.resolve(&h).application_group, GroupSpec::Literal("dirgroup".into()));
        assert!(dir.resolve(&h).pass_authorization);
        h.application_group = Some(GroupSpec::Global);
        h.pass_authorization = Some(false);
        assert_eq!(dir.resolve(&h).application_group, GroupSpec::Global);
        assert!(!dir.resolve(&h).pass_authorization);
        dir.application_group = None;
        let plain = handler("y", "/y.wsgi");
        let resolved = dir.resolve(&plain);
        assert_eq!(resolved.application_group, GroupSpec::Resource);
        assert_eq!(resolved.process_group, GroupSpec::Global);
        assert!(resolved.script_reloading);
    }

    #[test]
    fn merge_keeps_base_defaults_when_add_is_silent() {
        let base = DirConfig {
            process_group: Some(GroupSpec::Literal("g".into())),
            script_reloading: Some(false),
            ..Default::default()
        };
        let merged = DirConfig::merge(&base, &DirConfig::default());
        assert_eq!(merged.process_group, Some(GroupSpec::Literal("g".into())));
        assert_eq!(merged.script_reloading, Some(false));
    }
}
