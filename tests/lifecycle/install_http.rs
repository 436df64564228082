//! `POST /v1/instances` with a `package`: the install of `instance install --json`, inside the
//! `--allow-dir` confinement.

use serde_json::json;
use test_support as support;

use super::install::{copy_package, instances, tenant_sandbox};
use support::serve::serve_allowing;
use support::{fixture, needs_root, tree_state};

#[test]
fn post_instances_installs_inside_the_allowed_folders_only() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let package = sb.path("pkg");
    copy_package(&fixture("sh-sample"), &package);
    let served = serve_allowing(&sb, &[www.as_str(), package.as_str()]);
    let body = |package: &str, root: &str, dry_run: bool| {
        json!({
            "package": package,
            "name": "web",
            "base_url": "https://web.example/",
            "web_root": root,
            "settings": {"admin_password": "pw", "domains": ["a.example", "b.example"]},
            "dry_run": dry_run,
        })
    };
    let root = www.join("web");

    // A package outside the allowed folders: refused before anything.
    let (status, v) = served.call(
        "POST",
        "/v1/instances",
        body(fixture("sh-sample").as_str(), root.as_str(), false),
    );
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["kind"], "path-not-allowed", "{v}");
    // A web root outside them, likewise.
    let (status, v) = served.call(
        "POST",
        "/v1/instances",
        body(package.as_str(), sb.path("elsewhere").as_str(), false),
    );
    assert_eq!(status, 403, "{v}");

    // A refusal is the CLI's, worded with the JSON fields.
    let before = tree_state(&www, &[]);
    let (status, v) = served.call(
        "POST",
        "/v1/instances",
        json!({"package": package, "name": "web", "base_url": "https://web.example/", "web_root": root}),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["kind"], "invalid-settings", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"settings\""),
        "{v}"
    );
    assert_eq!(tree_state(&www, &[]), before);

    let (status, v) = served.call(
        "POST",
        "/v1/instances",
        body(package.as_str(), root.as_str(), true),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["dry_run"], true, "{v}");
    assert!(!root.exists());

    let (status, v) = served.call(
        "POST",
        "/v1/instances",
        body(package.as_str(), root.as_str(), false),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["settings"]["domains"],
        json!(["a.example", "b.example"]),
        "{v}"
    );
    assert!(root.join("index.html").is_file());
    assert_eq!(instances(&sb), ["web"]);

    let (status, v) = served.call(
        "POST",
        "/v1/instances",
        body(package.as_str(), www.join("again").as_str(), false),
    );
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["kind"], "instance-exists", "{v}");

    // DELETE takes the CLI's options in its body: an unknown one is refused, then the
    // instance goes with the install's files and a final backup in the store.
    let (status, v) = served.call("DELETE", "/v1/instances/web", json!({"keep": true}));
    assert_eq!(status, 400, "{v}");
    assert_eq!(instances(&sb), ["web"]);
    let (status, v) = served.call("DELETE", "/v1/instances/web", serde_json::Value::Null);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["removed"], "web", "{v}");
    assert_eq!(v["configure_ran"], true, "{v}");
    assert!(v["final_backup"]["file"].is_string(), "{v}");
    assert!(!root.exists(), "the web root the install made is gone");
    assert!(instances(&sb).is_empty());
}
