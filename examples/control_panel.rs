//! How a control panel embeds the controller: open it over a state folder, register the
//! shipped example instance (examples/demo/INSTANCE.toml), back it up, and print the report.
//!
//!     cargo run --example control_panel [-- --json]
//!
//! The state folder and the backup go to `target/demo/`, so the repository stays clean and
//! the backup file is there to look at afterwards (`aps-controller verify FILE`).

use std::process::ExitCode;

use aps_controller::archive::PartKind;
use aps_controller::operation::BackupRequest;
use aps_controller::registry::{self, StateDir};
use aps_controller::{Controller, ControllerConfig};
use camino::Utf8PathBuf;

fn main() -> ExitCode {
    let json = std::env::args().any(|a| a == "--json");
    match run(json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"ok": false, "error": e}));
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(json: bool) -> Result<(), String> {
    let repo = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let demo = repo.join("target/demo");
    let instance_file = repo.join("examples/demo/INSTANCE.toml");

    // 1. The controller over its state folder. Opening it also rolls back whatever an earlier,
    //    killed run left half-done; a panel logs that.
    let state = StateDir::at(demo.join("state"));
    let config = ControllerConfig::load(state.clone()).map_err(|e| e.to_string())?;
    let controller = Controller::open(config).map_err(|e| e.to_string())?;
    for note in &controller.recovered().entries {
        eprintln!("note: {note}");
    }

    // 2. Register the instance (validated against the package's APP-META.xml). A panel would
    //    do this once, when it installs the application; the example replaces its own record.
    //    A web folder must belong to the account the instance's scripts run as (`nobody`
    //    here), so the example works on a copy of examples/demo/www given to that account.
    let mut file = registry::InstanceFile::load(&instance_file).map_err(|e| e.to_string())?;
    let www = demo.join("www");
    stage_web_folder(&repo.join("examples/demo/www"), &www, file.user.as_deref())
        .map_err(|e| format!("cannot copy the demo's web folder to {www}: {e}"))?;
    file.web_dirs.insert("/".into(), www);
    let instance = registry::register_file(controller.store(), &state, &file, true)
        .map_err(|e| e.to_string())?;

    // 3. The panel names the destination; the controller does the rest and either produces a
    //    complete file or leaves nothing there.
    let stamp = jiff::Timestamp::now().strftime("%Y-%m-%d-%H-%M-%S");
    let destination = demo.join(format!("{}_manual_{stamp}.aps.tar.zst", instance.name));
    let report = controller
        .backup(&BackupRequest::new(&instance.name, &destination))
        .map_err(|e| e.to_string())?;

    // 4. The report, and what the file holds (read back, verified, and its tag checked: a
    //    file this controller did not make would be refused as untrusted).
    let manifest = controller
        .verify_archive(&report.file, None)
        .map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "report": report, "parts": manifest.parts.len()})
        );
        return Ok(());
    }
    println!(
        "backed up instance {} in {} ms",
        report.instance, report.duration_ms
    );
    println!("  file    {}", report.file);
    println!("  size    {} bytes", report.size);
    println!("  sha256  {}", report.sha256);
    println!(
        "  package {} {}-{} (APS {})",
        manifest.header.package_name,
        manifest.header.version,
        manifest.header.release,
        manifest.header.aps_version
    );
    for part in &manifest.parts {
        let what = match &part.kind {
            PartKind::WebDir { mapping_url } => format!(
                "web folder {mapping_url}: {} files, {} folders",
                part.file_count.unwrap_or(0),
                part.dir_count.unwrap_or(0)
            ),
            PartKind::DatabaseDump { db_id, kind, .. } => format!("{kind} database {db_id}"),
            PartKind::ScriptBackup => "the backup-script's own file".to_owned(),
        };
        println!("  part    {:<14} {what} ({} bytes)", part.name, part.size);
    }
    Ok(())
}

/// A fresh copy of `from` at `to`, owned by `user` when the example runs as root.
fn stage_web_folder(
    from: &camino::Utf8Path,
    to: &camino::Utf8Path,
    user: Option<&str>,
) -> std::io::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    copy_tree(from, to)?;
    let owner = user
        .filter(|_| aps_controller::account::controller_is_root())
        .and_then(|u| aps_controller::account::Account::lookup(u, None).ok());
    if let Some(a) = owner {
        chown_tree(to, a.uid, a.gid)?;
    }
    Ok(())
}

fn copy_tree(from: &camino::Utf8Path, to: &camino::Utf8Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.as_std_path().join(entry.file_name());
        let source = camino::Utf8PathBuf::try_from(entry.path()).map_err(|e| e.into_io_error())?;
        if entry.file_type()?.is_dir() {
            let target = camino::Utf8PathBuf::try_from(target).map_err(|e| e.into_io_error())?;
            copy_tree(&source, &target)?;
        } else {
            std::fs::copy(&source, target)?;
        }
    }
    Ok(())
}

fn chown_tree(dir: &camino::Utf8Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for entry in std::fs::read_dir(dir)? {
        let path = camino::Utf8PathBuf::try_from(entry?.path()).map_err(|e| e.into_io_error())?;
        if std::fs::symlink_metadata(&path)?.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}
