//! The runner against real processes: environment, process group, timeout, capture, errors.

use std::time::Duration;

use aps_controller::runner::{ProcessSpec, RunError, SAFE_PATH, TAIL_LIMIT};
use camino::{Utf8Path, Utf8PathBuf};

fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
    (dir, path)
}

fn sh(script: &str) -> ProcessSpec {
    ProcessSpec::for_script("/bin/sh").arg("-c").arg(script)
}

/// Whether a process is running (a zombie counts as gone: it holds no files and runs nothing).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !(state.starts_with('Z') || state.starts_with('X'))
        }
        Err(_) => false,
    }
}

/// SIGKILL is delivered asynchronously; give the kernel a moment (bounded) to finish the job.
fn eventually_gone(pid: u32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn read_pid(path: &Utf8Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn script_environment_is_clean() {
    // SAFETY-free way to prove nothing leaks: a variable the test process surely has.
    assert!(std::env::var_os("PATH").is_some());
    let out = sh("env | sort").env("DB_main_NAME", "wp").run().unwrap();
    let env = out.stdout_lossy();
    let mut names: Vec<&str> = env.lines().map(|l| l.split('=').next().unwrap()).collect();
    names.sort();
    // `sh` itself adds PWD (and some shells SHLVL, `_`); nothing else of ours may appear.
    names.retain(|n| !matches!(*n, "PWD" | "SHLVL" | "_" | "OLDPWD"));
    assert_eq!(names, ["DB_main_NAME", "HOME", "LANG", "PATH"], "{env}");
    assert!(env.contains(&format!("PATH={SAFE_PATH}\n")));
    assert!(env.contains("LANG=C.UTF-8\n"));
}

#[test]
fn private_home_is_empty_and_removed() {
    let out = sh("echo \"$HOME\"; ls -A \"$HOME\" | wc -l; touch \"$HOME/x\"")
        .run()
        .unwrap();
    let text = out.stdout_lossy();
    let mut lines = text.lines();
    let home = lines.next().unwrap().to_owned();
    assert_eq!(lines.next().unwrap().trim(), "0", "HOME was not empty");
    assert!(!home.is_empty());
    assert!(
        !Utf8Path::new(&home).exists(),
        "private HOME {home} left behind"
    );
}

#[test]
fn private_home_under_given_parent() {
    let (_keep, dir) = tempdir();
    let out = sh("echo \"$HOME\"").home_parent(&dir).run().unwrap();
    let home = out.stdout_lossy().trim().to_owned();
    assert!(home.starts_with(dir.as_str()), "{home}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn bare_process_has_empty_environment() {
    let out = ProcessSpec::new("/usr/bin/env").run().unwrap();
    assert_eq!(out.stdout_lossy(), "");
}

#[test]
fn working_directory_and_args() {
    let (_keep, dir) = tempdir();
    let out = sh("pwd; echo \"$1|$2\"")
        .args(["name", "a b", "c"])
        .current_dir(&dir)
        .run()
        .unwrap();
    let canonical = dir.canonicalize_utf8().unwrap();
    assert_eq!(out.stdout_lossy(), format!("{canonical}\na b|c\n"));
}

#[test]
fn own_process_group() {
    let out = sh("ps -o pid=,pgid= -p $$").run();
    let out = match out {
        Ok(out) => out,
        // `ps` may not be installed: read /proc instead.
        Err(_) => sh("cut -d' ' -f1,5 /proc/$$/stat").run().unwrap(),
    };
    let text = out.stdout_lossy();
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(
        fields[0], fields[1],
        "child must lead its own group: {text}"
    );
}

#[test]
fn stdin_is_dev_null_unless_given() {
    let out = sh("cat").run().unwrap();
    assert!(out.stdout_tail.is_empty());

    let (_keep, dir) = tempdir();
    let input = dir.join("in.sql");
    std::fs::write(&input, "CREATE TABLE t;\n").unwrap();
    let out = sh("cat").stdin_file(&input).run().unwrap();
    assert_eq!(out.stdout_lossy(), "CREATE TABLE t;\n");
}

#[test]
fn stdout_streams_to_file() {
    let (_keep, dir) = tempdir();
    let dump = dir.join("dump.sql");
    // 1 MiB: much more than the capture bound, all of it must land in the file.
    let out = sh("head -c 1048576 /dev/zero; echo done >&2")
        .stdout_to_file(&dump)
        .run()
        .unwrap();
    assert_eq!(std::fs::metadata(&dump).unwrap().len(), 1 << 20);
    assert_eq!(out.stdout_file_len, Some(1 << 20));
    assert!(out.stdout_tail.is_empty());
    assert_eq!(out.stderr_lossy(), "done\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dump).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "dump file readable by others: {mode:o}");
}

#[test]
fn capture_is_bounded_to_the_tail() {
    // 200 KiB on each stream at once: both pipes must be drained concurrently or this hangs.
    let out = sh("i=0; while [ $i -lt 2000 ]; do \
                  printf '%0100d\\n' $i; printf '%0100d\\n' $i >&2; i=$((i+1)); done")
    .run()
    .unwrap();
    assert_eq!(out.stdout_tail.len(), TAIL_LIMIT);
    assert_eq!(out.stderr_tail.len(), TAIL_LIMIT);
    assert!(out.stdout_truncated && out.stderr_truncated);
    assert!(out.stdout_lossy().ends_with(&format!("{:0100}\n", 1999)));
}

#[test]
fn nonzero_exit_is_an_error_with_context() {
    let (_keep, dir) = tempdir();
    let err = sh("echo 'cannot connect to database' >&2; exit 3")
        .current_dir(&dir)
        .env("DB_main_PASSWORD", "hunter2")
        .run()
        .unwrap_err();
    match &err {
        RunError::Exit { code, .. } => assert_eq!(*code, 3),
        other => panic!("expected Exit, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("/bin/sh -c"), "{msg}");
    assert!(msg.contains(dir.as_str()), "{msg}");
    assert!(msg.contains("exit code 3"), "{msg}");
    assert!(msg.contains("cannot connect to database"), "{msg}");
    assert!(!msg.contains("hunter2"));
    assert!(!format!("{err:?}").contains("hunter2"));
    assert_eq!(err.stderr_tail(), "cannot connect to database\n");
}

#[test]
fn error_display_keeps_only_the_last_of_stderr() {
    let err = sh("head -c 10000 /dev/zero | tr '\\0' a >&2; echo THE-END >&2; exit 1")
        .run()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.ends_with("THE-END"), "{msg}");
    assert!(msg.len() < 3000, "message too long: {}", msg.len());
    assert!(err.stderr_tail().len() > 10000);
}

#[test]
fn signal_is_its_own_error() {
    let err = sh("kill -SEGV $$").run().unwrap_err();
    match &err {
        RunError::Signal { signal, .. } => assert_eq!(*signal, 11),
        other => panic!("expected Signal, got {other:?}"),
    }
    assert!(err.to_string().contains("signal 11"), "{err}");
}

#[test]
fn missing_program_is_a_spawn_error() {
    let err = ProcessSpec::for_script("/nonexistent/php")
        .arg("script")
        .run()
        .unwrap_err();
    assert!(matches!(err, RunError::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/php script"), "{err}");
}

#[test]
fn missing_working_directory_is_a_spawn_error() {
    let err = sh("true")
        .current_dir("/nonexistent/scripts")
        .run()
        .unwrap_err();
    assert!(matches!(err, RunError::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/scripts"), "{err}");
}

#[test]
fn missing_stdin_file_is_a_setup_error() {
    let err = sh("cat")
        .stdin_file("/nonexistent/in.sql")
        .run()
        .unwrap_err();
    assert!(matches!(err, RunError::Setup { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/in.sql"), "{err}");
}

#[test]
fn timeout_kills_the_whole_group() {
    let (_keep, dir) = tempdir();
    let pidfile = dir.join("grandchild.pid");
    let err = sh(&format!(
        "sleep 1000 & echo $! > {pidfile}; echo started >&2; wait"
    ))
    .timeout(Duration::from_millis(300))
    .kill_grace(Duration::from_millis(300))
    .run()
    .unwrap_err();
    match &err {
        RunError::Timeout { output, .. } => assert_eq!(output.stderr_lossy(), "started\n"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(err.to_string().contains("timed out"), "{err}");
    let grandchild = read_pid(&pidfile);
    assert!(
        eventually_gone(grandchild),
        "grandchild {grandchild} survived"
    );
}

#[test]
fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() {
    let (_keep, dir) = tempdir();
    let pidfile = dir.join("leader.pid");
    let err = sh(&format!(
        "trap '' TERM; echo $$ > {pidfile}; while :; do sleep 1; done"
    ))
    .timeout(Duration::from_millis(300))
    .kill_grace(Duration::from_millis(300))
    .run()
    .unwrap_err();
    assert!(matches!(err, RunError::Timeout { .. }), "{err:?}");
    assert!(eventually_gone(read_pid(&pidfile)));
}

#[test]
fn leftovers_are_killed_after_a_normal_exit() {
    let (_keep, dir) = tempdir();
    let pidfile = dir.join("daemon.pid");
    // The daemon drops our pipes, so the runner does not wait for it through them.
    let out = sh(&format!(
        "sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}; exit 0"
    ))
    .run()
    .unwrap();
    assert!(out.status.success());
    let daemon = read_pid(&pidfile);
    assert!(
        eventually_gone(daemon),
        "daemonized child {daemon} survived"
    );
}
