//! Parsing of our directives' words (already split by `ap_getword_conf`, so
//! quoting follows Apache's rules). Errors are full sentences; Apache adds
//! the file and line.

use super::GroupSpec;

/// One `WSGIHandlerScript` registration.
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerScript {
    /// Lowercased, as `AddHandler`/`SetHandler` store handler names.
    pub name: String,
    /// Absolute path of the script.
    pub script: String,
    pub process_group: Option<GroupSpec>,
    pub application_group: Option<GroupSpec>,
    pub pass_authorization: Option<bool>,
    /// The script's module name in `sys.modules`, filled in by the caller
    /// (`_mod_wsgi_<md5 of path>`, as mod_wsgi names it).
    pub module_name: String,
}

impl HandlerScript {
    pub fn new(name: &str, script: &str) -> Self {
        HandlerScript {
            name: name.to_ascii_lowercase(),
            script: script.to_string(),
            process_group: None,
            application_group: None,
            pass_authorization: None,
            module_name: String::new(),
        }
    }
}

/// A parsed directive.
#[derive(Clone, Debug, PartialEq)]
pub enum Directive {
    HandlerScript(HandlerScript),
    ApplicationGroup(GroupSpec),
    ProcessGroup(GroupSpec),
    PassAuthorization(bool),
    ScriptReloading(bool),
    ChunkedRequest(bool),
    /// `WSGIEnableSendfile`: sendfile(2) for `wsgi.file_wrapper` files, whatever `EnableSendfile` says.
    EnableSendfile(bool),
    /// `WSGIPythonHome`: the raw path (checked by the caller against the file system).
    PythonHome(String),
    /// `WSGIPythonPath`: directories, from one `:`-separated argument.
    PythonPath(Vec<String>),
    DaemonProcess(super::DaemonGroup),
    /// `WSGISocketPrefix`: path prefix of daemon sockets.
    SocketPrefix(String),
    /// `WSGIRestrictEmbedded`: On = no Python in Apache's children (daemon mode only).
    RestrictEmbedded(bool),
    /// Accepted for compatibility, with a warning for the admin.
    Ignored {
        warning: String,
    },
}

/// Parses directive `name` with its `words`; `resolve_path` makes a path
/// absolute (relative to ServerRoot).
pub fn parse_directive(
    name: &str,
    words: &[String],
    resolve_path: &dyn Fn(&str) -> String,
) -> Result<Directive, String> {
    match name {
        "WSGIHandlerScript" => parse_handler_script(words, resolve_path).map(Directive::HandlerScript),
        "WSGIApplicationGroup" => {
            let value = single_word(name, words)?;
            GroupSpec::parse(value).map(Directive::ApplicationGroup).ok_or_else(|| {
                format!("{name}: the application group name is empty; use %{{GLOBAL}} for the main interpreter")
            })
        }
        "WSGIProcessGroup" => {
            let value = single_word(name, words)?;
            GroupSpec::parse(value)
                .map(Directive::ProcessGroup)
                .ok_or_else(|| format!("{name}: the process group name is empty; use %{{GLOBAL}} for embedded mode"))
        }
        "WSGIPassAuthorization" => on_off(name, single_word(name, words)?).map(Directive::PassAuthorization),
        "WSGIScriptReloading" => on_off(name, single_word(name, words)?).map(Directive::ScriptReloading),
        "WSGIDaemonProcess" => super::parse_daemon_process(words, resolve_path).map(Directive::DaemonProcess),
        "WSGISocketPrefix" => {
            let prefix = single_word(name, words)?;
            if prefix.is_empty() {
                return Err(format!("{name}: the prefix is empty"));
            }
            Ok(Directive::SocketPrefix(resolve_path(prefix)))
        }
        "WSGIChunkedRequest" => on_off(name, single_word(name, words)?).map(Directive::ChunkedRequest),
        "WSGIEnableSendfile" => on_off(name, single_word(name, words)?).map(Directive::EnableSendfile),
        "WSGIRestrictEmbedded" => on_off(name, single_word(name, words)?).map(Directive::RestrictEmbedded),
        "WSGIPythonHome" => {
            let home = single_word(name, words)?;
            if home.is_empty() {
                return Err(format!("{name}: the path is empty"));
            }
            Ok(Directive::PythonHome(resolve_path(home)))
        }
        "WSGIPythonPath" => {
            let dirs: Vec<String> = single_word(name, words)?
                .split(':')
                .filter(|d| !d.is_empty())
                .map(resolve_path)
                .collect();
            if dirs.is_empty() {
                return Err(format!("{name}: no directory given"));
            }
            Ok(Directive::PythonPath(dirs))
        }
        "WSGICallableObject" => {
            single_word(name, words)?;
            Ok(Directive::Ignored {
                warning: "WSGICallableObject has no effect on WSGIHandlerScript handlers: their callable is always 'handle_request'".into(),
            })
        }
        _ => Err(format!("{name}: not a directive of this module")),
    }
}

fn single_word<'a>(name: &str, words: &'a [String]) -> Result<&'a str, String> {
    match words {
        [one] => Ok(one),
        [] => Err(format!("{name} takes one argument, none given")),
        _ => Err(format!("{name} takes one argument, {} given", words.len())),
    }
}

fn on_off(what: &str, value: &str) -> Result<bool, String> {
    if value.eq_ignore_ascii_case("on") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("off") {
        Ok(false)
    } else {
        Err(format!("{what}: invalid value '{value}', expected On or Off"))
    }
}

const USAGE: &str =
    "usage: WSGIHandlerScript name path [process-group=NAME] [application-group=NAME] [pass-authorization=On|Off]";

fn parse_handler_script(words: &[String], resolve_path: &dyn Fn(&str) -> String) -> Result<HandlerScript, String> {
    let (name, path, options) = match words {
        [] => return Err(format!("WSGIHandlerScript: handler name not supplied; {USAGE}")),
        [_] => {
            return Err(format!(
                "WSGIHandlerScript: location of the handler script not supplied; {USAGE}"
            ))
        }
        [name, path, options @ ..] => (name, path, options),
    };
    if name.is_empty() {
        return Err(format!("WSGIHandlerScript: the handler name is empty; {USAGE}"));
    }
    if path.is_empty() {
        return Err(format!("WSGIHandlerScript: the handler script path is empty; {USAGE}"));
    }
    let mut handler = HandlerScript::new(name, &resolve_path(path));
    for option in options {
        let Some((key, value)) = option.split_once('=') else {
            return Err(format!(
                "WSGIHandlerScript: invalid option '{option}': options are written name=value; {USAGE}"
            ));
        };
        let repeated = || format!("WSGIHandlerScript: option '{key}' given more than once");
        match key {
            "process-group" => {
                if handler.process_group.is_some() {
                    return Err(repeated());
                }
                handler.process_group = Some(GroupSpec::parse(value).ok_or_else(|| {
                    "WSGIHandlerScript: process-group= is empty; name a WSGIDaemonProcess group or use %{GLOBAL} for embedded mode".to_string()
                })?);
            }
            "application-group" => {
                if handler.application_group.is_some() {
                    return Err(repeated());
                }
                handler.application_group = Some(GroupSpec::parse(value).ok_or_else(|| {
                    "WSGIHandlerScript: application-group= is empty; name a group or use %{GLOBAL} for the main interpreter".to_string()
                })?);
            }
            "pass-authorization" => {
                if handler.pass_authorization.is_some() {
                    return Err(repeated());
                }
                handler.pass_authorization = Some(on_off("WSGIHandlerScript: pass-authorization", value)?);
            }
            _ => {
                return Err(format!(
                    "WSGIHandlerScript: unknown option '{key}'; valid options are process-group=, application-group= and pass-authorization="
                ))
            }
        }
    }
    Ok(handler)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn resolve(path: &str) -> String {
        if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/etc/apache2/{path}")
        }
    }

    fn handler(line: &str) -> Result<HandlerScript, String> {
        match parse_directive("WSGIHandlerScript", &words(line), &resolve)? {
            Directive::HandlerScript(h) => Ok(h),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_spec_example() {
        let h =
            handler("wsgi-resource /etc/apache2/wsgi/resource.wsgi process-group=mygroup application-group=%{GLOBAL}")
                .unwrap();
        assert_eq!(h.name, "wsgi-resource");
        assert_eq!(h.script, "/etc/apache2/wsgi/resource.wsgi");
        assert_eq!(h.process_group, Some(GroupSpec::Literal("mygroup".into())));
        assert_eq!(h.application_group, Some(GroupSpec::Global));
        assert_eq!(h.pass_authorization, None);
    }

    #[test]
    fn lowercases_name_and_resolves_relative_path() {
        let h = handler("My-App wsgi/app.wsgi pass-authorization=on").unwrap();
        assert_eq!(h.name, "my-app");
        assert_eq!(h.script, "/etc/apache2/wsgi/app.wsgi");
        assert_eq!(h.pass_authorization, Some(true));
    }

    #[test]
    fn rejects_bad_forms_with_reasons() {
        let cases = [
            ("", "handler name not supplied"),
            ("app", "location of the handler script not supplied"),
            ("app /x.wsgi foo=bar", "unknown option 'foo'"),
            ("app /x.wsgi process-group", "options are written name=value"),
            (
                "app /x.wsgi pass-authorization=maybe",
                "invalid value 'maybe', expected On or Off",
            ),
            ("app /x.wsgi application-group=", "application-group= is empty"),
            ("app /x.wsgi process-group=", "process-group= is empty"),
            (
                "app /x.wsgi application-group=a application-group=b",
                "'application-group' given more than once",
            ),
            (
                "app /x.wsgi pass-authorization=On pass-authorization=On",
                "given more than once",
            ),
            ("app /x.wsgi Application-Group=x", "unknown option 'Application-Group'"),
        ];
        for (line, expected) in cases {
            let err = handler(line).unwrap_err();
            assert!(err.contains(expected), "{line:?}: {err}");
        }
        let err = parse_directive("WSGIHandlerScript", &["".to_string(), "/x".to_string()], &resolve).unwrap_err();
        assert!(err.contains("handler name is empty"), "{err}");
    }

    #[test]
    fn parses_simple_directives() {
        let p = |name: &str, line: &str| parse_directive(name, &words(line), &resolve);
        assert_eq!(
            p("WSGIApplicationGroup", "%{SERVER}").unwrap(),
            Directive::ApplicationGroup(GroupSpec::Server)
        );
        assert_eq!(
            p("WSGIProcessGroup", "%{GLOBAL}").unwrap(),
            Directive::ProcessGroup(GroupSpec::Global)
        );
        assert_eq!(
            p("WSGIPassAuthorization", "On").unwrap(),
            Directive::PassAuthorization(true)
        );
        assert_eq!(
            p("WSGIScriptReloading", "off").unwrap(),
            Directive::ScriptReloading(false)
        );
        assert_eq!(p("WSGIEnableSendfile", "On").unwrap(), Directive::EnableSendfile(true));
        assert_eq!(
            p("WSGIRestrictEmbedded", "On").unwrap(),
            Directive::RestrictEmbedded(true)
        );
        assert!(matches!(
            p("WSGICallableObject", "app").unwrap(),
            Directive::Ignored { .. }
        ));
        assert!(p("WSGIApplicationGroup", "")
            .unwrap_err()
            .contains("one argument, none given"));
        assert!(p("WSGIApplicationGroup", "a b").unwrap_err().contains("2 given"));
        assert!(p("WSGIPassAuthorization", "yes")
            .unwrap_err()
            .contains("expected On or Off"));
        let empty = parse_directive("WSGIApplicationGroup", &["".to_string()], &resolve).unwrap_err();
        assert!(empty.contains("empty"), "{empty}");
    }
}
