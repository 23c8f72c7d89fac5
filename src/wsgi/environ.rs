//! The WSGI environ: Apache's CGI variables as latin-1 `str`, plus the
//! `wsgi.*` and `mod_wsgi.*` keys.

use super::Transport;
use crate::python::{Cache, Gil, Obj, PyResult};

/// Facts about this request's handler that appear in the environ.
pub struct EnvironInfo<'a> {
    pub process_group: &'a str,
    pub application_group: &'a str,
    pub handler_script: &'a str,
    /// The handler name that selected us (`r->handler`).
    pub request_handler: &'a str,
    pub script_reloading: bool,
    pub multithread: bool,
    pub multiprocess: bool,
    pub apache_version: (u32, u32, u32),
}

/// `"1.2.3…"` → (1, 2, 3); missing or non-numeric parts are 0.
pub fn parse_version(text: &str) -> (u32, u32, u32) {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

fn version_tuple<'py>(gil: Gil<'py>, (a, b, c): (u32, u32, u32)) -> PyResult<Obj<'py>> {
    gil.tuple(&[&gil.int(a.into())?, &gil.int(b.into())?, &gil.int(c.into())?])
}

/// SCRIPT_NAME for a request: the URI without its path info, `//` collapsed.
pub fn script_name(uri: &str, path_info: &str) -> String {
    let base = uri.strip_suffix(path_info).unwrap_or(uri);
    let mut out = String::with_capacity(base.len());
    for c in base.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

pub fn build<'py>(
    gil: Gil<'py>,
    cache: &Cache,
    t: &dyn Transport,
    info: &EnvironInfo<'_>,
    input: &Obj<'py>,
    errors: &Obj<'py>,
    file_wrapper: &Obj<'py>,
) -> PyResult<Obj<'py>> {
    let environ = gil.dict()?;
    let mut failed = None;
    let mut https = false;
    let (mut has_query, mut has_path_info) = (false, false);
    let mut keys = cache.environ_keys();
    t.cgi_vars(&mut |key, value| {
        if failed.is_some() {
            return;
        }
        match key {
            b"HTTPS" => https = value.eq_ignore_ascii_case(b"on"),
            b"QUERY_STRING" => has_query = true,
            b"PATH_INFO" => has_path_info = true,
            _ => {}
        }
        let result = keys
            .str(gil, key)
            .and_then(|k| gil.str_latin1(value).and_then(|v| environ.dict_set(&k, &v)));
        if let Err(e) = result {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    // Keys and constant values, in the same order every time (see `environ_keys`).
    let mut text = |value: &str| keys.str(gil, value.as_bytes());
    let set = |key: Obj<'py>, value: &Obj<'py>| environ.dict_set(&key, value);
    if !has_query {
        set(text("QUERY_STRING")?, &text("")?)?;
    }
    if !has_path_info {
        set(text("PATH_INFO")?, &text("")?)?;
    }
    let wsgi_version = cache.constant(gil, "wsgi.version", || gil.tuple(&[&gil.int(1)?, &gil.int(0)?]))?;
    set(text("wsgi.version")?, &wsgi_version)?;
    set(text("wsgi.url_scheme")?, &text(if https { "https" } else { "http" })?)?;
    set(text("wsgi.input")?, input)?;
    set(text("wsgi.errors")?, errors)?;
    set(text("wsgi.multithread")?, &gil.bool(info.multithread))?;
    set(text("wsgi.multiprocess")?, &gil.bool(info.multiprocess))?;
    set(text("wsgi.run_once")?, &gil.bool(false))?;
    set(text("wsgi.input_terminated")?, &gil.bool(true))?;
    set(text("wsgi.file_wrapper")?, file_wrapper)?;
    set(text("mod_wsgi.process_group")?, &text(info.process_group)?)?;
    set(text("mod_wsgi.application_group")?, &text(info.application_group)?)?;
    set(text("mod_wsgi.callable_object")?, &text("handle_request")?)?;
    set(text("mod_wsgi.handler_script")?, &text(info.handler_script)?)?;
    set(text("mod_wsgi.request_handler")?, &text(info.request_handler)?)?;
    let version = cache.constant(gil, "mod_wsgi.version", || {
        version_tuple(gil, parse_version(env!("CARGO_PKG_VERSION")))
    })?;
    set(text("mod_wsgi.version")?, &version)?;
    let apache = cache.constant(gil, "apache.version", || version_tuple(gil, info.apache_version))?;
    set(text("apache.version")?, &apache)?;
    set(
        text("mod_wsgi.script_reloading")?,
        &text(if info.script_reloading { "1" } else { "0" })?,
    )?;
    Ok(environ)
}

#[cfg(test)]
mod tests {
    use super::{parse_version, script_name};

    #[test]
    fn versions_parse_leniently() {
        assert_eq!(parse_version("2.4.71 (Debian)"), (2, 4, 71));
        assert_eq!(parse_version("0.1.0"), (0, 1, 0));
        assert_eq!(parse_version("2.4"), (2, 4, 0));
        assert_eq!(parse_version(""), (0, 0, 0));
    }

    #[test]
    fn script_name_strips_path_info_and_collapses_slashes() {
        assert_eq!(script_name("/a.myext/extra", "/extra"), "/a.myext");
        assert_eq!(script_name("//api//x", ""), "/api/x");
        assert_eq!(script_name("/api", ""), "/api");
    }
}
