//! The helpers the workspace's tests share (a dev-dependency only, never shipped): a sandbox
//! with a private state folder, instances registered from fixture packages and the real
//! `aps-controller` binary; real database servers ([`database`]), a hostile tenant
//! ([`tenant`]), restore kits, crafted archives, the S3 server, `serve`, the JSON schema.

pub mod craft;
pub mod database;
pub mod fault_proxy;
pub mod garage;
pub mod repository;
pub mod restore_kit;
pub mod root;
pub mod s3_env;
pub mod schema;
pub mod serve;
pub mod tenant;

pub use root::{needs_root, reachable_copy, reachable_tree, skipped_on_purpose};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use camino::{Utf8Path, Utf8PathBuf};
use tempfile::TempDir;

/// The repository root (the folder above this crate's).
pub fn repo() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lies inside the repository")
        .to_owned()
}

/// The `aps-controller` binary cargo built for the running test: `CARGO_BIN_EXE_aps-controller`
/// (set for a test of the root package while it runs), else beside the test binary's `deps/`
/// folder, where cargo puts it.
pub fn cli_exe() -> Utf8PathBuf {
    if let Ok(exe) = std::env::var("CARGO_BIN_EXE_aps-controller") {
        return exe.into();
    }
    let me = std::env::current_exe().expect("the test binary's path");
    let me = Utf8PathBuf::from_path_buf(me).expect("a UTF-8 build folder");
    let exe = me
        .parent()
        .and_then(Utf8Path::parent)
        .map(|dir| dir.join("aps-controller"))
        .expect("the test binary lies in a build folder's deps/");
    assert!(
        exe.is_file(),
        "{exe} is missing: the aps-controller binary is built for the root package's tests"
    );
    exe
}

pub fn fixture(name: &str) -> Utf8PathBuf {
    repo().join("fixtures/packages").join(name)
}

/// A sandbox: a state folder, a place for web folders and backups, and the CLI.
pub struct Sandbox {
    pub dir: TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A sandbox whose instances (web folders made by the test, as root) run as root: its
    /// controller.toml allows it. The tests of the tenant accounts use [`Sandbox::for_tenants`].
    pub fn new() -> Self {
        let sb = Self::bare();
        sb.configure("");
        sb
    }

    /// A sandbox with no controller.toml: a root-owned instance is refused, as in production.
    /// Its folder is open for traversal (0711) so that other accounts reach what tests give
    /// them inside.
    pub fn for_tenants() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let sb = Self::bare();
        std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        sb
    }

    fn bare() -> Self {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("aps-it-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn root(&self) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(self.dir.path().to_path_buf()).expect("utf-8 temp dir")
    }

    pub fn state(&self) -> Utf8PathBuf {
        self.root().join("state")
    }

    pub fn path(&self, rel: &str) -> Utf8PathBuf {
        self.root().join(rel)
    }

    /// `aps-controller ARGS… --state-dir STATE` (no inherited state-dir variable).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run aps-controller")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cli_exe());
        cmd.args(args)
            .arg("--state-dir")
            .arg(self.state().as_str())
            .env_remove("APS_CONTROLLER_STATE_DIR");
        cmd
    }

    /// Writes an INSTANCE.toml for `package` with a fresh web root `www-<name>/` holding a
    /// couple of files, registers it, and returns the web root.
    pub fn register(&self, name: &str, package: &str, extra_toml: &str) -> Utf8PathBuf {
        self.register_with(name, package, extra_toml, &[])
    }

    /// [`Sandbox::register`] of the `sh-sample` fixture with its settings filled and
    /// `behaviour` (`normal`, `fail-after-half`, `hang`, …: its backup script's failure modes).
    pub fn register_sh(&self, name: &str, behaviour: &str) -> Utf8PathBuf {
        self.register(
            name,
            "sh-sample",
            &format!(
                "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n\
                 behaviour = \"{behaviour}\"\n"
            ),
        )
    }

    /// [`Sandbox::register`] with more arguments for `instance register` (e.g. `--no-connect`).
    pub fn register_with(
        &self,
        name: &str,
        package: &str,
        extra_toml: &str,
        args: &[&str],
    ) -> Utf8PathBuf {
        self.register_from(name, &fixture(package), extra_toml, args)
    }

    /// [`Sandbox::register_with`] from the package folder `package` (e.g. a copy of a
    /// fixture that another account can read) instead of a fixture of the repository.
    pub fn register_from(
        &self,
        name: &str,
        package: &Utf8Path,
        extra_toml: &str,
        args: &[&str],
    ) -> Utf8PathBuf {
        let www = self.path(&format!("www-{name}"));
        std::fs::create_dir_all(www.join("cache")).unwrap();
        std::fs::write(www.join("index.html"), format!("<h1>{name}</h1>\n")).unwrap();
        std::fs::write(www.join("cache/data.bin"), [0u8, 1, 2, 255]).unwrap();
        let toml = format!(
            "name = \"{name}\"\npackage = \"{}\"\nbase-url = \"http://{name}.example.test/blog/\"\n\
             [web-dirs]\n\"/\" = \"{www}\"\n{extra_toml}",
            package
        );
        let file = self.path(&format!("{name}.toml"));
        std::fs::write(&file, toml).unwrap();
        let mut register = vec!["instance", "register", "--file", file.as_str()];
        register.extend_from_slice(args);
        let out = self.cli(&register);
        assert_success(&out, "instance register");
        www
    }

    /// Chooses the repository store (panel.toml `[store] kind = "repository"`, in the state
    /// folder) and initialises it with `store init`.
    pub fn use_repository(&self) {
        std::fs::create_dir_all(self.state()).unwrap();
        std::fs::write(
            self.state().join("panel.toml"),
            "[store]\nkind = \"repository\"\n",
        )
        .unwrap();
        assert_success(&self.cli(&["store", "init", "--json"]), "store init");
    }

    /// Chooses the repository store in a bucket (panel.toml `[store.s3]`, prefix
    /// `<prefix>repo`, the secret key in a file of the sandbox); `store init` is left to the
    /// test.
    pub fn choose_s3_repository(
        &self,
        endpoint: &str,
        bucket: &str,
        prefix: &str,
        access_key: &str,
        secret_key: &str,
    ) {
        let secret = self.path("s3-secret");
        std::fs::write(&secret, format!("{secret_key}\n")).unwrap();
        std::fs::create_dir_all(self.state()).unwrap();
        std::fs::write(
            self.state().join("panel.toml"),
            format!(
                "[store]\nkind = \"repository\"\n[store.s3]\nendpoint = \"{endpoint}\"\n\
                 bucket = \"{bucket}\"\nprefix = \"{prefix}repo\"\naccess-key-id = \"{access_key}\"\n\
                 secret-access-key-file = \"{secret}\"\n"
            ),
        )
        .unwrap();
    }

    /// Writes `controller.toml` in the state folder. Unless `toml` sets it, it allows
    /// root-owned instances (`allow-root-scripts = true`): the sandbox's web folders are made
    /// by the test as root.
    pub fn configure(&self, toml: &str) {
        std::fs::create_dir_all(self.state()).unwrap();
        let toml = if toml.contains("allow-root-scripts") {
            toml.to_owned()
        } else {
            format!("allow-root-scripts = true\n{toml}")
        };
        std::fs::write(self.state().join("controller.toml"), toml).unwrap();
    }
}

/// A copy of `fixture` (a fixture package) at `sb/<name>` whose script `script` is `text`.
pub fn package_with_script(
    sb: &Sandbox,
    fixture_name: &str,
    name: &str,
    script: &str,
    text: &str,
) -> Utf8PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let pkg = sb.path(name);
    let out = Command::new("cp")
        .args(["-R", fixture(fixture_name).as_str(), pkg.as_str()])
        .output()
        .unwrap();
    assert_success(&out, "cp -R");
    let path = pkg.join("scripts").join(script);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    pkg
}

/// `chown -R UID:GID path`.
pub fn chown_r(path: &Utf8Path, uid: u32, gid: u32) {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path.as_str())
        .output()
        .unwrap();
    assert_success(&out, "chown -R");
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The `NAME=value` lines a fixture backup script writes, as a map.
pub fn env_dump(path: &Utf8Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Names of the entries of `dir` (not recursive), sorted.
pub fn entries(dir: &Utf8Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every entry under `root` but the top-level names in `skip`, not following symlinks: relative
/// path → type, mode, size and content (a file's SHA-256, a symlink's target). Two states that
/// compare equal mean nothing there was made, changed or removed.
pub fn tree_state(root: &Utf8Path, skip: &[&str]) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string();
            if skip.contains(&rel.as_str()) {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                hex::encode(Sha256::digest(std::fs::read(&p).unwrap()))
            } else if m.is_symlink() {
                std::fs::read_link(&p).unwrap().display().to_string()
            } else {
                String::new()
            };
            out.insert(
                rel,
                format!("{:?} {:o} {} {content}", m.file_type(), m.mode(), m.len()),
            );
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

pub fn pid_alive(pid: i32) -> bool {
    // /proc/PID exists for zombies too; a zombie is not running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn exists(p: impl AsRef<Path>) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// `[databases.ID]` of INSTANCE.toml for a database (a test database's facts, password too).
pub fn db_toml(id: &str, db: &aps_controller::database::Database) -> String {
    format!(
        "[databases.{id}]\ntype = \"{}\"\nname = \"{}\"\nlogin = \"{}\"\npassword = \"{}\"\n\
         host = \"{}\"\nport = {}\n",
        db.kind.as_str(),
        db.name,
        db.login,
        db.password.expose(),
        db.host,
        db.port
    )
}

/// An age identity and its recipient, written to `dir/identity.txt`.
pub fn age_identity(dir: &Utf8Path) -> (Utf8PathBuf, String) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let path = dir.join("identity.txt");
    std::fs::write(&path, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    (path, identity.to_public().to_string())
}

/// A fresh MariaDB and PostgreSQL database, each with its own login, for one test.
pub struct Dbs {
    pub mysql: database::TestDatabase,
    pub pg: database::TestDatabase,
}

/// Registers `name`, an instance of `nobackup-sample` (no backup-script: what the repository
/// store backs up) with real databases on the test servers; keep the databases alive while
/// the instance is used. Returns its web folder.
pub fn register_without_script(sb: &Sandbox, name: &str) -> (Utf8PathBuf, Dbs) {
    let dbs = databases(name).expect("the test database servers: scripts/ci/start-services.sh");
    let www = sb.register(
        name,
        "nobackup-sample",
        &format!(
            "[settings]\nadmin_password = \"pw\"\n{}{}",
            db_toml("main", &dbs.mysql),
            db_toml("stats", &dbs.pg)
        ),
    );
    (www, dbs)
}

/// Fresh databases on both test servers, or `None` when the suite runs without servers.
pub fn databases(hint: &str) -> Option<Dbs> {
    use crate::database::create_database;
    use aps_controller::database::DbKind;
    Some(Dbs {
        mysql: create_database(DbKind::Mysql, hint)?,
        pg: create_database(DbKind::Postgresql, hint)?,
    })
}

/// `aps-controller ARGS… --help`, as printed on stdout.
pub fn help(args: &[&str]) -> String {
    let out = Command::new(cli_exe())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Subcommand names `ARGS… --help` lists under "Commands:" (without `help`).
pub fn subcommands(args: &[&str]) -> Vec<String> {
    help(args)
        .split("Commands:")
        .nth(1)
        .unwrap_or("")
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

/// Every command `--help` lists, as its words: a top-level command, or a group's subcommand.
pub fn commands() -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for top in subcommands(&[]) {
        let subs = subcommands(&[&top]);
        if subs.is_empty() {
            all.push(vec![top]);
        } else {
            all.extend(subs.into_iter().map(|s| vec![top.clone(), s]));
        }
    }
    all
}

/// A tmpfs mounted for one test, unmounted when dropped.
pub struct Tmpfs {
    dir: Utf8PathBuf,
}

impl Tmpfs {
    /// `None` (said on stderr) when the run skips root tests or the mount fails; not root
    /// otherwise fails the test ([`needs_root`]).
    pub fn mount(dir: &Utf8Path, size: &str) -> Option<Tmpfs> {
        if !needs_root("a tmpfs") {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            // mode=0755: a destination folder others can write to is refused by itself.
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.as_str())
            .output()
            .unwrap();
        if !out.status.success() {
            // Not root (or no mount permission): the full-disk tests need a real small disk.
            eprintln!(
                "skipped: cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(Tmpfs {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.as_str()).status();
    }
}
