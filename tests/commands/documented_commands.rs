//! The commands the documentation shows are real: every `aps-controller …` line of a code block
//! in README.md and docs/*.md, and every line of the EXAMPLES section of every command's
//! `--help`, is run by the real binary against a prepared state folder (instances `blog` and
//! `staging` of the sh fixture). A command, subcommand or option that does not exist is
//! refused by the argument parser ("For more information, try '--help'") and fails this test.
//! Optional parts (`[--timeout SECS]`) are run too, with their placeholders filled in; absolute
//! paths are moved under the sandbox, so nothing outside it is touched.

use test_support as support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;

use support::{Sandbox, assert_success, help, repo};

const SH_SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";

/// `aps-controller …` lines inside code blocks (fenced, or indented by four spaces), with
/// `\` continuations joined.
fn documented_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut pending: Option<String> = None;
    for raw in text.lines() {
        if raw.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let in_code = fenced || raw.starts_with("    ");
        let line = raw.trim();
        if let Some(mut p) = pending.take() {
            p.push(' ');
            p.push_str(line.trim_end_matches('\\'));
            if line.ends_with('\\') {
                pending = Some(p);
            } else {
                out.push(p);
            }
            continue;
        }
        if in_code && line.starts_with("aps-controller ") {
            if line.ends_with('\\') {
                pending = Some(line.trim_end_matches('\\').to_owned());
            } else {
                out.push(line.to_owned());
            }
        }
    }
    out
}

/// The EXAMPLES lines of `aps-controller ARGS --help`.
fn help_examples(args: &[&str]) -> Vec<String> {
    let text = help(args);
    text.split("EXAMPLES:")
        .nth(1)
        .map(|examples| {
            examples
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("aps-controller "))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Lines of the Arguments and Options sections that name an option or argument and give no
/// description (on the line, or on the next, more indented one).
fn options_without_description(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    let mut in_section = false;
    for (i, line) in lines.iter().enumerate() {
        if *line == "Arguments:" || *line == "Options:" {
            in_section = true;
            continue;
        }
        if line.trim().is_empty() {
            in_section = false;
            continue;
        }
        let entry = line.trim_start();
        if !in_section || !(entry.starts_with('-') || entry.starts_with('<')) {
            continue;
        }
        let described_here = entry.split("  ").filter(|p| !p.trim().is_empty()).count() > 1;
        let described_below = lines.get(i + 1).is_some_and(|next| {
            let indent = |l: &str| l.len() - l.trim_start().len();
            !next.trim().is_empty() && indent(next) > indent(line)
        });
        if !described_here && !described_below {
            missing.push(entry.to_owned());
        }
    }
    missing
}

/// Splits a shell line into words (quotes honoured, comments, pipes and redirections dropped),
/// fills placeholders and moves absolute paths under `root`.
fn words(line: &str, root: &Utf8PathBuf) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            // A pipe or a redirection ends the command (`aps-controller man | man -l -`).
            (None, '|' | '>' | '<' | '&' | ';') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    // The sandbox gives its own state folder.
    if let Some(i) = words
        .iter()
        .position(|w| w.trim_start_matches('[') == "--state-dir")
    {
        words.drain(i..(i + 2).min(words.len()));
    }
    words
        .into_iter()
        .skip(1) // aps-controller
        .map(|w| w.replace(['[', ']', '…'], ""))
        .filter(|w| !w.is_empty())
        .map(|w| match w.as_str() {
            "NAME" => "blog".to_owned(),
            "OTHER" => "staging".to_owned(),
            "SECS" => "60".to_owned(),
            "N" => "2".to_owned(),
            "FILE" | "PATH" | "KEY" | "DIR" => "placeholder".to_owned(),
            _ if w.starts_with('/') => format!("{root}{w}"),
            _ => w,
        })
        .collect()
}

struct Ran {
    code: Option<i32>,
    stderr: String,
}

fn run(sb: &Sandbox, args: &[String]) -> Ran {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = sb
        .command(&strs)
        .current_dir(sb.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `serve` with a real token would run until stopped.
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn prepared() -> Sandbox {
    let sb = Sandbox::new();
    for name in ["blog", "staging"] {
        sb.register(
            name,
            "sh-sample",
            &format!("{SH_SETTINGS}behaviour = \"normal\"\n"),
        );
    }
    // Relative paths of the examples resolve in the sandbox (the working folder).
    for dir in ["examples", "fixtures"] {
        std::os::unix::fs::symlink(repo().join(dir), sb.root().join(dir)).unwrap();
    }
    sb
}

#[test]
fn every_documented_command_line_is_accepted_by_the_binary() {
    let sb = prepared();
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut docs: Vec<Utf8PathBuf> = vec![repo().join("README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = Utf8PathBuf::try_from(entry.unwrap().path()).unwrap();
        if path.extension() == Some("md") {
            docs.push(path);
        }
    }
    docs.sort();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for l in documented_lines(&text) {
            lines.push((doc.file_name().unwrap().to_owned(), l));
        }
    }
    // Listed once: every `--help` is a process.
    let commands = support::commands();
    let mut with_examples = 0;
    for c in &commands {
        let c: Vec<&str> = c.iter().map(String::as_str).collect();
        let examples = help_examples(&c);
        assert!(
            !examples.is_empty(),
            "`{}` --help has no EXAMPLES",
            c.join(" ")
        );
        with_examples += 1;
        for e in examples {
            lines.push((format!("{} --help", c.join(" ")), e));
        }
    }
    assert!(with_examples >= 15, "{with_examples} commands");
    let mut undescribed = Vec::new();
    for c in &commands {
        let c: Vec<&str> = c.iter().map(String::as_str).collect();
        undescribed.extend(
            options_without_description(&help(&c))
                .into_iter()
                .map(|o| format!("{}: {o}", c.join(" "))),
        );
    }
    assert!(
        undescribed.is_empty(),
        "options and arguments without a description: {undescribed:?}"
    );
    assert!(lines.len() > 40, "{} documented lines", lines.len());

    let mut refused = Vec::new();
    for (source, line) in &lines {
        let args = words(line, &sb.root());
        let ran = run(&sb, &args);
        if ran.stderr.contains("For more information, try '--help'") {
            refused.push(format!("{source}: {line}\n    {}", ran.stderr.trim()));
        }
        assert_ne!(ran.code, None, "{source}: {line}: killed by a signal");
    }
    assert!(
        refused.is_empty(),
        "documented commands the binary does not accept:\n{}",
        refused.join("\n")
    );
}

/// The README's front door works as written on a prepared state.
#[test]
fn the_readme_flow_runs_as_written() {
    let sb = prepared();
    for line in [
        "aps-controller backup blog",
        "aps-controller backups blog",
        "aps-controller restore blog --latest",
        "aps-controller run --periodicity daily",
        "aps-controller key generate --out key.txt",
    ] {
        let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
        assert!(
            documented_lines(&readme)
                .iter()
                .any(|l| l.split('#').next().unwrap().trim() == line),
            "README no longer shows `{line}`"
        );
        let args = words(line, &sb.root());
        let strs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.command(&strs).current_dir(sb.root()).output().unwrap();
        assert_success(&out, line);
    }
}
