//! PEP 3333 checks on the status line and response headers (pure).

use std::borrow::Cow;

/// Headers a WSGI application must not set (PEP 3333: hop-by-hop headers
/// belong to the server; an app's `Transfer-Encoding` would break framing).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Checks a status like `"200 OK"`; returns the numeric code.
pub fn parse_status(status: &str) -> Result<u16, String> {
    let bytes = status.as_bytes();
    let well_formed = bytes.len() >= 4 && bytes[..3].iter().all(u8::is_ascii_digit) && bytes[3] == b' ';
    if !well_formed {
        return Err(format!(
            "status {status:?} is not of the form '200 OK' (three digits, a space, a reason phrase)"
        ));
    }
    if let Some(c) = status.chars().find(|c| c.is_control()) {
        return Err(format!("status {status:?} contains the control character {c:?}"));
    }
    if status.chars().any(|c| c as u32 > 0xff) {
        return Err(format!("status {status:?} is not latin-1"));
    }
    let code: u16 = status[..3]
        .parse()
        .map_err(|_| format!("status {status:?} has no numeric code"))?;
    if code < 100 {
        return Err(format!("status code {code} is not a valid HTTP status"));
    }
    Ok(code)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Checks one response header.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("response header name is empty".into());
    }
    if let Some(c) = name.chars().find(|c| !is_token_char(*c)) {
        return Err(format!(
            "response header name {name:?} contains the invalid character {c:?}"
        ));
    }
    if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        return Err(format!(
            "response header {name:?} is hop-by-hop; a WSGI application must not set it (PEP 3333)"
        ));
    }
    if let Some(c) = value.chars().find(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Err(format!(
            "value of response header {name:?} contains the forbidden character {c:?}"
        ));
    }
    if value.chars().any(|c| c as u32 > 0xff) {
        return Err(format!("value of response header {name:?} is not latin-1"));
    }
    if name.eq_ignore_ascii_case("content-length") && (value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("Content-Length {value:?} is not a non-negative integer"));
    }
    Ok(())
}

/// A header `str` (already checked to be latin-1) as the bytes it stands for.
pub fn latin1_bytes(s: &str) -> Cow<'_, [u8]> {
    if s.is_ascii() {
        Cow::Borrowed(s.as_bytes())
    } else {
        Cow::Owned(s.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_bytes_keep_ascii_borrowed_and_encode_the_rest() {
        assert!(matches!(latin1_bytes("text/plain"), Cow::Borrowed(b"text/plain")));
        assert_eq!(&*latin1_bytes("caf\u{e9}\u{ff}"), b"caf\xe9\xff");
    }

    #[test]
    fn status_forms() {
        assert_eq!(parse_status("200 OK"), Ok(200));
        assert_eq!(parse_status("404 Not Found"), Ok(404));
        assert_eq!(parse_status("599 "), Ok(599));
        for bad in ["200", "200OK", "20 OK", "abc OK", "200 OK\r\n", "099 x", "200 \u{100}"] {
            assert!(parse_status(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_rules() {
        assert!(check_header("Content-Type", "text/plain").is_ok());
        assert!(check_header("X-Tab", "a\tb").is_ok());
        assert!(check_header("Content-Length", "12").is_ok());
        for (n, v) in [
            ("", "x"),
            ("Bad Name", "x"),
            ("Bad:Name", "x"),
            ("X", "a\r\nInjected: 1"),
            ("X", "nul\0"),
            ("Transfer-Encoding", "chunked"),
            ("connection", "close"),
            ("Content-Length", "-1"),
            ("Content-Length", "1x"),
            ("X", "\u{263a}"),
        ] {
            assert!(check_header(n, v).is_err(), "{n:?}: {v:?}");
        }
    }
}
