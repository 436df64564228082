//! A control panel embedding `aps_controller` for restore and migration: it registers two
//! instances of the `sh-sample` fixture package (its backup-script is `sufficient`, so no
//! database server is needed) through the registry API, backs up the first, restores it,
//! migrates it into the second (another URL and web folder), and prints each report.
//!
//!     cargo run --example migrate [-- --json]
//!
//! Everything happens in a temporary folder that is removed at the end.

use std::process::ExitCode;

use aps_controller::operation::{BackupRequest, MigrateRequest, RestoreRequest};
use aps_controller::registry::{self, InstanceFile, StateDir};
use aps_controller::{Controller, ControllerConfig, OperationError};
use camino::{Utf8Path, Utf8PathBuf};

fn main() -> ExitCode {
    let json = std::env::args().any(|a| a == "--json");
    match run(json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the panel shows for a failed operation: the class of failure (its exit code in the
/// CLI), the step of the standard's scenario, and the message with the script's stderr tail.
fn describe(e: OperationError) -> String {
    let mut s = format!("[{} at step {}] {e}", e.kind().as_str(), e.step());
    if let Some(stderr) = e.script_stderr() {
        s.push_str(&format!("\nscript stderr:\n{stderr}"));
    }
    s
}

fn run(json: bool) -> Result<(), String> {
    let repo = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let package = repo.join("fixtures/packages/sh-sample");
    let tmp = tempfile::Builder::new()
        .prefix("aps-migrate-example-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let root = Utf8Path::from_path(tmp.path()).ok_or("temporary folder is not UTF-8")?;

    // 1. The controller over its state folder; opening it rolls back what a killed run left.
    let state = StateDir::at(root.join("state"));
    // The example makes the web folders itself: run as root, they are root's, and a tenant's
    // scripts never run as root unless the configuration says so (controller.toml:
    // `allow-root-scripts = true`). A real panel gives each instance its own account instead
    // (`user = "…"`, or the owner of its web folder; docs/security.md).
    let mut config = ControllerConfig::new(state.clone());
    config.allow_root_scripts = true;
    let controller = Controller::open(config).map_err(describe)?;

    // 2. Two instances of the same package, each with its own URL and web folder, registered
    //    through the registry API (validated against APP-META.xml; nothing stored on error).
    for (name, url) in [
        ("shop", "http://shop.example.test/"),
        ("shop-staging", "https://staging.example.test:8443/shop/"),
    ] {
        let www = root.join(format!("www/{name}"));
        std::fs::create_dir_all(www.join("cache")).map_err(|e| e.to_string())?;
        std::fs::write(www.join("index.html"), format!("<h1>{name}</h1>\n"))
            .map_err(|e| e.to_string())?;
        let toml = format!(
            "name = \"{name}\"\npackage = \"{package}\"\nbase-url = \"{url}\"\n\
             [web-dirs]\n\"/\" = \"{www}\"\n\
             [settings]\nadmin_name = \"admin\"\nadmin_password = \"secret\"\n"
        );
        let file = InstanceFile::parse(&toml, Some(root)).map_err(|e| e.to_string())?;
        let instance = registry::register_file(controller.store(), &state, &file, false)
            .map_err(|e| e.to_string())?;
        println!("registered {} at {}", instance.name, instance.base_url);
    }

    // 3. Backup: the panel names the file.
    let backup_file = root.join("shop.bak");
    let backup = controller
        .backup(&BackupRequest::new("shop", &backup_file))
        .map_err(describe)?;
    print("backup", &backup, json);

    // 4. Restore it into the same instance: verified first, safety snapshot, put back on
    //    failure.
    let restore = controller
        .restore(&RestoreRequest::new("shop", &backup_file))
        .map_err(describe)?;
    print("restore", &restore, json);

    // 5. Migrate into the staging instance: backup of `shop`, restore into `shop-staging`
    //    with staging's own environment; the intermediate file is removed.
    let migrate = controller
        .migrate(&MigrateRequest::new("shop", "shop-staging"))
        .map_err(describe)?;
    print("migrate", &migrate, json);

    // What the package's restore script saw at the target: the target's URL and folder.
    let env = std::fs::read_to_string(root.join("www/shop-staging/.aps-restore-env"))
        .map_err(|e| e.to_string())?;
    for line in env
        .lines()
        .filter(|l| l.starts_with("BASE_URL_") || l.starts_with("WEB___DIR"))
    {
        println!("  staging restore script saw {line}");
    }

    // 6. A refused restore: a backup file changed by one byte never touches the instance.
    let mut bytes = std::fs::read(&backup_file).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    let tampered = root.join("tampered.bak");
    std::fs::write(&tampered, bytes).map_err(|e| e.to_string())?;
    match controller.restore(&RestoreRequest::new("shop", &tampered)) {
        Ok(_) => return Err("a tampered backup was restored".into()),
        Err(e) => println!(
            "refused as expected (exit code {}): {}",
            e.kind().exit_code(),
            describe(e)
        ),
    }
    Ok(())
}

fn print<T: serde::Serialize + std::fmt::Debug>(what: &str, report: &T, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "operation": what, "report": report })
        );
    } else {
        println!("{what}: {report:#?}");
    }
}
