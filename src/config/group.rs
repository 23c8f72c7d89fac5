//! Application- and process-group names: `%{GLOBAL}`, `%{SERVER}`,
//! `%{RESOURCE}`, `%{HOST}`, `%{ENV:NAME}` or a literal.

/// A group value as written in the configuration, expanded per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupSpec {
    /// `%{GLOBAL}`: the main interpreter (as a process group: embedded mode).
    Global,
    /// `%{SERVER}`: server name, plus `:port` unless 80 or 443.
    Server,
    /// `%{RESOURCE}`: `%{SERVER}|SCRIPT_NAME`.
    Resource,
    /// `%{HOST}`: the request's Host header (client-controlled) plus port.
    Host,
    /// `%{ENV:NAME}`: a request environment variable.
    Env(String),
    Literal(String),
}

/// What a request offers for expansion.
pub trait GroupContext {
    fn server_hostname(&self) -> String;
    fn server_port(&self) -> u16;
    fn host_header(&self) -> Option<String>;
    fn script_name(&self) -> String;
    fn env(&self, name: &str) -> Option<String>;
}

impl GroupSpec {
    /// Parses a group value; `None` for an empty one (which is an error for the caller).
    pub fn parse(value: &str) -> Option<GroupSpec> {
        if value.is_empty() {
            return None;
        }
        Some(match value {
            "%{GLOBAL}" => GroupSpec::Global,
            "%{SERVER}" => GroupSpec::Server,
            "%{RESOURCE}" => GroupSpec::Resource,
            "%{HOST}" => GroupSpec::Host,
            _ => match value.strip_prefix("%{ENV:").and_then(|v| v.strip_suffix('}')) {
                Some(var) if !var.is_empty() => GroupSpec::Env(var.to_string()),
                _ => GroupSpec::Literal(value.to_string()),
            },
        })
    }

    /// True when the value is fixed at configuration time.
    pub fn literal(&self) -> Option<&str> {
        match self {
            GroupSpec::Literal(name) => Some(name),
            _ => None,
        }
    }

    /// The group name for a request; `""` is the main interpreter / embedded mode.
    pub fn expand(&self, ctx: &dyn GroupContext) -> String {
        match self {
            GroupSpec::Global => String::new(),
            GroupSpec::Server => with_port(ctx.server_hostname(), ctx.server_port()),
            GroupSpec::Resource => {
                format!(
                    "{}|{}",
                    with_port(ctx.server_hostname(), ctx.server_port()),
                    ctx.script_name()
                )
            }
            GroupSpec::Host => {
                let host = ctx.host_header().unwrap_or_else(|| ctx.server_hostname());
                // The Host header may already carry a port.
                if host.contains(':') {
                    host
                } else {
                    with_port(host, ctx.server_port())
                }
            }
            GroupSpec::Env(var) => match ctx.env(var) {
                // A value that itself names a group is expanded again, once, as mod_wsgi does.
                Some(value) => match GroupSpec::parse(&value) {
                    Some(GroupSpec::Env(_)) | None => value,
                    Some(inner) => inner.expand(ctx),
                },
                None => format!("%{{ENV:{var}}}"),
            },
            GroupSpec::Literal(name) => name.clone(),
        }
    }
}

fn with_port(host: String, port: u16) -> String {
    if port == 80 || port == 443 || port == 0 {
        host
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Ctx {
        port: u16,
        env: HashMap<&'static str, &'static str>,
    }

    impl GroupContext for Ctx {
        fn server_hostname(&self) -> String {
            "www.example.com".into()
        }
        fn server_port(&self) -> u16 {
            self.port
        }
        fn host_header(&self) -> Option<String> {
            Some("alias.example.com".into())
        }
        fn script_name(&self) -> String {
            "/app/x.myext".into()
        }
        fn env(&self, name: &str) -> Option<String> {
            self.env.get(name).map(|v| v.to_string())
        }
    }

    fn ctx(port: u16) -> Ctx {
        Ctx {
            port,
            env: HashMap::from([("GROUP", "fromenv"), ("NESTED", "%{SERVER}")]),
        }
    }

    #[test]
    fn parses_known_names_and_literals() {
        assert_eq!(GroupSpec::parse("%{GLOBAL}"), Some(GroupSpec::Global));
        assert_eq!(GroupSpec::parse("%{RESOURCE}"), Some(GroupSpec::Resource));
        assert_eq!(GroupSpec::parse("%{ENV:X}"), Some(GroupSpec::Env("X".into())));
        assert_eq!(GroupSpec::parse("%{ENV:}"), Some(GroupSpec::Literal("%{ENV:}".into())));
        assert_eq!(
            GroupSpec::parse("%{global}"),
            Some(GroupSpec::Literal("%{global}".into()))
        );
        assert_eq!(GroupSpec::parse("mygroup"), Some(GroupSpec::Literal("mygroup".into())));
        assert_eq!(GroupSpec::parse(""), None);
    }

    #[test]
    fn expands_server_and_resource_with_port_rules() {
        assert_eq!(GroupSpec::Server.expand(&ctx(80)), "www.example.com");
        assert_eq!(GroupSpec::Server.expand(&ctx(443)), "www.example.com");
        assert_eq!(GroupSpec::Server.expand(&ctx(8080)), "www.example.com:8080");
        assert_eq!(
            GroupSpec::Resource.expand(&ctx(8080)),
            "www.example.com:8080|/app/x.myext"
        );
        assert_eq!(GroupSpec::Resource.expand(&ctx(80)), "www.example.com|/app/x.myext");
        assert_eq!(GroupSpec::Host.expand(&ctx(8080)), "alias.example.com:8080");
        assert_eq!(GroupSpec::Global.expand(&ctx(80)), "");
    }

    #[test]
    fn expands_environment_variables() {
        assert_eq!(GroupSpec::Env("GROUP".into()).expand(&ctx(80)), "fromenv");
        assert_eq!(GroupSpec::Env("NESTED".into()).expand(&ctx(81)), "www.example.com:81");
        assert_eq!(GroupSpec::Env("MISSING".into()).expand(&ctx(80)), "%{ENV:MISSING}");
    }
}
