//! Fuzzes the directive and option parser (src/config): arbitrary words for
//! every directive must give a value or an error text, never a panic, and
//! `%{…}` group values must expand without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../src/config/mod.rs"]
mod config;

const DIRECTIVES: [&str; 13] = [
    "WSGIHandlerScript",
    "WSGIApplicationGroup",
    "WSGIProcessGroup",
    "WSGIPassAuthorization",
    "WSGIScriptReloading",
    "WSGIChunkedRequest",
    "WSGIDaemonProcess",
    "WSGISocketPrefix",
    "WSGIPythonHome",
    "WSGIPythonPath",
    "WSGICallableObject",
    "WSGINoSuchDirective",
    "",
];

struct Ctx;

impl config::GroupContext for Ctx {
    fn server_hostname(&self) -> String {
        "example.com".into()
    }
    fn server_port(&self) -> u16 {
        8080
    }
    fn host_header(&self) -> Option<String> {
        Some("h:1".into())
    }
    fn script_name(&self) -> String {
        "/s".into()
    }
    fn env(&self, name: &str) -> Option<String> {
        (name.len() % 2 == 0).then(|| format!("%{{ENV:{name}}}"))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    // Words split on NUL, as if each were one (possibly quoted) argument.
    let words: Vec<String> = text.split('\0').map(str::to_string).collect();
    let name = DIRECTIVES[pick as usize % DIRECTIVES.len()];
    let resolve = |p: &str| if p.starts_with('/') { p.to_string() } else { format!("/srv/{p}") };
    match config::parse_directive(name, &words, &resolve) {
        Ok(config::Directive::HandlerScript(h)) => {
            for g in [h.process_group, h.application_group].into_iter().flatten() {
                let _ = g.expand(&Ctx);
            }
        }
        Ok(config::Directive::ApplicationGroup(g)) | Ok(config::Directive::ProcessGroup(g)) => {
            let _ = g.expand(&Ctx);
        }
        Ok(_) => {}
        Err(message) => assert!(!message.is_empty()),
    }
    for word in &words {
        if let Some(g) = config::GroupSpec::parse(word) {
            let _ = g.expand(&Ctx);
        }
    }
});
