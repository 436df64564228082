//! The loopback S3 server of scripts/ci/s3-server.sh, as tests find it: shared by the panel's
//! store tests and the CLI's tests.

use std::collections::BTreeMap;

const ENV_FILE: &str = "/tmp/aps-ci/s3.env";

pub struct S3TestEnv {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// A prefix of the test's own (`tests/<test>-<pid>-<nanos>/`): tests share the bucket and
    /// run in parallel.
    pub prefix: String,
}

/// The server's address and credentials. `None` only when APS_TEST_NO_S3=1; otherwise a missing
/// or silent server fails the test, naming the script that starts it.
pub fn s3_test_env(test: &str) -> Option<S3TestEnv> {
    if crate::skipped_on_purpose("APS_TEST_NO_S3", test) {
        return None;
    }
    let text = std::fs::read_to_string(ENV_FILE).unwrap_or_else(|e| {
        panic!("cannot read {ENV_FILE} ({e}): run scripts/ci/s3-server.sh first, or set APS_TEST_NO_S3=1")
    });
    let env: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| {
        env.get(k)
            .unwrap_or_else(|| panic!("{ENV_FILE} lacks {k}; rerun scripts/ci/s3-server.sh"))
            .to_string()
    };
    let endpoint = get("APS_TEST_S3_ENDPOINT");
    let hostport = endpoint.trim_start_matches("http://");
    if std::net::TcpStream::connect(hostport).is_err() {
        panic!(
            "no S3 server answers at {endpoint}: run scripts/ci/s3-server.sh, or set APS_TEST_NO_S3=1"
        );
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Some(S3TestEnv {
        endpoint,
        bucket: get("APS_TEST_S3_BUCKET"),
        access_key: get("APS_TEST_S3_ACCESS_KEY"),
        secret_key: get("APS_TEST_S3_SECRET_KEY"),
        prefix: format!("tests/{test}-{}-{nanos}/", std::process::id()),
    })
}
