//! `aps-controller instance …` end to end: exit codes, masking of passwords, and two
//! processes registering at once.

use std::process::{Command, Output};

use camino::Utf8PathBuf;

const APP_META: &str = r#"<application xmlns="http://apstandard.com/ns/1" version="1.2">
  <id>http://example.test/blog</id><name>Blog</name><version>1.0</version><release>1</release>
  <service id="blog">
    <settings><group>
      <setting id="admin_email" type="email"><name>E-mail</name></setting>
    </group></settings>
    <requirements xmlns:db="http://apstandard.com/ns/1/db">
      <db:db><db:id>main</db:id><db:server-type>mysql</db:server-type></db:db>
    </requirements>
    <provision>
      <url-mapping><mapping url="/" path="htdocs"/></url-mapping>
    </provision>
  </service>
</application>
"#;

struct T {
    _tmp: tempfile::TempDir,
    dir: Utf8PathBuf,
}

fn setup() -> T {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8PathBuf::from_path_buf(tmp.path().to_path_buf()).unwrap();
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    std::fs::write(dir.join("pkg/APP-META.xml"), APP_META).unwrap();
    T { _tmp: tmp, dir }
}

impl T {
    fn file(&self, name: &str, email: &str) -> Utf8PathBuf {
        // Registration requires the web folder to exist.
        std::fs::create_dir_all(self.dir.join(format!("www/{name}"))).unwrap();
        let p = self.dir.join(format!("{name}.toml"));
        let text = format!(
            r#"name = "{name}"
package = "pkg"
base-url = "https://example.test/{name}"
[web-dirs]
"/" = "www/{name}"
[settings]
admin_email = "{email}"
[databases.main]
type = "mysql"
name = "db_{name}"
login = "u"
password = "top-secret-{name}"
host = "localhost"
"#
        );
        std::fs::write(&p, text).unwrap();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_aps-controller"));
        c.arg("instance").args(args);
        // Its databases are made up (no server has them): registration would try the logins.
        if args.first() == Some(&"register") {
            c.arg("--no-connect");
        }
        c.env_remove("APS_CONTROLLER_STATE_DIR");
        c.arg("--state-dir").arg(self.dir.join("state"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn register_list_show_remove() {
    let t = setup();
    let f = t.file("blog", "a@example.test");
    let o = t.run(&["register", "--file", f.as_str()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let o = t.run(&["list", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["instances"][0]["name"], "blog");
    assert_eq!(v["instances"][0]["base-url"], "https://example.test/blog/");

    let o = t.run(&["show", "blog"]);
    assert_eq!(o.status.code(), Some(0));
    let shown = text(&o);
    assert!(shown.contains("password = \"***\""), "{shown}");
    assert!(!shown.contains("top-secret"), "{shown}");

    let o = t.run(&["show", "blog", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["databases"]["main"]["password"], "***");
    assert_eq!(v["web-dirs"]["/"], t.dir.join("www/blog").as_str());
    assert!(!text(&o).contains("top-secret"));

    // The record file is world-readable and must not hold the password either.
    let record = std::fs::read_to_string(t.dir.join("state/instances/blog.json")).unwrap();
    assert!(!record.contains("top-secret"));

    std::fs::create_dir_all(t.dir.join("www/blog")).unwrap();
    // Registered, not installed: only --keep-data removes it, and nothing is backed up first.
    let o = t.run(&["remove", "blog"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--keep-data"), "{}", text(&o));
    assert!(t.run(&["show", "blog"]).status.success());
    let o = t.run(&["remove", "blog", "--keep-data"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        t.dir.join("www/blog").is_dir(),
        "remove keeps the web folder"
    );
    assert_eq!(t.run(&["show", "blog"]).status.code(), Some(4));
    assert_eq!(
        t.run(&["remove", "blog", "--keep-data"]).status.code(),
        Some(4)
    );
}

#[test]
fn exit_codes_for_invalid_input_and_io() {
    let t = setup();
    let f = t.file("blog", "not-an-email");
    // An invalid file is bad input (usage, 2), as in the README's table.
    let o = t.run(&["register", "--file", f.as_str()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("admin_email"), "{}", text(&o));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&t.run(&["list", "--json"]).stdout).unwrap(),
        serde_json::json!({"ok": true, "instances": [], "recovered": []})
    );

    let o = t.run(&["register", "--file", t.dir.join("absent.toml").as_str()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let good = t.file("blog", "a@example.test");
    assert_eq!(
        t.run(&["register", "--file", good.as_str()]).status.code(),
        Some(0)
    );
    let o = t.run(&["register", "--file", good.as_str()]);
    assert_eq!(o.status.code(), Some(2), "duplicate: {}", text(&o));
    let o = t.run(&["register", "--file", good.as_str(), "--replace"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn state_dir_from_environment() {
    let t = setup();
    let f = t.file("blog", "a@example.test");
    let state = t.dir.join("env-state");
    let o = Command::new(env!("CARGO_BIN_EXE_aps-controller"))
        .args(["instance", "register", "--file", f.as_str(), "--no-connect"])
        .env("APS_CONTROLLER_STATE_DIR", &state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(state.join("instances/blog.json").is_file());
}

#[test]
fn concurrent_registrations_from_two_processes() {
    let t = setup();
    // Different names: both land.
    let files: Vec<_> = (0..6)
        .map(|i| t.file(&format!("site{i}"), "a@example.test"))
        .collect();
    let children: Vec<_> = files
        .iter()
        .map(|f| t.cmd(&["register", "--file", f.as_str()]).output_spawn())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let v: serde_json::Value = serde_json::from_slice(&t.run(&["list", "--json"]).stdout).unwrap();
    assert_eq!(v["instances"].as_array().unwrap().len(), 6);

    // Same name: exactly one wins, the others are refused as duplicates.
    let same = t.file("dup", "a@example.test");
    let children: Vec<_> = (0..4)
        .map(|_| t.cmd(&["register", "--file", same.as_str()]).output_spawn())
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    // A duplicate is bad input: usage, 2 (README, "Exit codes").
    assert_eq!(codes.iter().filter(|c| **c == 2).count(), 3, "{codes:?}");
    let leftovers: Vec<_> = std::fs::read_dir(t.dir.join("state/instances"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

trait SpawnQuiet {
    fn output_spawn(&mut self) -> std::process::Child;
}

impl SpawnQuiet for Command {
    /// Spawned with captured output so the refused ones do not clutter the test log.
    fn output_spawn(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}
