//! Controller overhead of one backup over running the same backup-script bare.
//!
//!     cargo bench --bench backup_overhead [-- RUNS]
//!
//! Three timings, each the median of RUNS (default 25) runs, on the `sh-sample` fixture (a
//! `sufficient` sh script: the backup file is exactly what the script writes):
//! - bare: `/bin/sh scripts/backup backup` with the same environment the controller gives it;
//! - library: `Controller::backup` (parse, lock, journal, checks, run, fsync, rename, SHA-256);
//! - CLI: `aps-controller backup NAME --to FILE`, process start and registry load included.
//!
//! Run as root, the `bench` instance belongs to the account `aps-tenant1` when it exists
//! (scripts/ci/test-user.sh makes it), so the library and CLI timings include the privilege
//! drop, the run folder and the take-back of the backup file; `Controller::backup as root`
//! times the same instance made by root (controller.toml's `allow-root-scripts`), without.
//!
//! And, for scale, the library on the shipped demo (not `sufficient`: the controller also
//! archives the web folder). Prints the medians and the overheads in ms.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use aps_controller::operation::BackupRequest;
use aps_controller::registry::{self, StateDir};
use aps_controller::{Controller, ControllerConfig};
use camino::{Utf8Path, Utf8PathBuf};

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(25);
    let repo = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
    let state = StateDir::at(root.join("state"));
    // `bench-root` is made by root: allowed to run as root, for comparison.
    let mut config = ControllerConfig::new(state.clone());
    config.allow_root_scripts = true;
    let controller = Controller::open(config).unwrap();
    let tenant = aps_controller::account::controller_is_root()
        .then(|| aps_controller::account::Account::lookup("aps-tenant1", None).ok())
        .flatten();

    // The sh-sample instance, as the integration tests register it.
    for (name, account) in [("bench", tenant.as_ref()), ("bench-root", None)] {
        let www = root.join(format!("www-{name}"));
        std::fs::create_dir_all(www.join("cache")).unwrap();
        std::fs::write(www.join("index.html"), "<h1>bench</h1>\n").unwrap();
        if let Some(a) = account {
            for p in [www.clone(), www.join("cache"), www.join("index.html")] {
                std::os::unix::fs::chown(&p, Some(a.uid), Some(a.gid)).unwrap();
            }
        }
        let toml = root.join(format!("{name}.toml"));
        std::fs::write(
            &toml,
            format!(
                "name = \"{name}\"\npackage = \"{}\"\nbase-url = \"http://bench.example.test/\"\n\
                 [web-dirs]\n\"/\" = \"{www}\"\n[settings]\nadmin_password = \"pw\"\n",
                repo.join("fixtures/packages/sh-sample")
            ),
        )
        .unwrap();
        registry::register(controller.store(), &state, &toml, false).unwrap();
    }
    // The demo's web folder must belong to its account (`nobody`): a copy, given to it.
    let mut demo_file =
        registry::InstanceFile::load(&repo.join("examples/demo/INSTANCE.toml")).unwrap();
    let demo_www = root.join("www-demo");
    let copied = Command::new("cp")
        .args([
            "-R",
            repo.join("examples/demo/www").as_str(),
            demo_www.as_str(),
        ])
        .status()
        .unwrap();
    assert!(copied.success());
    if aps_controller::account::controller_is_root() {
        let owned = Command::new("chown")
            .args(["-R", "nobody:", demo_www.as_str()])
            .status()
            .unwrap();
        assert!(owned.success());
    }
    demo_file.web_dirs.insert("/".into(), demo_www);
    registry::register_file(controller.store(), &state, &demo_file, false).unwrap();

    let out = root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut n = 0;
    let mut next = || {
        n += 1;
        out.join(format!("b{n}"))
    };

    // One backup first: its file is the environment the script received, reused bare.
    let first = next();
    controller
        .backup(&BackupRequest::new("bench", &first))
        .unwrap();
    let env = env_of(&first);
    let scripts = repo.join("fixtures/packages/sh-sample/scripts");

    let bare = median(runs, || {
        let file = next();
        let t = Instant::now();
        let status = Command::new("/bin/sh")
            .arg(scripts.join("backup"))
            .arg("backup")
            .current_dir(&scripts)
            .env_clear()
            .envs(&env)
            .env("BACKUP_FILE", file.as_str())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        t.elapsed()
    });
    let library = median(runs, || {
        let file = next();
        let t = Instant::now();
        controller
            .backup(&BackupRequest::new("bench", &file))
            .unwrap();
        t.elapsed()
    });
    let as_root = median(runs, || {
        let file = next();
        let t = Instant::now();
        controller
            .backup(&BackupRequest::new("bench-root", &file))
            .unwrap();
        t.elapsed()
    });
    let cli = median(runs, || {
        let file = next();
        let t = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_aps-controller"))
            .args(["backup", "bench", "--to", file.as_str(), "--state-dir"])
            .arg(state.root().as_str())
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        t.elapsed()
    });
    let demo = median(runs, || {
        let file = next();
        let t = Instant::now();
        controller
            .backup(&BackupRequest::new("demo-blog", &file))
            .unwrap();
        t.elapsed()
    });

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("backup overhead, median of {runs} runs (sh-sample, sufficient sh script)");
    println!(
        "  instance account: {}",
        tenant
            .as_ref()
            .map_or("the controller's own (no drop)", |a| a.name.as_str())
    );
    println!("  bare script            {:8.2} ms", ms(bare));
    println!(
        "  Controller::backup     {:8.2} ms   overhead {:+.2} ms",
        ms(library),
        ms(library) - ms(bare)
    );
    println!(
        "  Controller::backup as root (no drop) {:8.2} ms   overhead {:+.2} ms",
        ms(as_root),
        ms(as_root) - ms(bare)
    );
    println!(
        "  aps-controller backup  {:8.2} ms   overhead {:+.2} ms",
        ms(cli),
        ms(cli) - ms(bare)
    );
    println!(
        "  demo (controller archive of the web folder + script part): {:.2} ms",
        ms(demo)
    );
}

fn median(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut v: Vec<Duration> = (0..runs).map(|_| f()).collect();
    v.sort();
    v[v.len() / 2]
}

/// The `NAME=value` lines the fixture script writes (its whole environment).
fn env_of(file: &Utf8Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| *k != "BACKUP_FILE" && *k != "PWD")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
