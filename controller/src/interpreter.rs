//! Which program runs a script of a given `script-language` (docs/scripts.md).
//!
//! Defaults: `php` → `php`, `perl` → `perl`, `python` → `python3`, `sh` → `/bin/sh`,
//! `bash` → `bash`; every entry can be overridden (or a language added) by configuration.
//! Language names are compared case-insensitively. A language with no entry, or whose program
//! is not found or not executable, is refused before anything runs.
//!
//! A bare program name is looked up on the controller's own `PATH` (or the one given with
//! [`InterpreterTable::with_search_path`]) and resolved to an absolute path, because the script
//! itself runs with the fixed [`crate::runner::SAFE_PATH`], which may not contain it.

use std::collections::BTreeMap;
use std::ffi::OsString;

use camino::{Utf8Path, Utf8PathBuf};

use crate::runner::ProcessSpec;

/// A configured interpreter: a program (name or path) and fixed leading arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpreterCommand {
    pub program: String,
    pub args: Vec<String>,
}

impl InterpreterCommand {
    /// Splits a configuration value such as `"php -n"` on whitespace: program, then arguments.
    /// (Programs whose path holds spaces go through [`InterpreterTable::with_override_argv`].)
    pub fn parse(value: &str) -> Self {
        let mut words = value.split_whitespace().map(str::to_owned);
        Self {
            program: words.next().unwrap_or_default(),
            args: words.collect(),
        }
    }
}

/// The language → interpreter table.
#[derive(Debug, Clone)]
pub struct InterpreterTable {
    entries: BTreeMap<String, InterpreterCommand>,
    search_path: Option<OsString>,
}

impl Default for InterpreterTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InterpreterTable {
    /// The table with the documented defaults.
    pub fn new() -> Self {
        let mut table = Self::empty();
        for (language, program) in [
            ("php", "php"),
            ("perl", "perl"),
            ("python", "python3"),
            ("sh", "/bin/sh"),
            ("bash", "bash"),
        ] {
            table = table.with_override(language, program);
        }
        table
    }

    /// A table with no language at all.
    pub fn empty() -> Self {
        Self {
            entries: BTreeMap::new(),
            search_path: None,
        }
    }

    /// Sets (or adds) the interpreter of `language`; `program` is split on whitespace into the
    /// program and fixed leading arguments (`"php -n"`, `"/opt/perl/bin/perl -T"`).
    pub fn with_override(self, language: &str, program: &str) -> Self {
        self.with_command(language, InterpreterCommand::parse(program))
    }

    /// Sets (or adds) the interpreter of `language` from an explicit program and arguments.
    pub fn with_override_argv(self, language: &str, program: &str, args: &[&str]) -> Self {
        self.with_command(
            language,
            InterpreterCommand {
                program: program.to_owned(),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
            },
        )
    }

    fn with_command(mut self, language: &str, command: InterpreterCommand) -> Self {
        self.entries.insert(language.to_lowercase(), command);
        self
    }

    /// Look bare program names up on this `PATH` instead of the controller's.
    pub fn with_search_path(mut self, path: impl Into<OsString>) -> Self {
        self.search_path = Some(path.into());
        self
    }

    /// The known languages, lower-case, sorted.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The configured command of a language, without checking the program exists.
    pub fn command(&self, language: &str) -> Option<&InterpreterCommand> {
        self.entries.get(&language.to_lowercase())
    }

    /// Finds the interpreter of `language` and checks its program can be executed.
    pub fn resolve(&self, language: &str) -> Result<ResolvedInterpreter, InterpreterError> {
        let command = self
            .command(language)
            .ok_or_else(|| InterpreterError::UnknownLanguage {
                language: language.to_owned(),
                known: self.languages().collect::<Vec<_>>().join(", "),
            })?;
        if command.program.is_empty() {
            return Err(InterpreterError::EmptyCommand {
                language: language.to_owned(),
            });
        }
        let program = if command.program.contains('/') {
            let path = Utf8Path::new(&command.program);
            let absolute = std::path::absolute(path)
                .ok()
                .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
                .unwrap_or_else(|| path.to_owned());
            if !crate::paths::is_program(&absolute) {
                return Err(InterpreterError::NotExecutable {
                    language: language.to_owned(),
                    program: absolute,
                });
            }
            absolute
        } else {
            let search = self
                .search_path
                .clone()
                .or_else(|| std::env::var_os("PATH"))
                .unwrap_or_default();
            crate::paths::find_program(&command.program, &search).ok_or_else(|| {
                InterpreterError::NotFound {
                    language: language.to_owned(),
                    program: command.program.clone(),
                    search_path: search.to_string_lossy().into_owned(),
                }
            })?
        };
        Ok(ResolvedInterpreter {
            language: language.to_lowercase(),
            program,
            args: command.args.clone(),
        })
    }
}

/// An interpreter found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedInterpreter {
    /// The language, lower-case.
    pub language: String,
    /// Absolute path of the program.
    pub program: Utf8PathBuf,
    /// Fixed leading arguments, before the script.
    pub args: Vec<String>,
}

impl ResolvedInterpreter {
    /// `INTERPRETER [ARGS] SCRIPT SCRIPT_ARGS…` with the script environment of
    /// [`ProcessSpec::for_script`]; the caller adds working directory and variables.
    pub fn script_command<I, S>(&self, script: &Utf8Path, script_args: I) -> ProcessSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        ProcessSpec::for_script(self.program.as_str())
            .args(&self.args)
            .arg(script.as_str())
            .args(script_args)
    }
}

/// Why no interpreter can run a script.
#[derive(Debug, thiserror::Error)]
pub enum InterpreterError {
    #[error(
        "no interpreter is configured for script-language `{language}` (known languages: {known}); add one to the configuration"
    )]
    UnknownLanguage { language: String, known: String },
    #[error("the interpreter configured for script-language `{language}` is empty")]
    EmptyCommand { language: String },
    #[error(
        "interpreter `{program}` for script-language `{language}` was not found on PATH ({search_path}); install it or configure its path"
    )]
    NotFound {
        language: String,
        program: String,
        search_path: String,
    },
    #[error(
        "interpreter {program} for script-language `{language}` does not exist or is not an executable file"
    )]
    NotExecutable {
        language: String,
        program: Utf8PathBuf,
    },
}

impl InterpreterError {
    /// The language the error is about.
    pub fn language(&self) -> &str {
        match self {
            InterpreterError::UnknownLanguage { language, .. }
            | InterpreterError::EmptyCommand { language }
            | InterpreterError::NotFound { language, .. }
            | InterpreterError::NotExecutable { language, .. } => language,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_bin(dir: &Utf8Path, name: &str, mode: u32) -> Utf8PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\necho \"$0 $*\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
        (dir, path)
    }

    #[test]
    fn defaults() {
        let table = InterpreterTable::new();
        assert_eq!(
            table.languages().collect::<Vec<_>>(),
            ["bash", "perl", "php", "python", "sh"]
        );
        assert_eq!(table.command("python").unwrap().program, "python3");
        assert_eq!(table.command("PHP").unwrap().program, "php");
        let sh = table.resolve("SH").unwrap();
        assert_eq!(sh.program, "/bin/sh");
        assert_eq!(sh.language, "sh");
    }

    #[test]
    fn looked_up_on_the_given_path() {
        let (_keep, dir) = tempdir();
        let php = fake_bin(&dir, "php", 0o755);
        let table = InterpreterTable::new().with_search_path(format!("relative:{dir}"));
        let resolved = table.resolve("php").unwrap();
        assert_eq!(resolved.program, php);
        assert!(resolved.args.is_empty());
    }

    #[test]
    fn override_with_args_and_case() {
        let (_keep, dir) = tempdir();
        let php = fake_bin(&dir, "php8.3", 0o755);
        let table = InterpreterTable::new().with_override("Php", &format!("{php} -n -d x=1"));
        let resolved = table.resolve("PHP").unwrap();
        assert_eq!(resolved.program, php);
        assert_eq!(resolved.args, ["-n", "-d", "x=1"]);
        // The command it builds really runs: `INTERPRETER ARGS SCRIPT ARG`.
        let out = resolved
            .script_command(Utf8Path::new("backup-script"), ["backup"])
            .run()
            .unwrap();
        assert_eq!(
            out.stdout_lossy(),
            format!("{php} -n -d x=1 backup-script backup\n")
        );
    }

    #[test]
    fn unknown_language_names_it_and_the_known_ones() {
        let err = InterpreterTable::new().resolve("ruby").unwrap_err();
        assert!(matches!(err, InterpreterError::UnknownLanguage { .. }));
        let msg = err.to_string();
        assert!(msg.contains("`ruby`"), "{msg}");
        assert!(msg.contains("bash, perl, php, python, sh"), "{msg}");
    }

    #[test]
    fn program_not_found_names_language_and_program() {
        let (_keep, dir) = tempdir();
        let table = InterpreterTable::new().with_search_path(dir.as_str());
        let err = table.resolve("python").unwrap_err();
        assert!(matches!(err, InterpreterError::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("`python3`") && msg.contains("`python`"),
            "{msg}"
        );
        assert_eq!(err.language(), "python");
    }

    #[test]
    fn not_executable_is_refused() {
        let (_keep, dir) = tempdir();
        let plain = fake_bin(&dir, "perl", 0o644);
        let err = InterpreterTable::new()
            .with_override("perl", plain.as_str())
            .resolve("perl")
            .unwrap_err();
        assert!(
            matches!(err, InterpreterError::NotExecutable { .. }),
            "{err:?}"
        );
        // On PATH, a non-executable file is skipped, not chosen.
        let err = InterpreterTable::new()
            .with_search_path(dir.as_str())
            .resolve("perl")
            .unwrap_err();
        assert!(matches!(err, InterpreterError::NotFound { .. }), "{err:?}");
        // A folder is not an interpreter either.
        let err = InterpreterTable::new()
            .with_override("perl", dir.as_str())
            .resolve("perl")
            .unwrap_err();
        assert!(
            matches!(err, InterpreterError::NotExecutable { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn empty_override_is_refused() {
        let err = InterpreterTable::new()
            .with_override("sh", "  ")
            .resolve("sh")
            .unwrap_err();
        assert!(
            matches!(err, InterpreterError::EmptyCommand { .. }),
            "{err:?}"
        );
    }
}
