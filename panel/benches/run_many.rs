//! `run --periodicity daily` over many registered small instances: wall time, and CPU per
//! instance split into the controller's own (this process: panel + controller, every thread)
//! and the package scripts' (the children: `/bin/sh scripts/backup` and what it runs).
//!
//!     cargo bench -p aps-panel --bench run_many [-- INSTANCES [JOBS]]
//!
//! Defaults: 1000 instances of the `sh-sample` fixture (a `sufficient` sh backup-script, so each
//! backup is: lock, journal, parse APP-META.xml, build the environment, run the script, fsync,
//! rename, SHA-256, record, then retention of that instance), `--jobs 2`. Everything lives in a
//! temporary folder under /tmp. The same code path as `aps-controller run` (Panel, Engine,
//! `run::run`), in process so that the two CPU figures can be told apart;
//! `scripts/bench/run-many.sh` times the release binary end to end.

use std::time::Instant;

use aps_controller::registry::{self, StateDir};
use aps_controller::{Controller, ControllerConfig};
use aps_panel::progress::Quiet;
use aps_panel::run::{RunOptions, run};
use aps_panel::{Engine, Panel, Periodicity, SystemClock};
use camino::Utf8PathBuf;

#[path = "../../benches/support/rusage.rs"]
mod rusage;
use rusage::{cpu, rusage};

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let instances = args.next().unwrap_or(1000);
    let jobs = args.next().unwrap_or(2);
    let repo = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let tmp = tempfile::Builder::new()
        .prefix("aps-bench-run-many-")
        .tempdir()
        .unwrap();
    let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
    let state = StateDir::at(root.join("state"));

    let t0 = Instant::now();
    {
        // The web folders are made here, by root when run as root: allowed to run as root
        // (this bench measures the scheduling; scripts/bench/run-many.sh drops to a tenant).
        std::fs::create_dir_all(state.root()).unwrap();
        std::fs::write(
            state.root().join("controller.toml"),
            "allow-root-scripts = true\n",
        )
        .unwrap();
        let controller = Controller::open(ControllerConfig::load(state.clone()).unwrap()).unwrap();
        for i in 0..instances {
            let name = format!("site{i:04}");
            let www = root.join("www").join(&name);
            std::fs::create_dir_all(www.join("cache")).unwrap();
            std::fs::write(www.join("index.html"), format!("<h1>{name}</h1>\n")).unwrap();
            let toml = root.join("toml").join(format!("{name}.toml"));
            std::fs::create_dir_all(toml.parent().unwrap()).unwrap();
            std::fs::write(
                &toml,
                format!(
                    "name = \"{name}\"\npackage = \"{}\"\nbase-url = \"http://{name}.example.test/\"\n\
                     [web-dirs]\n\"/\" = \"{www}\"\n[settings]\nadmin_password = \"pw\"\n",
                    repo.join("fixtures/packages/sh-sample")
                ),
            )
            .unwrap();
            registry::register(controller.store(), &state, &toml, false).unwrap();
        }
    }
    println!(
        "registered {instances} sh-sample instances in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let state_dir = state.root().to_owned();
    let panel = Panel::open(&state_dir).unwrap();
    let engine = Engine::open(&state_dir).unwrap();
    let options = RunOptions {
        periodicity: Periodicity::Daily,
        instances: Vec::new(),
        jobs,
    };
    let (self0, children0) = (cpu(libc::RUSAGE_SELF), cpu(libc::RUSAGE_CHILDREN));
    let t0 = Instant::now();
    let summary = run(&panel, &engine, &options, &SystemClock, &Quiet).unwrap();
    let wall = t0.elapsed();
    let own = cpu(libc::RUSAGE_SELF) - self0;
    let scripts = cpu(libc::RUSAGE_CHILDREN) - children0;
    assert_eq!(summary.failed, 0, "some backups failed");
    let n = instances as f64;
    println!(
        "run --periodicity daily --jobs {jobs}: {} ok in {:.2} s wall ({:.1} ms/instance, {:.0} instances/s)",
        summary.succeeded,
        wall.as_secs_f64(),
        wall.as_secs_f64() * 1000.0 / n,
        n / wall.as_secs_f64()
    );
    println!(
        "CPU: controller {:.2} s ({:.2} ms/instance), scripts {:.2} s ({:.2} ms/instance)",
        own.as_secs_f64(),
        own.as_secs_f64() * 1000.0 / n,
        scripts.as_secs_f64(),
        scripts.as_secs_f64() * 1000.0 / n
    );
    println!(
        "peak RSS: controller {} MiB",
        rusage(libc::RUSAGE_SELF).ru_maxrss / 1024
    );
}
