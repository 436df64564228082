//! `aps-controller store init|snapshots|check` and `verify --repository` through the real
//! binary, for a repository in a bucket of the loopback S3 server (panel.toml `[store.s3]`, the
//! secret key in a file). Without a server the test fails, naming the script, unless
//! APS_TEST_NO_S3=1.

use test_support as support;

use test_support::s3_env;

use support::{Sandbox, assert_success, json};

#[test]
fn store_init_and_check_in_a_bucket() {
    let Some(s3) = s3_env::s3_test_env("store_cli") else {
        return;
    };
    let sb = Sandbox::new();
    sb.choose_s3_repository(
        &s3.endpoint,
        &s3.bucket,
        &s3.prefix,
        &s3.access_key,
        &s3.secret_key,
    );

    let out = sb.cli(&["store", "init", "--json"]);
    assert_success(&out, "store init");
    let v = json(&out);
    assert_eq!(v["ok"], true);
    let expected = format!("s3://{}/{}repo/", s3.bucket, s3.prefix);
    assert_eq!(v["repository"], expected.as_str(), "{v}");
    // The keys are local files of the state folder; nothing local holds the repository.
    assert!(sb.state().join("repository.key").is_file());
    assert!(sb.state().join("repository.password").is_file());
    assert!(!sb.state().join("repository").exists());

    // Twice: refused, the repository named.
    let out = sb.cli(&["store", "init", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let out = sb.cli(&["store", "snapshots", "--json"]);
    assert_success(&out, "store snapshots");
    assert_eq!(json(&out)["snapshots"], serde_json::json!([]));
    let out = sb.cli(&["store", "check", "--read-data", "--json"]);
    assert_success(&out, "store check");
    let out = sb.cli(&["verify", "--repository", "--read-all", "--json"]);
    assert_success(&out, "verify --repository");
    assert_eq!(json(&out)["repository"], expected.as_str());

    // A wrong secret: the bucket refuses, and the command says which repository.
    std::fs::write(sb.path("s3-secret"), "wrong\n").unwrap();
    let out = sb.cli(&["store", "snapshots", "--json"]);
    assert!(!out.status.success(), "{out:?}");
    let v = json(&out);
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&expected),
        "{v}"
    );
}
