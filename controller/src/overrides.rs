//! The options of a request that an error suggests (`force` over an existing backup file), and
//! who spells them: the controller's own `Display` says the Rust API's option name; a front end
//! says its own spelling (a CLI flag, a JSON field) by formatting inside [`spelled`].
//!
//! `std::fmt` carries no context from the caller down to a nested error's `Display`, so the
//! spelling in force is kept per thread for the time of one [`spelled`] call: every error of
//! the chain, however deep, says the override the same way, and no text is rewritten after.

use std::cell::Cell;
use std::fmt;

/// An option of a request that lets a refused operation run, as an error suggests it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Override {
    /// Replace an existing backup file (`BackupRequest::force`).
    Force,
    /// Overwrite a registered instance of the same name (registration's `replace`).
    Replace,
    /// Register without trying the databases' logins (registration's `no_connect`).
    NoConnect,
    /// The age identity file that reads an encrypted backup (`RestoreRequest::identity`).
    IdentityFile,
    /// Restore another instance's backup (`RestoreRequest::from_other_instance`).
    FromOtherInstance,
    /// The instance whose package made a `sufficient` script's file (`ImportRequest::instance`).
    Instance,
    /// The new instance's name (`InstallRequest::name`).
    Name,
    /// The account an instance runs as (`InstallRequest::user`).
    User,
    /// One setting's value (`InstallRequest::settings`).
    Setting,
    /// A file of settings (the service's `settings_file`).
    SettingsFile,
    /// The database a requirement takes (`InstallRequest::databases`).
    Database,
    /// Remove only the record, keeping files and databases (`RemoveRequest::keep_data`).
    KeepData,
}

impl Override {
    pub const ALL: [Override; 12] = [
        Override::Force,
        Override::Replace,
        Override::NoConnect,
        Override::IdentityFile,
        Override::FromOtherInstance,
        Override::Instance,
        Override::Name,
        Override::User,
        Override::Setting,
        Override::SettingsFile,
        Override::Database,
        Override::KeepData,
    ];

    /// The Rust API's name of the option: what `Display` says outside [`spelled`].
    pub fn name(self) -> &'static str {
        match self {
            Override::Force => "force",
            Override::Replace => "replace",
            Override::NoConnect => "no_connect",
            Override::IdentityFile => "identity",
            Override::FromOtherInstance => "from_other_instance",
            Override::Instance => "instance",
            Override::Name => "name",
            Override::User => "user",
            Override::Setting => "settings",
            Override::SettingsFile => "settings_file",
            Override::Database => "databases",
            Override::KeepData => "keep_data",
        }
    }

    fn index(self) -> usize {
        Override::ALL
            .iter()
            .position(|o| *o == self)
            .expect("every override is in ALL")
    }
}

type Table = [&'static str; Override::ALL.len()];

thread_local! {
    static SPELLING: Cell<Option<Table>> = const { Cell::new(None) };
}

/// The spelling in force on this thread, to carry into threads the caller starts (as
/// `run`'s workers do) with [`spelled_as`].
#[derive(Debug, Clone, Copy)]
pub struct Spelling(Option<Table>);

/// The spelling in force on this thread (the neutral one outside any [`spelled`]).
pub fn current_spelling() -> Spelling {
    Spelling(SPELLING.with(Cell::get))
}

/// Runs `f` with every [`Override`] formatted as `spell` names it, then puts back the
/// spelling that was in force (also when `f` panics).
pub fn spelled<T>(spell: &dyn Fn(Override) -> &'static str, f: impl FnOnce() -> T) -> T {
    spelled_as(Spelling(Some(Override::ALL.map(spell))), f)
}

/// Runs `f` with a spelling taken by [`current_spelling`], maybe on another thread.
pub fn spelled_as<T>(spelling: Spelling, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Table>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SPELLING.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SPELLING.with(|s| s.replace(spelling.0)));
    f()
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spelled = SPELLING.with(Cell::get).map(|table| table[self.index()]);
        f.write_str(spelled.unwrap_or(self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(o: Override) -> &'static str {
        match o {
            Override::Force => "--force",
            _ => "--other",
        }
    }

    #[test]
    fn an_override_is_neutral_unless_a_front_end_spells_it() {
        assert_eq!(Override::Force.to_string(), "force");
        assert_eq!(spelled(&flag, || Override::Force.to_string()), "--force");
        // Nested spellings end where they end; a panic inside one does not leak it.
        let inner = spelled(&flag, || spelled(&|_| "x", || Override::Force.to_string()));
        assert_eq!(inner, "x");
        let _ = std::panic::catch_unwind(|| spelled(&flag, || panic!("inside")));
        assert_eq!(Override::Force.to_string(), "force");
    }

    #[test]
    fn a_spelling_is_carried_into_another_thread() {
        let spelling = spelled(&flag, current_spelling);
        let text = std::thread::spawn(move || spelled_as(spelling, || Override::Force.to_string()))
            .join()
            .unwrap();
        assert_eq!(text, "--force");
    }
}
