//! `WSGIDaemonProcess name [option=value ...]`: parsing and defaults (pure).

use std::time::Duration;

/// A daemon process group as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonGroup {
    pub name: String,
    pub processes: u32,
    /// True when `processes=` was given (then `wsgi.multiprocess` is True even for 1).
    pub processes_given: bool,
    pub threads: u32,
    pub user: Option<String>,
    pub group: Option<String>,
    pub display_name: Option<String>,
    pub home: Option<String>,
    pub python_home: Option<String>,
    pub python_path: Vec<String>,
    pub maximum_requests: u64,
    pub request_timeout: Option<Duration>,
    pub socket_timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub inactivity_timeout: Option<Duration>,
    pub graceful_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub listen_backlog: u32,
    pub umask: Option<u32>,
    /// mod_wsgi options accepted for compatibility that do nothing yet (warned about).
    pub ignored: Vec<String>,
}

impl DaemonGroup {
    fn new(name: &str) -> Self {
        DaemonGroup {
            name: name.to_string(),
            processes: 1,
            processes_given: false,
            threads: 15,
            user: None,
            group: None,
            display_name: None,
            home: None,
            python_home: None,
            python_path: Vec::new(),
            maximum_requests: 0,
            request_timeout: None,
            socket_timeout: None,
            connect_timeout: Duration::from_secs(15),
            inactivity_timeout: None,
            graceful_timeout: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(5),
            listen_backlog: 100,
            umask: None,
            ignored: Vec::new(),
        }
    }

    /// The process title: `display-name=`, with `%{GROUP}` as mod_wsgi spells it.
    pub fn title(&self) -> String {
        match self.display_name.as_deref() {
            None => format!("(wsgi:{})", self.name),
            Some("%{GROUP}") => format!("(wsgi:{})", self.name),
            Some(name) => name.to_string(),
        }
    }
}

/// mod_wsgi options we accept without acting on them yet.
const ACCEPTED_WITHOUT_EFFECT: [&str; 24] = [
    "supplementary-groups",
    "chroot",
    "lang",
    "locale",
    "python-eggs",
    "stack-size",
    "deadlock-timeout",
    "eviction-timeout",
    "restart-interval",
    "queue-timeout",
    "startup-timeout",
    "socket-user",
    "cpu-time-limit",
    "cpu-priority",
    "memory-limit",
    "virtual-memory-limit",
    "receive-buffer-size",
    "send-buffer-size",
    "header-buffer-size",
    "response-buffer-size",
    "response-socket-timeout",
    "server-metrics",
    "script-user",
    "mount-point",
];

fn number<T>(key: &str, value: &str, min: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match value.parse::<T>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!(
            "WSGIDaemonProcess: invalid {key}={value:?}: expected a whole number of at least {min}"
        )),
    }
}

fn seconds(key: &str, value: &str) -> Result<Duration, String> {
    number::<u64>(key, value, 0).map(Duration::from_secs)
}

fn non_empty<'a>(key: &str, value: &'a str) -> Result<&'a str, String> {
    if value.is_empty() {
        Err(format!("WSGIDaemonProcess: {key}= is empty"))
    } else {
        Ok(value)
    }
}

/// Parses `name [option=value ...]`; `resolve_path` makes paths absolute.
pub fn parse_daemon_process(words: &[String], resolve_path: &dyn Fn(&str) -> String) -> Result<DaemonGroup, String> {
    let Some((name, options)) = words.split_first() else {
        return Err("WSGIDaemonProcess: name of the daemon process group not supplied".into());
    };
    if name.is_empty() || name.contains(['/', '%']) {
        return Err(format!("WSGIDaemonProcess: invalid group name {name:?}"));
    }
    let mut group = DaemonGroup::new(name);
    let mut seen: Vec<&str> = Vec::new();
    for option in options {
        let Some((key, value)) = option.split_once('=') else {
            return Err(format!(
                "WSGIDaemonProcess: invalid option {option:?}: options are written name=value"
            ));
        };
        if seen.contains(&key) {
            return Err(format!("WSGIDaemonProcess: option '{key}' given more than once"));
        }
        seen.push(key);
        match key {
            "processes" => {
                group.processes = number(key, value, 1)?;
                group.processes_given = true;
            }
            "threads" => group.threads = number(key, value, 1)?,
            "user" => group.user = Some(non_empty(key, value)?.to_string()),
            "group" => group.group = Some(non_empty(key, value)?.to_string()),
            "display-name" => group.display_name = Some(non_empty(key, value)?.to_string()),
            "home" => group.home = Some(resolve_path(non_empty(key, value)?)),
            "python-home" => group.python_home = Some(resolve_path(non_empty(key, value)?)),
            "python-path" => {
                group.python_path = value.split(':').filter(|p| !p.is_empty()).map(resolve_path).collect();
            }
            "maximum-requests" => group.maximum_requests = number(key, value, 0)?,
            "request-timeout" => group.request_timeout = Some(seconds(key, value)?).filter(|d| !d.is_zero()),
            "socket-timeout" => group.socket_timeout = Some(seconds(key, value)?).filter(|d| !d.is_zero()),
            "connect-timeout" => group.connect_timeout = seconds(key, value)?,
            "inactivity-timeout" => group.inactivity_timeout = Some(seconds(key, value)?).filter(|d| !d.is_zero()),
            "graceful-timeout" => group.graceful_timeout = seconds(key, value)?,
            "shutdown-timeout" => group.shutdown_timeout = seconds(key, value)?,
            "listen-backlog" => group.listen_backlog = number(key, value, 1)?,
            "umask" => {
                let mask = u32::from_str_radix(value.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| format!("WSGIDaemonProcess: invalid umask={value:?}: expected octal like 0022"))?;
                group.umask = Some(mask);
            }
            _ if ACCEPTED_WITHOUT_EFFECT.contains(&key) => group.ignored.push(key.to_string()),
            _ => return Err(format!("WSGIDaemonProcess: unknown option '{key}'")),
        }
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<DaemonGroup, String> {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse_daemon_process(&words, &|p| {
            if p.starts_with('/') {
                p.to_string()
            } else {
                format!("/srv/{p}")
            }
        })
    }

    #[test]
    fn defaults_and_options() {
        let g = parse("mygroup").unwrap();
        assert_eq!((g.processes, g.threads, g.processes_given), (1, 15, false));
        assert_eq!(g.title(), "(wsgi:mygroup)");
        let g = parse(
            "app processes=2 threads=4 user=www-data display-name=%{GROUP} home=app python-path=/a:b \
             maximum-requests=100 request-timeout=30 socket-timeout=10 graceful-timeout=5 umask=0022 lang=C",
        )
        .unwrap();
        assert_eq!((g.processes, g.threads, g.processes_given), (2, 4, true));
        assert_eq!(g.user.as_deref(), Some("www-data"));
        assert_eq!(g.title(), "(wsgi:app)");
        assert_eq!(g.home.as_deref(), Some("/srv/app"));
        assert_eq!(g.python_path, vec!["/a".to_string(), "/srv/b".to_string()]);
        assert_eq!(g.maximum_requests, 100);
        assert_eq!(g.request_timeout, Some(Duration::from_secs(30)));
        assert_eq!(g.umask, Some(0o022));
        assert_eq!(g.ignored, vec!["lang".to_string()]);
    }

    #[test]
    fn rejects_bad_options_naming_them() {
        for (line, expected) in [
            ("", "name of the daemon process group not supplied"),
            ("g processes=0", "invalid processes=\"0\""),
            ("g threads=x", "invalid threads=\"x\""),
            ("g bogus=1", "unknown option 'bogus'"),
            ("g threads", "options are written name=value"),
            ("g threads=2 threads=3", "'threads' given more than once"),
            ("g umask=999", "invalid umask"),
            ("g user=", "user= is empty"),
            ("a/b", "invalid group name"),
        ] {
            let err = parse(line).unwrap_err();
            assert!(err.contains(expected), "{line:?}: {err}");
        }
    }
}
