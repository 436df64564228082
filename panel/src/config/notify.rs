//! The `[notify]` table of panel.toml: whom to tell after each `run` (docs/monitoring.md).

use camino::Utf8PathBuf;
use serde::Deserialize;

/// Where a run's outcome goes once it ended: a URL pinged (healthchecks.io's shape) and/or a
/// command given the run's JSON on stdin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotifyConfig {
    /// `http://` or `https://`: POSTed the run's JSON after a run where everything succeeded.
    pub url: Option<String>,
    /// POSTed after a run where something failed; default: `url` + `/fail` (healthchecks.io).
    pub failure_url: Option<String>,
    /// An absolute program and its arguments, run after each run with the run's JSON on stdin.
    pub command: Option<Vec<String>>,
    /// The account the command runs as. Without it the command runs as the controller's own
    /// account (root), and only when the program and every folder above it belong to root (or
    /// that account) and nobody else can write them.
    pub user: Option<String>,
    /// Seconds a ping or the command may take (default 10).
    pub timeout_secs: Option<u64>,
}

impl NotifyConfig {
    /// Every problem of the table that can be seen without running anything.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, url) in [("url", &self.url), ("failure-url", &self.failure_url)] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                problems.push(format!(
                    "[notify] {key} = {url:?}: expected an http:// or https:// URL"
                ));
            }
        }
        if self.failure_url.is_some() && self.url.is_none() {
            problems.push("[notify] failure-url needs url too (the ping of a good run)".into());
        }
        match &self.command {
            Some(c) if c.is_empty() => {
                problems.push("[notify] command is empty: give [\"/path/to/program\", …]".into())
            }
            Some(c) if !Utf8PathBuf::from(&c[0]).is_absolute() => problems.push(format!(
                "[notify] command: the program {:?} must be an absolute path (no PATH search as root)",
                c[0]
            )),
            _ => {}
        }
        if self.user.is_some() && self.command.is_none() {
            problems.push("[notify] user is the command's account; there is no command".into());
        }
        if self.timeout_secs == Some(0) {
            problems.push("[notify] timeout-secs must be at least 1".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;

    #[test]
    fn the_notify_table_is_read_and_its_mistakes_named_together() {
        let c = load(
            "[notify]\nurl = \"https://hc-ping.com/5f1c\"\ncommand = [\"/usr/local/bin/tell\", \"--quiet\"]\nuser = \"nobody\"\n",
        )
        .unwrap();
        let n = c.notify.unwrap();
        assert_eq!(n.url.as_deref(), Some("https://hc-ping.com/5f1c"));
        assert_eq!(n.command.unwrap(), ["/usr/local/bin/tell", "--quiet"]);
        let e =
            load("[notify]\nfailure-url = \"ftp://x\"\ncommand = [\"tell\"]\ntimeout-secs = 0\n")
                .unwrap_err()
                .to_string();
        for said in [
            "expected an http:// or https:// URL",
            "failure-url needs url",
            "must be an absolute path",
            "timeout-secs must be at least 1",
        ] {
            assert!(e.contains(said), "{said}: {e}");
        }
        let e = load("[notify]\nurls = \"https://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("url"), "{e}");
    }
}
