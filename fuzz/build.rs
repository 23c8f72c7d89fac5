// The config parser reads the Python version the module links at compile time.
fn main() {
    println!("cargo:rustc-env=WSGI_RS_PYTHON_VERSION=3.11");
}
