//! The WSGI environ: Apache's CGI variables as latin-1 `str`, plus the
//! `wsgi.*` and `mod_wsgi.*` keys.

use super::Transport;
use crate::python::{Gil, Obj, PyResult};

/// Facts about this request's handler that appear in the environ.
pub struct EnvironInfo<'a> {
    pub process_group: &'a str,
    pub application_group: &'a str,
    pub handler_script: &'a str,
    pub script_reloading: bool,
    pub multithread: bool,
    pub multiprocess: bool,
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
    environ.dict_set_str(
        "mod_wsgi.script_reloading",
        &gil.str(if info.script_reloading { "1" } else { "0" })?,
    )?;
    Ok(environ)
}

#[cfg(test)]
mod tests {
    use super::script_name;

    #[test]
    fn script_name_strips_path_info_and_collapses_slashes() {
        assert_eq!(script_name("/a.myext/extra", "/extra"), "/a.myext");
        assert_eq!(script_name("//api//x", ""), "/api/x");
        assert_eq!(script_name("/api", ""), "/api");
    }
}
