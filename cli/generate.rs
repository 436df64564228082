//! `aps-controller completions SHELL` and `aps-controller man [--out DIR]`: shell completion
//! scripts and manual pages generated from the argument definitions themselves, so that they
//! never drift from `--help`.

use std::io::Write;
use std::process::ExitCode;

use aps_controller::error::ErrorKind;
use camino::Utf8PathBuf;
use clap::CommandFactory;

use crate::common::{Failure, Out};

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
    /// One JSON object with the script: {"ok":true,"shell":…,"script":…} (docs/json.md).
    #[arg(long)]
    json: bool,
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
    /// One JSON object: {"ok":true,"dir":…,"pages":[…]} with --out, else {"ok":true,
    /// "page":…} (docs/json.md).
    #[arg(long)]
    json: bool,
    /// Accepted as by every command; nothing of the state folder is read.
    #[command(flatten)]
    _state: crate::common::StateArgs,
}

fn command() -> clap::Command {
    // The top-level examples are added at run time in main (with this host's state folder);
    // the generated pages carry the examples without the host-specific line.
    crate::Cli::command().after_help(crate::AFTER_HELP)
}

pub fn completions(args: CompletionsArgs) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command(), "aps-controller", &mut script);
    if args.shell == clap_complete::Shell::Bash {
        // clap_complete (4.6) spells the state of a subcommand of a hyphenated program two
        // ways in its bash script: the loop arrives at `aps__controller__subcmd__restore`,
        // the case arms say `aps__subcmd__controller__subcmd__restore`, so no option of a
        // subcommand would ever complete. One spelling for both (tests/commands/comforts.rs checks).
        let text =
            String::from_utf8_lossy(&script).replace("aps__subcmd__controller", "aps__controller");
        script = text.into_bytes();
    }
    if args.json {
        let script = String::from_utf8_lossy(&script);
        return Out::new(true).success(
            &serde_json::json!({"shell": args.shell.to_string(), "script": script}),
            String::new,
        );
    }
    // A script for a shell to load, byte for byte (made of our own definitions, no tenant
    // text): not through the terminal escaping of `outln!`, which would spell out its tabs.
    write_stdout(&script)
}

pub fn man(args: ManArgs) -> ExitCode {
    let out = Out::new(args.json);
    let Some(dir) = args.out else {
        let mut page = Vec::new();
        if let Err(e) = clap_mangen::Man::new(command()).render(&mut page) {
            return out.failure(&Failure::new(
                ErrorKind::Internal,
                format!("cannot render the manual page: {e}"),
            ));
        }
        if args.json {
            let page = String::from_utf8_lossy(&page);
            return out.success(&serde_json::json!({ "page": page }), String::new);
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
    let mut pages: Vec<String> = match written.and_then(|()| {
        std::fs::read_dir(&dir)
            .map_err(|e| Failure::new(ErrorKind::Internal, format!("cannot list {dir}: {e}")))
    }) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("aps-controller") && n.ends_with(".1"))
            .collect(),
        Err(f) => return out.failure(&f),
    };
    pages.sort();
    out.success(&serde_json::json!({ "dir": dir, "pages": pages }), || {
        format!(
            "{} manual pages written into {dir} (read one with `man -l {dir}/aps-controller.1`)",
            pages.len()
        )
    })
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
