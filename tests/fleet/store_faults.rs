//! Faults of the store, each through the real binary against the Garage cluster: a node
//! killed during a backup and during a restore, the whole store unreachable, and slow,
//! failing and dropped answers through a fault-injecting proxy in front of one node. Each
//! either completes or fails as `remote-unreachable` (exit 28) with nothing half-made, and the
//! next run catches up.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use test_support::fault_proxy::FaultProxy;
use test_support::garage::{GarageEnv, NodesGuard, garage_env};
use test_support::{assert_success, json};

use crate::servers::{Server, restic_check, site};

/// Fast answers to failures: two retries of at most 3 s each.
const QUICK: &str = "retries = 2\ntimeout = \"3s\"\n";

fn with_s3_keys(server: &Server, g: &GarageEnv, endpoint: &str, s3_extra: &str) {
    server.write_panel(g, "repo/", endpoint, "", "keep = 10");
    let path = server.sb.state().join("panel.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // The [store.s3] table's own keys go right after its header.
    let text = text.replacen("[store.s3]\n", &format!("[store.s3]\n{s3_extra}"), 1);
    std::fs::write(path, text).unwrap();
}

fn backup(server: &Server, name: &str) -> Output {
    server.sb.cli(&["backup", name, "--json"])
}

fn assert_unreachable(out: &Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(28), "{what}: {out:?}");
    let v = json(out);
    assert_eq!(v["error"]["kind"], "remote-unreachable", "{what}: {v}");
    let message = v["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("cannot be reached"), "{what}: {message}");
    message
}

/// A server with `count` instances, initialised through node 1, one snapshot each.
fn server_with_snapshots(g: &GarageEnv, count: usize) -> Server {
    let server = Server::new(g, "server-f", "repo/", &g.endpoints[0], "", "keep = 10");
    server.register(count);
    server.init();
    server.run_daily();
    server
}

/// The cluster, a server with one instance backed up once, and a proxy in front of node 1.
fn proxied(test: &str) -> Option<(GarageEnv, NodesGuard, Server, FaultProxy)> {
    let g = garage_env(test)?;
    let nodes = g.shared();
    let server = server_with_snapshots(&g, 1);
    let proxy = FaultProxy::start(&g.endpoints[0]);
    Some((g, nodes, server, proxy))
}

#[test]
fn the_whole_store_unreachable_fails_cleanly_and_the_next_run_catches_up() {
    let Some(g) = garage_env("fleet_unreachable") else {
        return;
    };
    let _nodes = g.shared();
    let server = server_with_snapshots(&g, 3);
    // A closed port: nothing answers there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    with_s3_keys(&server, &g, &closed, QUICK);
    let started = Instant::now();
    let message = assert_unreachable(&backup(&server, &site(0)), "backup");
    assert!(
        message.contains(&format!("s3://{}/", g.bucket)),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "bounded");
    // `run` opens the store once, before any backup: it stops there.
    let out = server.sb.cli(&["run", "--periodicity", "daily", "--json"]);
    assert_unreachable(&out, "run");

    // Back on the store: nothing half-made, and the next run makes every snapshot.
    with_s3_keys(&server, &g, &g.endpoints[0], QUICK);
    assert_eq!(server.counts(3), vec![1, 1, 1]);
    server.run_daily();
    assert_eq!(server.counts(3), vec![2, 2, 2]);
    restic_check(&g, "repo/", &server.sb.state().join("repository.password"));
}

#[test]
fn server_errors_are_retried_with_backoff_then_reported() {
    let Some((g, _nodes, server, proxy)) = proxied("fleet_5xx") else {
        return;
    };
    use std::sync::atomic::Ordering::SeqCst;

    // A few 503s: retried, the backup succeeds.
    with_s3_keys(
        &server,
        &g,
        &proxy.endpoint,
        "retries = 3\ntimeout = \"10s\"\n",
    );
    proxy.faults.fail_next.store(3, SeqCst);
    assert_success(&backup(&server, &site(0)), "backup through three 503s");
    assert_eq!(proxy.faults.failed.load(SeqCst), 3);

    // Dropped connections: retried too.
    proxy.faults.drop_next.store(2, SeqCst);
    assert_success(
        &backup(&server, &site(0)),
        "backup through dropped connections",
    );
    assert_eq!(proxy.faults.dropped.load(SeqCst), 2);

    // 503 for good: `retries` more tries with backoff, then a clear error naming the store
    // and the last answer.
    with_s3_keys(&server, &g, &proxy.endpoint, QUICK);
    proxy.faults.fail_all.store(true, SeqCst);
    let before = proxy.faults.failed.load(SeqCst);
    let started = Instant::now();
    let message = assert_unreachable(&backup(&server, &site(0)), "backup under 503s");
    assert!(message.contains("503"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(60), "bounded");
    // The first request and its two retries, each answered 503.
    assert_eq!(proxy.faults.failed.load(SeqCst) - before, 3);
    proxy.faults.fail_all.store(false, SeqCst);
    assert_eq!(server.counts(1), vec![3]);
    restic_check(&g, "repo/", &server.sb.state().join("repository.password"));
}

#[test]
fn slow_answers_time_out_then_are_reported() {
    let Some((g, _nodes, server, proxy)) = proxied("fleet_slow") else {
        return;
    };
    use std::sync::atomic::Ordering::SeqCst;

    // Slow but within `timeout`: it works.
    with_s3_keys(
        &server,
        &g,
        &proxy.endpoint,
        "retries = 1\ntimeout = \"10s\"\n",
    );
    proxy.faults.delay_ms.store(100, SeqCst);
    assert_success(&backup(&server, &site(0)), "slow backup");

    // Slower than `timeout`: each try times out, then the error.
    with_s3_keys(
        &server,
        &g,
        &proxy.endpoint,
        "retries = 1\ntimeout = \"1s\"\n",
    );
    proxy.faults.delay_ms.store(3000, SeqCst);
    let started = Instant::now();
    assert_unreachable(&backup(&server, &site(0)), "backup past its timeout");
    assert!(started.elapsed() < Duration::from_secs(60), "bounded");
    proxy.faults.delay_ms.store(0, SeqCst);
    assert_eq!(server.counts(1), vec![2]);
}

/// Runs `args` in the background, kills node `node` once `after` passed, and returns the
/// command's output.
fn kill_during(
    g: &GarageEnv,
    server: &Server,
    args: &[&str],
    node: usize,
    after: Duration,
) -> Output {
    let child = server
        .sb
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    g.node(node, "kill");
    child.wait_with_output().unwrap()
}

#[test]
fn a_node_killed_during_a_backup_and_a_restore() {
    let Some(g) = garage_env("fleet_node_killed") else {
        return;
    };
    // Nodes go down here: no other test uses the cluster meanwhile.
    let _nodes = g.exclusive();
    let server = server_with_snapshots(&g, 10);
    with_s3_keys(&server, &g, &g.endpoints[0], QUICK);
    let password = server.sb.state().join("repository.password");

    // Node 3 (a replica; the server talks to node 1): the run completes from the other two.
    let out = kill_during(
        &g,
        &server,
        &["run", "--periodicity", "daily", "--json"],
        3,
        Duration::from_millis(1500),
    );
    assert_success(&out, "run with node 3 killed");
    assert_eq!(server.counts(10), vec![2; 10]);
    // A restore with node 3 still down reads from the other replicas.
    let out = server.sb.cli(&["restore", &site(1), "--latest", "--json"]);
    assert_success(&out, "restore with node 3 down");
    g.node(3, "start");

    // Node 2 killed during a restore: completes from node 1 and 3.
    std::fs::write(server.sb.path("www-site-02/index.html"), "changed\n").unwrap();
    let out = kill_during(
        &g,
        &server,
        &["restore", &site(2), "--latest", "--json"],
        2,
        Duration::from_millis(300),
    );
    assert_success(&out, "restore with node 2 killed");
    assert_eq!(
        std::fs::read_to_string(server.sb.path("www-site-02/index.html")).unwrap(),
        format!("<h1>{}</h1>\n", site(2))
    );
    g.node(2, "start");

    // Node 1, the server's own endpoint, killed during a run: what was not finished fails as
    // unreachable, no snapshot is half-made, and the next run (node 1 back) catches up.
    let out = kill_during(
        &g,
        &server,
        &["run", "--periodicity", "daily", "--json"],
        1,
        Duration::from_millis(1500),
    );
    let summary = crate::servers::summary(&out);
    let failed: Vec<&serde_json::Value> = summary["summary"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| !i["error"].is_null())
        .collect();
    for i in &failed {
        assert_eq!(i["error"]["kind"], "remote-unreachable", "{i}");
    }
    g.node(1, "start");
    let counts = server.counts(10);
    assert_eq!(
        counts.iter().filter(|&&c| c == 2).count(),
        failed.len(),
        "a failed backup left no snapshot: {counts:?}"
    );
    server.run_daily();
    assert!(server.counts(10).iter().all(|&c| c >= 3), "caught up");
    // Node 1 killed during a restore: fails cleanly (the instance untouched), then succeeds.
    std::fs::write(server.sb.path("www-site-03/index.html"), "changed\n").unwrap();
    let out = kill_during(
        &g,
        &server,
        &["restore", &site(3), "--latest", "--json"],
        1,
        Duration::from_millis(300),
    );
    let page = std::fs::read_to_string(server.sb.path("www-site-03/index.html")).unwrap();
    if out.status.success() {
        assert_eq!(page, format!("<h1>{}</h1>\n", site(3)), "restored whole");
    } else {
        assert_unreachable(&out, "restore with its node killed");
        assert_eq!(
            page, "changed\n",
            "a failed restore leaves the instance as it was"
        );
    }
    g.node(1, "start");
    assert_success(
        &server.sb.cli(&["restore", &site(3), "--latest", "--json"]),
        "restore again",
    );
    eprintln!(
        "node 1 killed during a run: {} of 10 backups failed as remote-unreachable; during a \
         restore: {}",
        failed.len(),
        if out.status.success() {
            "completed"
        } else {
            "failed cleanly"
        }
    );
    restic_check(&g, "repo/", &password);
}
