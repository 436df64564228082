//! What people expect of a command-line tool (issue 23, item 10): shell completions and manual
//! pages generated from the argument definitions, loaded by a real bash and rendered by a real
//! `man`; one unit for sizes in every text output.

use test_support as support;
use test_support::s3_env;

use std::process::Command;

use aps_controller::error::human_bytes;
use support::{Sandbox, assert_success, json};

/// What bash's programmable completion offers for the words of `line` (the last one being
/// completed), with the script `aps-controller completions bash` printed, sourced by a real
/// bash as a user's ~/.bashrc would.
fn bash_completes(sb: &Sandbox, line: &str) -> Vec<String> {
    let out = sb.cli(&["completions", "bash"]);
    assert_success(&out, "completions bash");
    let script = sb.path("aps-controller.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        "source {script}\n\
         function=$(complete -p aps-controller | sed -E 's/.*-F ([^ ]+).*/\\1/')\n\
         COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n\
         COMP_WORDS=({words}); COMP_CWORD={cword}\n\
         \"$function\" aps-controller '{current}' '{previous}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words = words.join(" "),
        cword = words.len() - 1,
        current = words[words.len() - 1],
        previous = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    assert!(out.status.success(), "bash: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_and_options_from_the_generated_script() {
    let sb = Sandbox::new();
    let offered = bash_completes(&sb, "aps-controller rest");
    assert_eq!(offered, ["restore"], "{offered:?}");
    let offered = bash_completes(&sb, "aps-controller restore blog --from-o");
    assert_eq!(offered, ["--from-other-instance"], "{offered:?}");
    let offered = bash_completes(&sb, "aps-controller completions ");
    for shell in ["bash", "zsh", "fish"] {
        assert!(offered.iter().any(|s| s == shell), "{offered:?}");
    }
    // The other shells' scripts name the commands too.
    for shell in ["zsh", "fish"] {
        let out = sb.cli(&["completions", shell]);
        assert_success(&out, shell);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("restore"),
            "{shell}"
        );
    }
    let out = sb.cli(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn manual_pages_render_with_man_without_a_warning() {
    let sb = Sandbox::new();
    let dir = sb.path("man/man1");
    let out = sb.cli(&["man", "--out", dir.as_str()]);
    assert_success(&out, "man --out");
    let mut pages: Vec<String> = support::entries(&dir);
    pages.sort();
    for page in [
        "aps-controller.1",
        "aps-controller-restore.1",
        "aps-controller-store-init.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page} in {pages:?}");
    }
    let render = |file: &str| {
        let out = Command::new("man")
            .args(["--warnings", "-l", "-P", "cat", file])
            .env("LC_ALL", "C.UTF-8")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(out.status.success(), "man -l {file}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "man -l {file} warns"
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for page in &pages {
        render(dir.join(page).as_str());
    }
    let restore = render(dir.join("aps-controller-restore.1").as_str());
    assert!(restore.contains("--from-other-instance"), "{restore}");
    // Without --out: the main page on stdout.
    let out = sb.cli(&["man"]);
    assert_success(&out, "man");
    let page = sb.path("stdout.1");
    std::fs::write(&page, &out.stdout).unwrap();
    let main = render(page.as_str());
    assert!(main.contains("aps-controller-restore(1)"), "{main}");
}

#[test]
fn every_size_in_text_output_has_one_unit() {
    let sb = Sandbox::new();
    // The controller's own archive (no backup-script) of a web folder and real databases.
    let (www, _dbs) = support::register_without_script(&sb, "blog");
    // Incompressible, so that the archive is a few hundred KiB (a size below 1 KiB would not
    // show the unit).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..300 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(www.join("big.bin"), noise).unwrap();
    let file = sb.path("blog.bak");

    let out = sb.cli(&["backup", "blog", "--to", file.as_str(), "--dry-run"]);
    assert_success(&out, "backup --dry-run");
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(plan.contains(" KiB") && !plan.contains(" bytes"), "{plan}");

    let out = sb.cli(&["backup", "blog", "--to", file.as_str()]);
    assert_success(&out, "backup");
    let size = std::fs::metadata(&file).unwrap().len();
    let shown = human_bytes(size);
    assert!(shown.ends_with(" KiB"), "{shown}");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains(&format!("({shown}, sha256 ")),
        "{shown} in {report}"
    );

    let out = sb.cli(&["backups", "blog"]);
    assert_success(&out, "backups");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listing.contains(&shown), "{shown} in {listing}");
    assert!(!listing.contains(" bytes"), "{listing}");

    // The JSON keeps exact byte counts.
    let out = sb.cli(&["backups", "blog", "--json"]);
    assert_eq!(json(&out)["backups"][0]["size"], size);
}

/// `log` shows the policy commands too: each `run`, each upload of a backup to the remote
/// store, each `prune` and each `drill`, in text and JSON, failures with their reason.
#[test]
fn log_covers_run_upload_prune_and_drill() {
    let Some(s3) = s3_env::s3_test_env("log_policy") else {
        return;
    };
    let sb = Sandbox::new();
    let settings = "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\n\
                    site_title = \"Demo\"\nbehaviour = \"normal\"\n";
    sb.register("blog", "sh-sample", settings);
    sb.register("staging", "sh-sample", settings);
    let secret = sb.path("s3-secret");
    std::fs::write(&secret, &s3.secret_key).unwrap();
    std::fs::create_dir_all(sb.state()).unwrap();
    std::fs::write(
        sb.state().join("panel.toml"),
        format!(
            "[remote]\nendpoint = \"{}\"\nbucket = \"{}\"\nprefix = \"{}\"\n\
             access-key-id = \"{}\"\nsecret-access-key-file = \"{secret}\"\n",
            s3.endpoint, s3.bucket, s3.prefix, s3.access_key
        ),
    )
    .unwrap();
    assert_success(
        &sb.cli(&["run", "--periodicity", "daily", "--instance", "blog"]),
        "run",
    );
    assert_success(&sb.cli(&["prune"]), "prune");
    assert_success(&sb.cli(&["drill", "blog", "--staging", "staging"]), "drill");
    let log = json(&sb.cli(&["log", "--json"]));
    let ops = log["operations"].as_array().unwrap();
    let find = |kind: &str| -> Vec<&serde_json::Value> {
        ops.iter().filter(|o| o["operation"] == kind).collect()
    };
    let run = find("run");
    assert_eq!(run.len(), 1, "{log}");
    assert_eq!(run[0]["instance"], "blog", "{log}");
    assert_eq!(run[0]["outcome"], "ok", "{log}");
    assert!(
        run[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("daily: 1 ok, 0 failed"),
        "{log}"
    );
    let upload = find("upload");
    assert_eq!(upload.len(), 1, "{log}");
    assert_eq!(upload[0]["instance"], "blog", "{log}");
    assert_eq!(upload[0]["outcome"], "ok", "{log}");
    let message = upload[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("s3://") && message.contains("blog/blog_daily_"),
        "{log}"
    );
    let prune = find("prune");
    assert_eq!(prune.len(), 1, "{log}");
    assert_eq!(prune[0]["outcome"], "ok", "{log}");
    let drills = find("drill");
    assert_eq!(drills.len(), 1, "{log}");
    assert_eq!(drills[0]["instance"], "blog", "{log}");
    assert_eq!(drills[0]["outcome"], "ok", "{log}");
    assert!(
        drills[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("into staging: passed"),
        "{log}"
    );
    // The same in text, one line each.
    let out = sb.cli(&["log"]);
    assert_success(&out, "log");
    let text = String::from_utf8_lossy(&out.stdout);
    for kind in ["run ", "upload ", "prune ", "drill "] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().nth(2) == Some(kind.trim())),
            "{kind} in {text}"
        );
    }

    // A failed drill is recorded as failed, with the reason.
    std::fs::remove_dir_all(sb.state().join("backups")).unwrap();
    let out = sb.cli(&["drill", "blog", "--staging", "staging"]);
    assert!(!out.status.success(), "{out:?}");
    let log = json(&sb.cli(&["log", "blog", "--json"]));
    let last = log["operations"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|o| o["operation"] == "drill")
        .unwrap()
        .clone();
    assert_eq!(last["outcome"], "failed", "{log}");
    assert!(
        last["message"].as_str().unwrap().contains("no good backup"),
        "{log}"
    );
}
