//! A failed probe (probe.rs) as a `smelt validate` error at the option it is
//! about, saying what to install or change: the interpreter, pyarrow,
//! datatrove, a package the user's code imports, the function, class or step
//! (with the closest name), the options it takes.
//!
//! ```text
//! Probe { what: "pyarrow" | "module" | "function" | ..., message, missing, names } ──► SchemaError at `python` | `path` | `function` | ...
//! ```

use std::path::Path;

use smelt_engine::SchemaError;

use super::probe::Probe;
use super::{key, Stage};

impl Stage {
    pub(super) fn at(&self, option: &str, message: String, help: Option<String>) -> SchemaError {
        SchemaError::at_option(vec![key(option)], message, help)
    }

    pub(super) fn cannot_run(&self, e: String) -> SchemaError {
        self.at(
            "python",
            e,
            Some(format!(
                "install Python 3 with pyarrow{} (`apt-get install python3 python3-pip`, then `python3 -m pip install \
                 pyarrow`), or name an interpreter with `python:` (or SMELT_PYTHON), e.g. `.venv/bin/python`",
                if self.datatrove { " and datatrove" } else { "" }
            )),
        )
    }

    /// A failed probe as an error at the option it is about, saying what to install or change.
    pub(super) fn problem(&self, p: &Probe) -> SchemaError {
        let py = &self.common.python;
        let which = format!("`{py}` (Python {}, {})", p.python, p.executable);
        let message = p.message.clone().unwrap_or_default();
        let traceback = p.traceback.as_deref().filter(|t| !t.trim().is_empty()).map(|t| format!("\n{}", t.trim_end()));
        let missing = p.missing.as_str().map(str::to_string);
        let pip = |package: &str| format!("install it: `{py} -m pip install {package}`");
        match p.what.as_deref().unwrap_or_default() {
            "pyarrow" => self.at(
                "python",
                format!("{which} has no pyarrow, which smelt's Python workers need"),
                Some(format!("{}, or name another interpreter with `python:`", pip("pyarrow"))),
            ),
            "datatrove" => self.at(
                "python",
                format!("{which} cannot import datatrove: {message}"),
                Some(format!(
                    "{} (smelt is tested with 0.10.1), or name another interpreter with `python:`",
                    pip("datatrove")
                )),
            ),
            "module" | "step" if missing.is_some() => {
                let m = missing.unwrap_or_default();
                let code = self.request[self.keys.code].as_str().unwrap_or_default();
                // The module named in the options (or its package) is missing, rather than one it imports.
                let own = self.keys.code != "path" && (code == m || code.starts_with(&format!("{m}.")));
                if own {
                    self.at(
                        self.keys.code,
                        format!("{which} cannot import `{m}`: {message}"),
                        Some(format!(
                            "install the package that provides `{m}` into that interpreter, or fix `{}:` (modules are \
                             looked up on its path and in the pipeline file's directory)",
                            self.keys.code
                        )),
                    )
                } else {
                    self.at(
                        self.keys.code,
                        format!(
                            "{} imports `{m}`, which {which} does not have{}",
                            self.code_name(),
                            traceback.unwrap_or_default()
                        ),
                        Some(pip(m.split('.').next().unwrap_or(&m))),
                    )
                }
            }
            "module" | "step" if p.name.is_some() => {
                let name = p.name.clone().unwrap_or_default();
                self.at(self.keys.name, format!("{} has no `{name}`", self.code_name()), self.closest(&name, &p.names))
            }
            "module" | "step" => self.at(
                self.keys.code,
                format!(
                    "importing {} raised {}: {message}{}",
                    self.code_name(),
                    p.kind.as_deref().unwrap_or("an exception"),
                    traceback.unwrap_or_default()
                ),
                None,
            ),
            "function" | "class" => {
                let name = p.name.clone().unwrap_or_default();
                let what = p.what.as_deref().unwrap_or_default();
                if p.names.is_empty() && p.name.is_none() {
                    return self.at(self.keys.name, message, None);
                }
                self.at(
                    self.keys.name,
                    format!("{} has no {what} `{name}`", self.code_name()),
                    self.closest(&name, &p.names),
                )
            }
            "requirements" => {
                let pairs: Vec<(String, String)> = serde_json::from_value(p.missing.clone()).unwrap_or_default();
                let modules: Vec<&str> = pairs.iter().map(|(m, _)| m.as_str()).collect();
                let packages: Vec<&str> = pairs.iter().map(|(_, p)| p.as_str()).collect();
                self.at(
                    self.keys.code,
                    format!("{} needs {}, which {which} does not have", self.label, modules.join(", ")),
                    Some(format!("install them: `{py} -m pip install {}`", packages.join(" "))),
                )
            }
            "options" | "args" => self.at(
                self.keys.options,
                format!("{} does not take these {}: {message}", self.label, self.keys.options),
                None,
            ),
            other => self.at(self.keys.code, format!("checking {} failed ({other}): {message}", self.label), None),
        }
    }

    /// How messages name the file or module of the code.
    fn code_name(&self) -> String {
        let code = self.request[self.keys.code].as_str().unwrap_or_default();
        match self.keys.code {
            "path" => Path::new(code).file_name().map_or(code.to_string(), |f| f.to_string_lossy().into_owned()),
            "step" => format!("`{}`", code.rsplit_once('.').map_or(code, |(m, _)| m)),
            _ => format!("module `{code}`"),
        }
    }

    fn closest(&self, name: &str, names: &[String]) -> Option<String> {
        match smelt_catalog::closest(name, names.iter().map(String::as_str)) {
            Some(c) => Some(format!("did you mean `{c}`?")),
            None if names.is_empty() => None,
            None => Some(format!("it defines: {}", names.join(", "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use smelt_engine::ConfigureContext;

    use super::*;

    fn python(options: serde_json::Value) -> Stage {
        super::super::stage(options, &ConfigureContext::working_dir()).unwrap()
    }

    fn datatrove(options: serde_json::Value) -> Stage {
        super::super::datatrove::stage(options, &ConfigureContext::working_dir()).unwrap()
    }

    fn probe(what: &str, extra: serde_json::Value) -> Probe {
        let mut v =
            serde_json::json!({"ok": false, "python": "3.11.2", "executable": "/usr/bin/python3", "what": what});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    /// (option path, message, help) of an error.
    fn parts(e: SchemaError) -> (String, String, String) {
        let (path, help) = e.1.unwrap();
        let path = path.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(".");
        (path, e.0, help.unwrap_or_default())
    }

    #[test]
    fn what_is_missing_is_reported_at_its_option_with_what_to_install() {
        let s =
            python(serde_json::json!({"module": "my_pkg.rules", "function": "score", "mode": "map", "python": "py3"}));
        let (at, message, help) =
            parts(s.problem(&probe("pyarrow", serde_json::json!({"message": "No module named 'pyarrow'"}))));
        assert_eq!(at, r#"Key("python")"#);
        assert_eq!(
            message,
            "`py3` (Python 3.11.2, /usr/bin/python3) has no pyarrow, which smelt's Python workers need"
        );
        assert_eq!(help, "install it: `py3 -m pip install pyarrow`, or name another interpreter with `python:`");

        let (at, message, help) = parts(s.problem(&probe(
            "module",
            serde_json::json!({"type": "ModuleNotFoundError", "message": "No module named 'my_pkg'", "missing": "my_pkg"}),
        )));
        assert_eq!(at, r#"Key("module")"#);
        assert!(message.ends_with("cannot import `my_pkg`: No module named 'my_pkg'"), "{message}");
        assert!(help.starts_with("install the package that provides `my_pkg` into that interpreter"), "{help}");

        let (at, message, help) = parts(s.problem(&probe(
            "module",
            serde_json::json!({"type": "ModuleNotFoundError", "message": "No module named 'regex'", "missing": "regex"}),
        )));
        assert_eq!(at, r#"Key("module")"#);
        assert!(message.starts_with("module `my_pkg.rules` imports `regex`, which `py3`"), "{message}");
        assert_eq!(help, "install it: `py3 -m pip install regex`");

        let (at, message, help) =
            parts(s.problem(&probe("function", serde_json::json!({"name": "scor", "names": ["score", "other"]}))));
        assert_eq!(
            (at.as_str(), message.as_str(), help.as_str()),
            (r#"Key("function")"#, "module `my_pkg.rules` has no function `scor`", "did you mean `score`?")
        );
    }

    #[test]
    fn datatrove_and_the_packages_a_step_declares_are_named() {
        let s = datatrove(serde_json::json!({"step": "datatrove.pipeline.filters.URLFilter", "python": "py3"}));
        let (at, message, help) =
            parts(s.problem(&probe("datatrove", serde_json::json!({"message": "No module named 'datatrove'"}))));
        assert_eq!(at, r#"Key("python")"#);
        assert!(message.ends_with("cannot import datatrove: No module named 'datatrove'"), "{message}");
        assert!(help.starts_with("install it: `py3 -m pip install datatrove` (smelt is tested with 0.10.1)"), "{help}");
        let (at, message, help) = parts(s.problem(&probe(
            "requirements",
            serde_json::json!({"missing": [["tldextract", "tldextract"], ["ahocorasick", "pyahocorasick"]]}),
        )));
        assert_eq!(at, r#"Key("step")"#);
        assert!(
            message.starts_with("datatrove step `URLFilter` needs tldextract, ahocorasick, which `py3`"),
            "{message}"
        );
        assert_eq!(help, "install them: `py3 -m pip install tldextract pyahocorasick`");
        let (_, message, help) =
            parts(s.problem(&probe("step", serde_json::json!({"name": "URLFiltr", "names": ["URLFilter"]}))));
        assert_eq!(
            (message.as_str(), help.as_str()),
            ("`datatrove.pipeline.filters` has no `URLFiltr`", "did you mean `URLFilter`?")
        );
    }
}
