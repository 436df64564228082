//! Many controllers, one cluster: four servers back up 50 instances each at the same time,
//! each into its own repository prefix, and all into one shared repository (every snapshot
//! carries its server's host name); one server's retention and prune run while the others
//! back up. Nothing is lost, no server's retention touches another's snapshots, the locks are
//! restic's (a prune waits for a running backup; `restic` itself respects them), and
//! `restic check` passes on the cluster at the end.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::garage::{GarageEnv, garage_env};
use test_support::{assert_success, json};

use crate::servers::{Server, restic_check, restic_snapshots, site};

const SERVERS: usize = 4;
const INSTANCES: usize = 50;

/// Four servers, 50 instances each, two rounds of `run --periodicity daily` at the same time;
/// server-0 keeps one snapshot per instance, so its second run forgets and prunes while the
/// others still back up. `shared`: one repository for all, else one prefix per server.
fn fleet(g: &GarageEnv, shared: bool) {
    let started = Instant::now();
    let sub = |n: usize| {
        if shared {
            "shared/".to_owned()
        } else {
            format!("server-{n}/")
        }
    };
    let servers: Vec<Server> = (0..SERVERS)
        .map(|n| {
            let keep = if n == 0 { "keep = 1" } else { "keep = 10" };
            // Each server talks to its own node: replication makes them one store.
            let endpoint = &g.endpoints[n % g.endpoints.len()];
            Server::new(g, &format!("server-{n}"), &sub(n), endpoint, "", keep)
        })
        .collect();
    std::thread::scope(|s| {
        for server in &servers {
            s.spawn(|| server.register(INSTANCES));
        }
    });
    if shared {
        servers[0].init();
        for server in &servers[1..] {
            server.share_keys_of(&servers[0]);
        }
    } else {
        for server in &servers {
            server.init();
        }
    }
    let set_up = started.elapsed();

    let backups = Instant::now();
    let mut summaries = Vec::new();
    for _round in 0..2 {
        summaries = std::thread::scope(|s| {
            let runs: Vec<_> = servers.iter().map(|v| s.spawn(|| v.run_daily())).collect();
            runs.into_iter()
                .map(|r| r.join().unwrap())
                .collect::<Vec<_>>()
        });
    }
    let backups = backups.elapsed();

    // server-0's second run forgot its first round, and pruned, while the others backed up.
    let retention = &summaries[0]["summary"]["repository_retention"];
    assert_eq!(
        retention["forgotten"].as_array().map(Vec::len),
        Some(INSTANCES),
        "{retention}"
    );
    assert!(retention["error"].is_null(), "{retention}");
    assert!(retention["prune"].is_object(), "{retention}");
    for (n, server) in servers.iter().enumerate() {
        let want = if n == 0 { 1 } else { 2 };
        assert_eq!(
            server.counts(INSTANCES),
            vec![want; INSTANCES],
            "{}: snapshots per instance",
            server.host
        );
        // Every snapshot restores (the newest of one instance each, end to end).
        let out = server.sb.cli(&[
            "store",
            "restore",
            &site(n),
            "--latest",
            "--to",
            server.sb.path("restored").as_str(),
            "--json",
        ]);
        assert_success(&out, "store restore");
        // sh-sample's backup-script is `sufficient`: its file (the environment it was given)
        // is the whole snapshot.
        let file = std::fs::read_to_string(server.sb.path("restored/script-backup")).unwrap();
        assert!(
            file.contains(&format!("{}.example.test", site(n))),
            "{file}"
        );
    }

    // The repositories: one per server, or the shared one.
    let repos: Vec<(String, &Server)> = if shared {
        vec![(sub(0), &servers[0])]
    } else {
        servers
            .iter()
            .enumerate()
            .map(|(n, s)| (sub(n), s))
            .collect()
    };
    // restic sees the same: each host's snapshots, none of another's removed.
    let mut by_host = std::collections::BTreeMap::<String, usize>::new();
    for (sub, server) in &repos {
        let password = server.sb.state().join("repository.password");
        for (host, tags) in restic_snapshots(g, sub, &password) {
            assert!(
                tags.iter().any(|t| t.starts_with("aps-instance=site-")),
                "{tags:?}"
            );
            *by_host.entry(host).or_default() += 1;
        }
    }
    let expected: std::collections::BTreeMap<String, usize> = (0..SERVERS)
        .map(|n| {
            let kept = if n == 0 { INSTANCES } else { 2 * INSTANCES };
            (format!("server-{n}"), kept)
        })
        .collect();
    assert_eq!(by_host, expected, "snapshots per host");

    // Every lock was released, and the repository is whole.
    let mut stored = (0, 0);
    for (sub, server) in &repos {
        assert_eq!(g.usage(&format!("{sub}locks/")).0, 0, "locks left");
        let password = server.sb.state().join("repository.password");
        restic_check(g, sub, &password);
        let (objects, bytes) = g.usage(sub);
        stored = (stored.0 + objects, stored.1 + bytes);
    }
    let read: u64 = servers
        .iter()
        .flat_map(|s| s.snapshots())
        .map(|s| s.2)
        .sum();
    eprintln!(
        "fleet ({}): {SERVERS} servers x {INSTANCES} instances, 2 rounds: set-up {:.1} s, \
         backups {:.1} s, total {:.1} s; bucket holds {} objects, {} bytes; the kept \
         snapshots read {} bytes",
        if shared {
            "one shared repository"
        } else {
            "one repository each"
        },
        set_up.as_secs_f64(),
        backups.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        stored.0,
        stored.1,
        read
    );
}

#[test]
fn four_servers_each_into_its_own_repository() {
    let Some(g) = garage_env("fleet_own_repositories") else {
        return;
    };
    let _nodes = g.shared();
    fleet(&g, false);
}

#[test]
fn four_servers_into_one_shared_repository() {
    let Some(g) = garage_env("fleet_shared_repository") else {
        return;
    };
    let _nodes = g.shared();
    fleet(&g, true);
}

/// restic's own backup holds a shared lock: a prune refuses after `lock-wait` (busy, naming
/// the holder), or waits and runs once the backup ends; meanwhile restic itself finds the
/// prune's exclusive lock and refuses to start.
#[test]
fn a_prune_waits_for_a_running_backup() {
    let Some(g) = garage_env("fleet_prune_waits") else {
        return;
    };
    let _nodes = g.shared();
    let server = Server::new(&g, "server-0", "repo/", &g.endpoints[0], "", "keep = 1");
    server.register(1);
    server.init();
    server.run_daily();
    server.run_daily();
    let password = server.sb.state().join("repository.password");

    // Locks already there (a finished run's, if its process ended before removing it) are not
    // restic's: wait for one more than these.
    let before = g.usage("repo/locks/").0;
    // A restic backup reading from a pipe that stays open: it holds its lock meanwhile.
    let repo = format!("s3:{}/{}/{}repo/", g.endpoints[0], g.bucket, g.prefix);
    let mut restic = Command::new("restic")
        .args([
            "-r",
            &repo,
            "--password-file",
            password.as_str(),
            "--no-cache",
        ])
        .args(["-o", &format!("s3.region={}", g.region)])
        .args([
            "backup",
            "--stdin",
            "--stdin-filename",
            "slow.sql",
            "--host",
            "restic",
        ])
        .env("AWS_ACCESS_KEY_ID", &g.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("restic");
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.usage("repo/locks/").0 <= before {
        assert!(Instant::now() < deadline, "restic never took its lock");
        std::thread::sleep(Duration::from_millis(100));
    }

    server.write_panel(
        &g,
        "repo/",
        &g.endpoints[0],
        "lock-wait = \"2s\"",
        "keep = 1",
    );
    let out = server.sb.cli(&["prune", "--json"]);
    assert_eq!(out.status.code(), Some(15), "busy: {out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "busy", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("a shared lock of process {}", restic.id())),
        "{message}"
    );
    assert_eq!(
        g.usage("repo/locks/").0,
        1,
        "the refused prune left no lock"
    );

    server.write_panel(
        &g,
        "repo/",
        &g.endpoints[0],
        "lock-wait = \"60s\"",
        "keep = 1",
    );
    let waited = Instant::now();
    let prune = server
        .sb
        .command(&["prune", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The prune's exclusive lock is written while it waits: restic will not start under it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.usage("repo/locks/").0 < 2 {
        assert!(Instant::now() < deadline, "the prune wrote no lock");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = g.restic("repo/", &password, &["snapshots"]);
    assert!(!out.status.success(), "restic ignored the exclusive lock");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked exclusively"),
        "{out:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut stdin = restic.stdin.take().unwrap();
    stdin.write_all(b"-- a dump\n").unwrap();
    drop(stdin);
    let restic = restic.wait_with_output().unwrap();
    assert!(restic.status.success(), "{restic:?}");
    let out = prune.wait_with_output().unwrap();
    assert_success(&out, "prune after the backup");
    assert!(
        waited.elapsed() >= Duration::from_secs(2),
        "the prune did not wait"
    );
    assert_eq!(g.usage("repo/locks/").0, 0, "locks left");
    // restic's snapshot is another host's: listed by restic, not by this server.
    assert_eq!(server.counts(1), vec![1]);
    restic_check(&g, "repo/", &password);
}
