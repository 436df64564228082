//! `run` with the repository store applies panel.toml's retention to the repository once every
//! backup ended, and says what it forgot and pruned in its summary (real binary, real
//! repository).

use test_support as support;

use support::{Sandbox, assert_success, json};

#[test]
fn run_forgets_and_prunes_snapshots_beyond_the_policy() {
    let sb = Sandbox::new();
    let (www, _dbs) = support::register_without_script(&sb, "blog");
    std::fs::write(
        sb.state().join("panel.toml"),
        "[store]\nkind = \"repository\"\n[retention]\nkeep = 2\n",
    )
    .unwrap();
    assert_success(&sb.cli(&["store", "init"]), "store init");
    let mut ids = Vec::new();
    for i in 0..4 {
        std::fs::write(www.join("today.txt"), format!("day {i}\n").repeat(500)).unwrap();
        let out = sb.cli(&[
            "store",
            "backup",
            "blog",
            "--periodicity",
            "daily",
            "--json",
        ]);
        assert_success(&out, "store backup");
        ids.push(json(&out)["snapshot"]["id"].as_str().unwrap().to_owned());
    }

    let out = sb.cli(&["run", "--periodicity", "daily", "--json"]);
    assert_success(&out, "run");
    let summary: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "summary")
        .expect("a summary line");
    assert_eq!(summary["ok"], true, "{summary}");
    let r = &summary["summary"]["repository_retention"];
    assert_eq!(r["instances"], serde_json::json!(["blog"]), "{r}");
    assert_eq!(r["kept"], 2, "{r}");
    let forgotten: Vec<&str> = r["forgotten"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    // `run` made a fifth snapshot before the retention ran: the oldest three go.
    assert_eq!(
        forgotten,
        [ids[0].as_str(), ids[1].as_str(), ids[2].as_str()],
        "the oldest three"
    );
    assert!(r["prune"]["marked_packs"].as_u64().unwrap() > 0, "{r}");

    let out = sb.cli(&["store", "snapshots", "blog", "--json"]);
    let left: Vec<String> = json(&out)["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[0], ids[3], "the newest of the four, then run's own");
    let runs = left[1].clone();
    assert_success(&sb.cli(&["store", "check", "--read-data"]), "store check");

    // `prune` applies the same policy to every instance's snapshots; a dry run only says so.
    std::fs::write(
        sb.state().join("panel.toml"),
        "[store]\nkind = \"repository\"\n[retention]\nkeep = 1\n",
    )
    .unwrap();
    let out = sb.cli(&["prune", "--dry-run", "--json"]);
    assert_success(&out, "prune --dry-run");
    let v = json(&out);
    let would: Vec<&str> = v["repository"]["forgotten"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(would, [ids[3].as_str()], "{v}");
    assert_eq!(v["repository"]["prune"], serde_json::Value::Null);
    let out = sb.cli(&["store", "snapshots", "blog", "--json"]);
    assert_eq!(json(&out)["snapshots"].as_array().unwrap().len(), 2);
    let out = sb.cli(&["prune"]);
    assert_success(&out, "prune");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kept 1 snapshot(s), forgot 1") && text.contains("prune:"),
        "{text}"
    );
    let out = sb.cli(&["store", "snapshots", "blog", "--json"]);
    assert_eq!(json(&out)["snapshots"][0]["id"], runs.as_str());
    assert_success(&sb.cli(&["verify", "--repository", "--read-all"]), "verify");
    std::fs::write(
        sb.state().join("panel.toml"),
        "[store]\nkind = \"repository\"\n[retention]\nkeep = 2\n",
    )
    .unwrap();

    // The human summary of run says it too.
    let out = sb.cli(&["run", "--periodicity", "daily"]);
    assert_success(&out, "run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("repository ") && text.contains("kept 2") && text.contains("prune:"),
        "{text}"
    );
}
