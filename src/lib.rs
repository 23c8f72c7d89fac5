//! mod_wsgi_rs: an Apache httpd module that runs Python WSGI handler scripts
//! (mod_wsgi's `WSGIHandlerScript`).
//!
//! Layers, bottom up: `ffi` (bindgen) → `apache` and `python` (the only places
//! with `unsafe`) → `config` (pure directive logic) and `wsgi` (PEP 3333).

#![cfg_attr(test, allow(dead_code, unused_imports))]

pub mod config;
pub mod daemon;
mod log;
mod python;
mod wsgi;

#[cfg(not(test))]
mod apache;
/// Unit tests build without httpd's symbols: only the parts of `apache` that need none.
#[cfg(test)]
mod apache {
    pub mod fdpass;
}
#[cfg(not(test))]
mod ffi;
#[cfg(not(test))]
mod module;
