//! `aps-controller key generate`: an age key pair for encrypted backups, so that a fresh
//! machine needs no `age-keygen`. The identity (secret) goes into a new file readable by its
//! owner only; the recipient (public key) is printed, for `--recipient` or panel.toml's
//! `age-recipients`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::ExitCode;

use age::secrecy::ExposeSecret as _;
use camino::Utf8PathBuf;
use serde_json::json;

use crate::common::{Failure, Out};

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Make an age key pair: the identity into FILE (mode 600, never overwritten), the public
    /// key (age1…) on stdout.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller key generate --out /root/backup-key.txt\n  \
        # then encrypt with the printed age1… key, in panel.toml:\n  \
        #   age-recipients = [\"age1…\"]\n  \
        # and restore with the identity:\n  \
        aps-controller restore blog --latest --identity /root/backup-key.txt")]
    Generate {
        /// The identity file to create (AGE-SECRET-KEY-…); keep it off the backup machine.
        #[arg(long, value_name = "FILE")]
        out: Utf8PathBuf,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        /// Accepted as by every command; a key is not kept in the state folder.
        #[command(flatten)]
        state: crate::common::StateArgs,
    },
}

pub fn run(c: KeyCommand) -> ExitCode {
    match c {
        KeyCommand::Generate {
            out: file, json, ..
        } => {
            let out = Out::new(json);
            out.finish(generate(out, file))
        }
    }
}

fn generate(out: Out, file: Utf8PathBuf) -> Result<ExitCode, Failure> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)?;
        writeln!(
            f,
            "# created: {}\n# public key: {recipient}\n{}",
            jiff::Timestamp::now(),
            identity.to_string().expose_secret()
        )?;
        f.sync_all()
    };
    write().map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
            "; it is never overwritten: choose another --out FILE"
        } else {
            ""
        };
        Failure::usage(format!("--out {file}: {e}{hint}"))
    })?;
    Ok(out.success(
        &json!({"identity_file": file, "recipient": recipient}),
        || format!("{recipient}\n(identity written to {file}; public key above)"),
    ))
}
