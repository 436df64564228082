//! `aps-controller completions SHELL` and `aps-controller man [--out DIR]`: shell completion
//! scripts and manual pages generated from the argument definitions themselves, so that they
//! never drift from `--help`.

use std::io::Write;
use std::process::ExitCode;

use aps_controller::error::ErrorKind;
use camino::Utf8PathBuf;
use clap::CommandFactory;

use crate::common::{Failure, Out, outln};

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
    /// Accepted as by every command; nothing of the state folder is read.
    #[command(flatten)]
    _state: crate::common::StateArgs,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write aps-controller.1 and one page per command (aps-controller-backup.1, …) into this
    /// folder, made if missing; without it, the main page is printed on stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<Utf8PathBuf>,
    /// Accepted as by every command; nothing of the state folder is read.
    #[command(flatten)]
    _state: crate::common::StateArgs,
}

fn command() -> clap::Command {
    crate::Cli::command()
}

pub fn completions(args: CompletionsArgs) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command(), "aps-controller", &mut script);
    if args.shell == clap_complete::Shell::Bash {
        // clap_complete (4.6) spells the state of a subcommand of a hyphenated program two
        // ways in its bash script: the loop arrives at `aps__controller__subcmd__restore`,
        // the case arms say `aps__subcmd__controller__subcmd__restore`, so no option of a
        // subcommand would ever complete. One spelling for both (tests/comforts.rs checks).
        let text =
            String::from_utf8_lossy(&script).replace("aps__subcmd__controller", "aps__controller");
        script = text.into_bytes();
    }
    // A script for a shell to load, byte for byte (made of our own definitions, no tenant
    // text): not through the terminal escaping of `outln!`, which would spell out its tabs.
    write_stdout(&script)
}

pub fn man(args: ManArgs) -> ExitCode {
    let out = Out::new(false);
    let Some(dir) = args.out else {
        let mut page = Vec::new();
        if let Err(e) = clap_mangen::Man::new(command()).render(&mut page) {
            return out.failure(&Failure::new(
                ErrorKind::Internal,
                format!("cannot render the manual page: {e}"),
            ));
        }
        // roff for `man -l -`, byte for byte, as the completion scripts.
        return write_stdout(&page);
    };
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| clap_mangen::generate_to(command(), &dir))
        .map_err(|e| {
            Failure::new(
                ErrorKind::Internal,
                format!("cannot write the manual pages into {dir}: {e}"),
            )
        });
    match written {
        Ok(()) => {
            outln!(
                "manual pages written into {dir} (read one with `man -l {dir}/aps-controller.1`)"
            );
            ExitCode::SUCCESS
        }
        Err(f) => out.failure(&f),
    }
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => Out::new(false).failure(&Failure::new(
            ErrorKind::Internal,
            format!("cannot write to stdout: {e}"),
        )),
    }
}
