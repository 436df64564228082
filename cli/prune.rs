//! `aps-controller prune [--dry-run]`: retention applied to the backup store, the remote and
//! the repository store (aps_panel::prune).

use std::process::ExitCode;

use aps_controller::error::human_bytes;
use aps_controller::journal::OperationKind;
use aps_panel::prune::StorePrune;
use aps_panel::store::{PruneReport, RepositoryPrune};
use serde_json::json;

use crate::common::{Failure, Out, StateArgs};
use crate::policy::{finish, logged, open};

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Show what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: PruneArgs) -> ExitCode {
    let out = Out::new(args.json);
    // A dry run changes nothing: it leaves no entry in the journal.
    let state = args.state.clone();
    let what = (!args.dry_run).then(|| (OperationKind::Prune, "all".to_owned(), &state));
    finish(out, logged(what, |note| prune(out, args, note)))
}

fn prune(out: Out, args: PruneArgs, note: &mut Option<String>) -> Result<ExitCode, Failure> {
    let PruneArgs {
        dry_run,
        json: _,
        state,
    } = args;
    let (panel, _) = open(&state)?;
    let now = jiff::Timestamp::now();
    let pruned = panel.store.prune(&panel.cx(), now, dry_run).map_err(|e| {
        let mut f = Failure::new(e.kind, e.message);
        if let Some(r) = e.repository {
            f = f.with("repository", r);
        }
        f.with("stores", serde_json::to_value(&e.done).expect("serialise"))
    })?;
    let (done, repository) = (pruned.stores, pruned.repository);
    *note = Some(
        done.iter()
            .map(print_prune)
            .chain(repository.as_ref().map(print_repository_prune))
            .collect::<Vec<_>>()
            .join("; "),
    );
    let mut report = json!({ "dry_run": dry_run, "stores": done });
    if let Some(r) = &repository {
        report["repository"] = serde_json::to_value(r).expect("serialise");
    }
    Ok(out.success(&report, || {
        let mut lines: Vec<String> = done.iter().map(print_prune).collect();
        lines.extend(repository.as_ref().map(print_repository_prune));
        lines.join("\n")
    }))
}

fn print_repository_prune(p: &RepositoryPrune) -> String {
    let verb = if p.dry_run { "would forget" } else { "forgot" };
    let mut text = format!(
        "repository {}: kept {} snapshot(s), {verb} {}, ignored {}",
        p.repository,
        p.kept.len(),
        p.forgotten.len(),
        p.ignored.len()
    );
    for s in &p.forgotten {
        text += &format!("\n  {verb} {} {} {}", &s.id[..8], s.instance, s.time);
    }
    if let Some(r) = &p.prune {
        text += &format!("\n  {}", pack_prune_text(r));
    }
    text
}

/// `prune: 3 pack(s) deleted (1.2 MiB), …`: what a repository's prune did, for `prune` and
/// `run` alike.
pub(crate) fn pack_prune_text(r: &PruneReport) -> String {
    format!(
        "prune: {} pack(s) deleted ({}), {} marked for the next prune, {} repacked",
        r.deleted_packs,
        human_bytes(r.deleted_bytes),
        r.marked_packs + r.unindexed_packs,
        r.repacked_packs
    )
}

fn print_prune(p: &StorePrune) -> String {
    let verb = if p.dry_run { "would remove" } else { "removed" };
    let mut text = format!(
        "{}: kept {}, {verb} {}, ignored {}",
        p.store,
        p.kept.len(),
        p.removed.len(),
        p.ignored.len()
    );
    for k in &p.removed {
        text += &format!("\n  {verb} {k}");
    }
    text
}
