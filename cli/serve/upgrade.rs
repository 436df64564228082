//! `POST /v1/instances/N/upgrade`: the upgrade, as `instance upgrade --json` does it, its
//! package inside `--allow-dir`.

use std::collections::BTreeMap;

use aps_panel::service::upgrade;
use camino::Utf8PathBuf;
use serde::Deserialize;

use super::App;
use super::answer::{Handled, failure_answer, parse, service_answer};
use crate::common::{Failure, success_json};

impl App {
    pub(super) fn upgrade(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum SettingBody {
            One(String),
            Many(Vec<String>),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            package: Utf8PathBuf,
            #[serde(default)]
            settings: BTreeMap<String, SettingBody>,
            #[serde(default)]
            dry_run: bool,
            timeout_secs: Option<u64>,
        }
        let b: Body = parse(body)?;
        self.allowed("package", &b.package)?;
        let mut settings = Vec::new();
        for (id, value) in &b.settings {
            match value {
                SettingBody::One(v) => settings.push(format!("{id}={v}")),
                SettingBody::Many(vs) => settings.extend(vs.iter().map(|v| format!("{id}={v}"))),
            }
        }
        let request = upgrade::Request {
            instance: name.to_owned(),
            package: b.package,
            settings,
            dry_run: b.dry_run,
            timeout_secs: b.timeout_secs,
        };
        request.check().map_err(service_answer)?;
        Ok(match upgrade::upgrade(&self.ctl, &request) {
            Ok(report) => (200, success_json(&report)),
            Err(e) => failure_answer(Failure::from_service(&e, &super::answer::JsonFields)),
        })
    }
}
