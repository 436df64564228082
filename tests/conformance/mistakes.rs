//! Every mistake in the arguments is refused before any work starts, with its kind and exit
//! code and a message naming the argument; no sandbox is made for it. `--remove-sandbox`
//! takes away a sandbox a `--keep` run left.

use serde_json::Value;
use test_support as support;

use super::run::{Host, can_run, failing, lifecycle};

/// Runs `conformance ARGS… --json`; returns the exit code and the envelope.
fn refused(host: &Host, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["conformance"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--sandbox-base", host.base.as_str(), "--json"]);
    let out = host.sb.cli(&all);
    let v = support::json(&out);
    support::schema::Envelope::get()
        .check(&format!("{args:?}"), &v)
        .unwrap_or_else(|e| panic!("{e}"));
    (out.status.code(), v)
}

#[test]
fn mistakes_are_refused_before_any_work() {
    if !support::needs_root("conformance's argument checks") {
        return;
    }
    let host = Host::new();
    let package = failing("bad-install");
    let unreadable = host.sb.path("nosuch-settings.toml");
    let bad_toml = host.sb.path("bad-settings.toml");
    std::fs::write(&bad_toml, "title = [1, {}]\n").unwrap();
    let junit_nowhere = host.sb.path("nosuch/report.xml");
    let folder = host.sb.path("a-folder");
    std::fs::create_dir(&folder).unwrap();
    let missing = host.sb.path("nosuch.app.zip");
    for (args, kind, code, names) in [
        (
            vec![missing.as_str()],
            "invalid-package",
            10,
            "nosuch.app.zip",
        ),
        (
            vec![package.as_str(), "--upgrade-from", missing.as_str()],
            "invalid-package",
            10,
            "--upgrade-from",
        ),
        (
            vec![package.as_str(), "--settings-file", unreadable.as_str()],
            "usage",
            2,
            "--settings-file",
        ),
        (
            vec![package.as_str(), "--settings-file", bad_toml.as_str()],
            "usage",
            2,
            "--settings-file",
        ),
        (
            vec![package.as_str(), "--junit", junit_nowhere.as_str()],
            "usage",
            2,
            "--junit",
        ),
        (
            vec![package.as_str(), "--junit", folder.as_str()],
            "usage",
            2,
            "--junit",
        ),
        (
            vec![package.as_str(), "--timeout", "0"],
            "usage",
            2,
            "--timeout",
        ),
        (
            vec![package.as_str(), "--timeout", "5y"],
            "usage",
            2,
            "--timeout",
        ),
        (
            vec!["--remove-sandbox", "not-a-sandbox"],
            "usage",
            2,
            "--remove-sandbox",
        ),
    ] {
        let (exit, v) = refused(&host, &args);
        assert_eq!(exit, Some(code), "{args:?}: {v}");
        assert_eq!(v["error"]["kind"], kind, "{args:?}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{args:?}: {message}");
    }
    // Nothing was made for any of them.
    assert_eq!(support::entries(&host.base), Vec::<String>::new());
}

#[test]
fn a_kept_sandbox_is_named_and_removed_by_remove_sandbox() {
    if !can_run("conformance --keep") {
        return;
    }
    let host = Host::new();
    let ran = host.run(&lifecycle("lifecycle-perl-status"), &["--keep"]);
    assert_eq!(ran.code, Some(0), "{}", ran.envelope);
    let ending = &ran.envelope["result"]["sandbox"];
    assert_eq!(ending["ending"], "kept", "{ending}");
    let name = ending["name"].as_str().unwrap().to_owned();
    let home = camino::Utf8PathBuf::from(ending["home"].as_str().unwrap());
    assert!(home.is_dir(), "{home}");
    assert!(aps_controller::account::Account::lookup(&name, None).is_ok());

    // The migrated copy's sandbox is kept too (its row says where); each is removed by name.
    let kept: Vec<String> = support::entries(&host.base)
        .iter()
        .filter_map(|e| {
            e.strip_prefix('.')?
                .strip_suffix(".kept")
                .map(str::to_owned)
        })
        .collect();
    assert!(kept.contains(&name), "{kept:?}");
    for sandbox in &kept {
        let out = host.sb.cli(&[
            "conformance",
            "--remove-sandbox",
            sandbox,
            "--sandbox-base",
            host.base.as_str(),
            "--json",
        ]);
        support::assert_success(&out, "conformance --remove-sandbox");
        let v = support::json(&out);
        assert_eq!(
            (&v["sandbox"], &v["removed"]),
            (&Value::from(sandbox.as_str()), &Value::from(true))
        );
        assert!(aps_controller::account::Account::lookup(sandbox, None).is_err());
    }
    assert!(!home.exists(), "{home}");
    assert_eq!(support::entries(&host.base), Vec::<String>::new());
}
