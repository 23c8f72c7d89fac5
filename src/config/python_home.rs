//! Checking a `WSGIPythonHome` at configuration time: it must be a
//! virtualenv or installation prefix of the Python version we link.

use std::path::Path;

/// The Python `X.Y` this module was built against.
pub const PYTHON_VERSION: &str = env!("WSGI_RS_PYTHON_VERSION");

/// How Python should be pointed at a checked home.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PythonHome {
    /// A virtualenv: start Python as its `bin/python3` so `sys.prefix` is the venv.
    Venv { program: String },
    /// An installation prefix: set `PYTHONHOME`-style `home`.
    Prefix { home: String },
}

/// The `version`/`version_info` value of a pyvenv.cfg, as `X.Y`.
fn venv_version(cfg: &str) -> Option<String> {
    cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        let key = key.trim();
        if key != "version" && key != "version_info" {
            return None;
        }
        let mut parts = value.trim().split('.');
        Some(format!("{}.{}", parts.next()?, parts.next()?))
    })
}

/// Checks `home` for Python `expected` (`X.Y`); the error says what was found.
pub fn check_python_home(home: &str, expected: &str) -> Result<PythonHome, String> {
    let dir = Path::new(home);
    if !dir.is_dir() {
        return Err(format!("WSGIPythonHome '{home}' is not a directory"));
    }
    let lib = dir.join("lib").join(format!("python{expected}"));
    let cfg_path = dir.join("pyvenv.cfg");
    if let Ok(cfg) = std::fs::read_to_string(&cfg_path) {
        return match venv_version(&cfg) {
            Some(found) if found == expected => {
                let program = ["python3", "python"]
                    .iter()
                    .map(|p| dir.join("bin").join(p))
                    .find(|p| p.exists())
                    .unwrap_or_else(|| dir.join("bin").join("python3"));
                Ok(PythonHome::Venv {
                    program: program.to_string_lossy().into_owned(),
                })
            }
            Some(found) => Err(format!(
                "WSGIPythonHome '{home}' is a virtualenv for Python {found} (pyvenv.cfg), but this module runs \
                 Python {expected}; recreate it with python{expected} -m venv"
            )),
            None => Err(format!(
                "WSGIPythonHome '{home}': {} has no version line; expected a virtualenv of Python {expected}",
                cfg_path.display()
            )),
        };
    }
    if lib.join("os.py").exists() || lib.join("site-packages").is_dir() {
        return Ok(PythonHome::Prefix { home: home.to_string() });
    }
    let found: Vec<String> = std::fs::read_dir(dir.join("lib"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("python"))
                .collect()
        })
        .unwrap_or_default();
    let what = if found.is_empty() {
        "no pyvenv.cfg and no lib/pythonX.Y".to_string()
    } else {
        format!(
            "no pyvenv.cfg, and lib/ holds {} instead of python{expected}",
            found.join(", ")
        )
    };
    Err(format!(
        "WSGIPythonHome '{home}' is not a Python {expected} home: {what} (expected a virtualenv or an installation \
         prefix of Python {expected})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wsgi-rs-home-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn accepts_matching_venv_and_prefix() {
        let venv = scratch("venv");
        fs::write(
            venv.join("pyvenv.cfg"),
            "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n",
        )
        .unwrap();
        fs::create_dir_all(venv.join("bin")).unwrap();
        fs::write(venv.join("bin/python3"), "").unwrap();
        let found = check_python_home(venv.to_str().unwrap(), "3.11").unwrap();
        assert_eq!(
            found,
            PythonHome::Venv {
                program: venv.join("bin/python3").to_string_lossy().into_owned()
            }
        );

        let prefix = scratch("prefix");
        fs::create_dir_all(prefix.join("lib/python3.11")).unwrap();
        fs::write(prefix.join("lib/python3.11/os.py"), "").unwrap();
        assert!(matches!(
            check_python_home(prefix.to_str().unwrap(), "3.11"),
            Ok(PythonHome::Prefix { .. })
        ));
        let _ = fs::remove_dir_all(venv);
        let _ = fs::remove_dir_all(prefix);
    }

    #[test]
    fn rejects_other_versions_and_non_homes_saying_what_was_found() {
        let venv = scratch("old");
        fs::write(venv.join("pyvenv.cfg"), "version_info = 3.9.2.final.0\n").unwrap();
        let err = check_python_home(venv.to_str().unwrap(), "3.11").unwrap_err();
        assert!(
            err.contains("virtualenv for Python 3.9") && err.contains("runs Python 3.11"),
            "{err}"
        );

        let other = scratch("other");
        fs::create_dir_all(other.join("lib/python3.8")).unwrap();
        let err = check_python_home(other.to_str().unwrap(), "3.11").unwrap_err();
        assert!(err.contains("lib/ holds python3.8"), "{err}");

        let err = check_python_home("/nonexistent/wsgi-rs", "3.11").unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        let _ = fs::remove_dir_all(venv);
        let _ = fs::remove_dir_all(other);
    }
}
