//! The WSGI environ: Apache's CGI variables as latin-1 `str`, plus the
//! `wsgi.*` and `mod_wsgi.*` keys.

use super::Transport;
use crate::python::{Gil, Obj, PyResult};

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
    t: &dyn Transport,
    info: &EnvironInfo<'_>,
    input: &Obj<'py>,
    errors: &Obj<'py>,
    file_wrapper: &Obj<'py>,
) -> PyResult<Obj<'py>> {
    let environ = gil.dict()?;
    let mut failed = None;
    let mut https = false;
    t.cgi_vars(&mut |key, value| {
        if failed.is_some() {
            return;
        }
        if key == b"HTTPS" && value.eq_ignore_ascii_case(b"on") {
            https = true;
        }
        let result = gil
            .str_latin1(key)
            .and_then(|k| gil.str_latin1(value).and_then(|v| environ.dict_set(&k, &v)));
        if let Err(e) = result {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if environ.dict_get_str("QUERY_STRING").is_none() {
        environ.dict_set_str("QUERY_STRING", &gil.str("")?)?;
    }
    if environ.dict_get_str("PATH_INFO").is_none() {
        environ.dict_set_str("PATH_INFO", &gil.str("")?)?;
    }
    let version = gil.tuple(&[&gil.int(1)?, &gil.int(0)?])?;
    environ.dict_set_str("wsgi.version", &version)?;
    environ.dict_set_str("wsgi.url_scheme", &gil.str(if https { "https" } else { "http" })?)?;
    environ.dict_set_str("wsgi.input", input)?;
    environ.dict_set_str("wsgi.errors", errors)?;
    environ.dict_set_str("wsgi.multithread", &gil.bool(info.multithread))?;
    environ.dict_set_str("wsgi.multiprocess", &gil.bool(info.multiprocess))?;
    environ.dict_set_str("wsgi.run_once", &gil.bool(false))?;
    environ.dict_set_str("wsgi.input_terminated", &gil.bool(true))?;
    environ.dict_set_str("wsgi.file_wrapper", file_wrapper)?;
    environ.dict_set_str("mod_wsgi.process_group", &gil.str(info.process_group)?)?;
    environ.dict_set_str("mod_wsgi.application_group", &gil.str(info.application_group)?)?;
    environ.dict_set_str("mod_wsgi.callable_object", &gil.str("handle_request")?)?;
    environ.dict_set_str("mod_wsgi.handler_script", &gil.str(info.handler_script)?)?;
    environ.dict_set_str("mod_wsgi.request_handler", &gil.str(info.request_handler)?)?;
    environ.dict_set_str(
        "mod_wsgi.version",
        &version_tuple(gil, parse_version(env!("CARGO_PKG_VERSION")))?,
    )?;
    environ.dict_set_str("apache.version", &version_tuple(gil, info.apache_version)?)?;
    environ.dict_set_str(
        "mod_wsgi.script_reloading",
        &gil.str(if info.script_reloading { "1" } else { "0" })?,
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
