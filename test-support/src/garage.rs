//! The three-node Garage cluster of scripts/ci/garage.sh, as the fleet tests find it: its
//! nodes' endpoints and key, a test's own prefix in the shared bucket, a node stopped and
//! started again, the bytes a prefix holds, and `restic` against a repository in it.

use std::collections::BTreeMap;
use std::fs::File;
use std::process::{Command, Output};

use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

const ENV_FILE: &str = "/tmp/aps-ci/garage.env";
/// Tests that stop a node hold it exclusively, the others shared: one node down at a time.
const NODES_LOCK: &str = "/tmp/aps-ci/garage-nodes.lock";

#[derive(Debug, Clone)]
pub struct GarageEnv {
    /// One S3 endpoint per node (`http://127.0.0.1:19101`, …).
    pub endpoints: Vec<String>,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// A prefix of the test's own (`fleet/<test>-<pid>-<nanos>/`).
    pub prefix: String,
    script: Utf8PathBuf,
}

/// The cluster's address and key. `None` only when APS_TEST_NO_GARAGE=1; otherwise a missing
/// or silent cluster fails the test, naming the script that starts it.
pub fn garage_env(test: &str) -> Option<GarageEnv> {
    if crate::skipped_on_purpose("APS_TEST_NO_GARAGE", test) {
        return None;
    }
    let text = std::fs::read_to_string(ENV_FILE).unwrap_or_else(|e| {
        panic!(
            "cannot read {ENV_FILE} ({e}): run scripts/ci/garage.sh first, or set \
             APS_TEST_NO_GARAGE=1"
        )
    });
    let env: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| {
        env.get(k)
            .unwrap_or_else(|| panic!("{ENV_FILE} lacks {k}; rerun scripts/ci/garage.sh"))
            .to_string()
    };
    let endpoints: Vec<String> = get("APS_TEST_GARAGE_ENDPOINTS")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let g = GarageEnv {
        endpoints,
        bucket: get("APS_TEST_GARAGE_BUCKET"),
        region: get("APS_TEST_GARAGE_REGION"),
        access_key: get("APS_TEST_GARAGE_ACCESS_KEY"),
        secret_key: get("APS_TEST_GARAGE_SECRET_KEY"),
        prefix: format!("fleet/{test}-{}-{nanos}/", std::process::id()),
        script: get("APS_TEST_GARAGE_SCRIPT").into(),
    };
    // A node another test stopped is back by the time its lock is released; the cluster
    // answers as long as two of three do.
    for n in 1..=3 {
        if !g.answers(n) {
            g.node(n, "start");
        }
    }
    Some(g)
}

/// Held while a test uses the cluster: shared by most, exclusive by a test that stops a node.
pub struct NodesGuard(#[allow(dead_code)] File);

impl GarageEnv {
    /// The cluster with every node up, shared with the other tests.
    pub fn shared(&self) -> NodesGuard {
        self.guard(rustix::fs::FlockOperation::LockShared)
    }

    /// The cluster to this test alone: it may stop a node.
    pub fn exclusive(&self) -> NodesGuard {
        let g = self.guard(rustix::fs::FlockOperation::LockExclusive);
        for n in 1..=3 {
            if !self.answers(n) {
                self.node(n, "start");
            }
        }
        g
    }

    fn guard(&self, op: rustix::fs::FlockOperation) -> NodesGuard {
        let f = File::options()
            .create(true)
            .append(true)
            .open(NODES_LOCK)
            .unwrap_or_else(|e| panic!("open {NODES_LOCK}: {e}"));
        rustix::fs::flock(&f, op).unwrap_or_else(|e| panic!("flock {NODES_LOCK}: {e}"));
        NodesGuard(f)
    }

    /// `garage.sh stop|kill|start N` (N in 1..=3).
    pub fn node(&self, n: usize, action: &str) {
        let out = Command::new("bash")
            .arg(self.script.as_str())
            .arg(action)
            .arg(n.to_string())
            .output()
            .expect("run garage.sh");
        assert!(out.status.success(), "garage.sh {action} {n}: {out:?}");
    }

    /// Whether node `n`'s S3 port takes a connection.
    pub fn answers(&self, n: usize) -> bool {
        std::net::TcpStream::connect(self.endpoints[n - 1].trim_start_matches("http://")).is_ok()
    }

    /// panel.toml for a repository store at `<prefix><sub>` through node `node`'s endpoint
    /// (`endpoint` instead, e.g. a proxy, when given), the secret in `secret_file`.
    pub fn panel_toml(
        &self,
        sub: &str,
        endpoint: &str,
        secret_file: &Utf8Path,
        extra_store: &str,
    ) -> String {
        format!(
            "[store]\nkind = \"repository\"\n{extra_store}\n[store.s3]\nendpoint = \"{endpoint}\"\n\
             bucket = \"{}\"\nprefix = \"{}{sub}\"\nregion = \"{}\"\naccess-key-id = \"{}\"\n\
             secret-access-key-file = \"{secret_file}\"\n",
            self.bucket, self.prefix, self.region, self.access_key
        )
    }

    /// `restic -r s3:<node 1>/<bucket>/<prefix><sub> --password-file FILE ARGS…`.
    pub fn restic(&self, sub: &str, password_file: &Utf8Path, args: &[&str]) -> Output {
        Command::new("restic")
            .arg("-r")
            .arg(format!(
                "s3:{}/{}/{}{sub}",
                self.endpoints[0], self.bucket, self.prefix
            ))
            .arg("--password-file")
            .arg(password_file.as_str())
            .args(["-o", &format!("s3.region={}", self.region)])
            .arg("--no-cache")
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_DEFAULT_REGION", &self.region)
            .output()
            .expect("run restic (Debian package restic)")
    }

    /// The number and total size of the objects under `<prefix><sub>`, listed page by page.
    pub fn usage(&self, sub: &str) -> (u64, u64) {
        let (mut count, mut bytes, mut token) = (0u64, 0u64, None::<String>);
        loop {
            let mut query = vec![
                ("list-type", "2".to_owned()),
                ("prefix", format!("{}{sub}", self.prefix)),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let xml = self.signed_get(&format!("/{}", self.bucket), &mut query);
            for size in between_all(&xml, "<Size>", "</Size>") {
                count += 1;
                bytes += size.parse::<u64>().unwrap();
            }
            token = between_all(&xml, "<NextContinuationToken>", "</NextContinuationToken>")
                .into_iter()
                .next()
                .map(str::to_owned);
            if token.is_none() {
                return (count, bytes);
            }
        }
    }

    /// A GET of `path` on node 1, signed with AWS signature version 4.
    fn signed_get(&self, path: &str, query: &mut [(&str, String)]) -> String {
        let now = Command::new("date")
            .args(["-u", "+%Y%m%dT%H%M%SZ"])
            .output()
            .expect("date");
        let stamp = String::from_utf8(now.stdout).unwrap().trim().to_owned();
        let day = &stamp[..8];
        let host = self.endpoints[0].trim_start_matches("http://");
        query.sort();
        let canonical_query = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let empty = hex::encode(Sha256::digest(b""));
        let canonical = format!(
            "GET\n{path}\n{canonical_query}\nhost:{host}\nx-amz-content-sha256:{empty}\n\
             x-amz-date:{stamp}\n\nhost;x-amz-content-sha256;x-amz-date\n{empty}"
        );
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            day.as_bytes(),
        );
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        let url = format!("{}{path}?{canonical_query}", self.endpoints[0]);
        let answer = ureq::get(&url)
            .set("x-amz-date", &stamp)
            .set("x-amz-content-sha256", &empty)
            .set(
                "Authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, \
                     SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
                    self.access_key
                ),
            )
            .call();
        match answer {
            Ok(r) => r.into_string().unwrap(),
            Err(ureq::Error::Status(code, r)) => {
                panic!("GET {url}: {code} {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("GET {url}: {e}"),
        }
    }
}

/// HMAC-SHA-256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn between_all<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(close) else { break };
        out.push(&rest[..j]);
        rest = &rest[j + close.len()..];
    }
    out
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
