//! Builds the C shim and generates the httpd/APR bindings, both with the
//! flags `apxs` reports (override the tool with `APXS=/path/to/apxs`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn apxs_query(apxs: &str, var: &str) -> String {
    let out = Command::new(apxs)
        .args(["-q", var])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{apxs} -q {var}` ({e}); install apache2-dev or set APXS="));
    assert!(out.status.success(), "`{apxs} -q {var}` failed");
    String::from_utf8(out.stdout)
        .expect("apxs output is UTF-8")
        .trim()
        .to_string()
}

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    // The Python X.Y we link: WSGIPythonHome must name a home of this version.
    let python = pyo3_build_config::get().version();
    println!(
        "cargo:rustc-env=WSGI_RS_PYTHON_VERSION={}.{}",
        python.major, python.minor
    );
    println!("cargo:rerun-if-env-changed=APXS");
    println!("cargo:rerun-if-changed=src/shim");

    let apxs = env::var("APXS").unwrap_or_else(|_| "apxs".to_string());
    let mut include_dirs: Vec<String> = ["INCLUDEDIR", "APR_INCLUDEDIR", "APU_INCLUDEDIR"]
        .iter()
        .map(|v| apxs_query(&apxs, v))
        .filter(|d| !d.is_empty())
        .collect();
    include_dirs.dedup();
    let defines: Vec<String> = apxs_query(&apxs, "EXTRA_CPPFLAGS")
        .split_whitespace()
        .map(str::to_string)
        .collect();

    // The shim is linked into the cdylib only: unit-test executables cannot
    // resolve httpd's symbols, which exist only inside a running apache2.
    let mut shim = cc::Build::new();
    shim.file("src/shim/mod_wsgi.c").cargo_metadata(false).warnings(true);
    for dir in &include_dirs {
        shim.include(dir);
    }
    for flag in &defines {
        shim.flag(flag);
    }
    shim.compile("wsgi_rs_shim");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rustc-cdylib-link-arg=-Wl,--whole-archive");
    println!(
        "cargo:rustc-cdylib-link-arg={}",
        out_dir.join("libwsgi_rs_shim.a").display()
    );
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-whole-archive");
    // rustc's version script exports only Rust symbols; add the module record.
    let script = out_dir.join("exports.map");
    std::fs::write(&script, "{ global: wsgi_rs_module; };\n").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", script.display());

    let mut bindings = bindgen::Builder::default()
        .header("src/shim/wrapper.h")
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .allowlist_type("request_rec|server_rec|conn_rec|cmd_parms|module|command_rec|ap_directive_t")
        .allowlist_type("apr_bucket_brigade|apr_bucket|apr_table_entry_t|apr_array_header_t|ap_filter_t")
        .allowlist_function("ap_(get_server_description|getword_conf|server_root_relative|state_query|mpm_query|setup_client_block|should_client_block|get_client_block|add_common_vars|add_cgi_vars|set_content_type|set_content_length|pass_brigade|rwrite|rflush|get_server_banner|get_server_description|get_server_name|get_server_port|discard_request_body|get_brigade|get_server_built|construct_url|get_remote_host|escape_html2|make_full_path|http_filter|finalize_request_protocol|set_keepalive)")
        .allowlist_function("apr_(pstrdup|pstrmemdup|palloc|pcalloc|pool_cleanup_register|pool_cleanup_null|table_get|table_set|table_setn|table_add|table_addn|table_elts|table_unset|table_make|brigade_create|brigade_cleanup|brigade_destroy|bucket_transient_create|bucket_heap_create|bucket_eos_create|bucket_flush_create|bucket_pool_create|bucket_immortal_create|bucket_file_create|brigade_insert_file|file_open|os_file_put|brigade_write|brigade_puts|strerror|pool_userdata_get|pool_userdata_set|pcalloc|stat|time_now|md5|md5_init|md5_update|md5_final)")
        .allowlist_function("wsgi_rs_.*")
        .allowlist_var("ap_top_module|ap_server_conf|ap_unixd_config")
        .allowlist_function("ap_(unixd_mpm_get_retained_data|close_listeners|register_extra_mpm_process|unregister_extra_mpm_process|runtime_dir_relative)")
        .allowlist_function("apr_proc_other_child_(register|unregister)")
        .allowlist_function("ap_(find_child_by_pid|get_scoreboard_worker_from_indexes)")
        .allowlist_type("worker_score")
        .allowlist_var("SERVER_READY")
        .allowlist_type("process_rec|unixd_config_rec|apr_proc_t|ap_unixd_mpm_retained_data")
        .allowlist_var("APR_FOPEN_.*|APR_FINFO_.*|MODULE_MAGIC_.*|OK|DECLINED|DONE|HTTP_.*|APLOG_.*|AP_MPMQ_.*|AP_SQ_.*|REQUEST_.*|M_.*|APR_SUCCESS|APR_EOF|APR_EAGAIN|APR_FINFO_.*|OR_.*|RSRC_CONF|ACCESS_CONF|AP_REQ_.*|APR_MD5_DIGESTSIZE|AP_FILTER_ERROR|APR_OC_REASON_.*")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for dir in &include_dirs {
        bindings = bindings.clang_arg(format!("-I{dir}"));
    }
    for flag in &defines {
        bindings = bindings.clang_arg(flag);
    }
    bindings
        .generate()
        .expect("bindgen failed on the httpd headers")
        .write_to_file(out_dir.join("httpd_bindings.rs"))
        .unwrap();
}
