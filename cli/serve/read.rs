//! The read routes — `GET /v1/instances`, `GET /v1/status`, `GET /metrics` — answered from the
//! adapter's [`ReadCache`](super::cache::ReadCache): each is made from the registry's folder
//! (and the status folder) once, and again only when one of them changed.

use aps_controller::registry::view;
use aps_panel::Periodicity;
use aps_panel::service::ServiceError;
use aps_panel::service::status;
use camino::Utf8PathBuf;
use serde_json::{Value, json};

use super::App;
use super::answer::{Answer, service_answer, store_problem};
use super::cache::Made;
use super::http::{Reply, Request};

/// What the status table is made of: the registry's instances and what `run` recorded.
pub(super) type StatusInputs = (
    Vec<status::Registered>,
    std::collections::BTreeMap<String, aps_panel::status::InstanceStatus>,
);

const JSON: &str = "application/json";
/// The Prometheus text exposition format, version 0.0.4.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl App {
    fn instances_dir(&self) -> Utf8PathBuf {
        self.ctl.config().state.instances_dir()
    }

    fn status_dir(&self) -> Utf8PathBuf {
        aps_panel::status::status_dir(self.ctl.config().state.root())
    }

    /// `GET /v1/instances`: every instance's summary, as `instance list --json`.
    pub(super) fn list(&self) -> Reply {
        let folders = [self.instances_dir()];
        self.cache.get("instances", 0, &[&folders[0]], || {
            json_made(match self.ctl.store().list() {
                Ok(all) => {
                    let items: Vec<Value> = all.iter().map(view::summary_json).collect();
                    (200, json!({"ok": true, "instances": items}))
                }
                Err(e) => store_problem(e),
            })
        })
    }

    /// `GET /v1/status[?max_age=26h][&periodicity=daily]`: the table of `status --json`; with
    /// stale instances 503 and the `stale` error, so that a check reads the status code.
    pub(super) fn status(&self, request: &Request) -> Reply {
        let (max_age_text, request) = match status_query(&request.url) {
            Ok(q) => q,
            Err(message) => return reply_of(super::answer::problem(400, "bad-request", message)),
        };
        // Ages are counted in whole seconds: an answer is kept for the second it was made in.
        let second = jiff::Timestamp::now().as_second();
        let key = format!("status {:?} {:?}", request.max_age, request.periodicity);
        let folders = [self.instances_dir(), self.status_dir()];
        self.cache
            .get(&key, second, &[&folders[0], &folders[1]], || {
                json_made(match self.status_table(&request) {
                    Ok(table) => {
                        let stale = crate::failures::stale_failure(&table, &max_age_text);
                        let status = if stale.is_some() { 503 } else { 200 };
                        (status, crate::failures::table_json(&table, stale.as_ref()))
                    }
                    Err(e) => service_answer(e),
                })
            })
    }

    /// `GET /metrics`: the status table in the Prometheus text format.
    pub(super) fn metrics(&self) -> Reply {
        let folders = [self.instances_dir(), self.status_dir()];
        self.cache
            .get("metrics", 0, &[&folders[0], &folders[1]], || {
                match self.status_table(&status::Request::default()) {
                    Ok(table) => Made {
                        status: 200,
                        content_type: PROMETHEUS,
                        bytes: super::metrics::exposition(&table).into_bytes(),
                        keep: true,
                    },
                    Err(e) => json_made(service_answer(e)),
                }
            })
    }
}

impl App {
    /// The status table now, from the records and status files kept while their folders are
    /// unchanged (a new second only counts the ages again).
    fn status_table(&self, request: &status::Request) -> Result<status::StatusTable, ServiceError> {
        let folders = [self.instances_dir(), self.status_dir()];
        let inputs = self.status_inputs.get(&[&folders[0], &folders[1]], || {
            Ok::<_, ServiceError>((status::registered(&self.ctl)?, status::recorded(&self.ctl)?))
        })?;
        Ok(status::table(
            &inputs.0,
            &inputs.1,
            jiff::Timestamp::now(),
            request,
        ))
    }
}

/// A JSON answer as the cache keeps it (a failure is not kept).
fn json_made((status, v): Answer) -> Made {
    Made {
        status,
        content_type: JSON,
        bytes: v.to_string().into_bytes(),
        keep: status == 200 || status == 503,
    }
}

fn reply_of((status, v): Answer) -> Reply {
    Reply {
        status,
        body: v.into(),
    }
}

/// `max_age` and `periodicity` of the query string; anything else is refused.
fn status_query(url: &str) -> Result<(String, status::Request), String> {
    let mut request = status::Request::default();
    let mut max_age_text = String::new();
    let query = url.split_once('?').map_or("", |(_, q)| q);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "max_age" => {
                request.max_age =
                    Some(status::parse_age(value).map_err(|m| format!("max_age: {m}"))?);
                max_age_text = value.to_owned();
            }
            "periodicity" => {
                request.periodicity = Some(
                    value
                        .parse::<Periodicity>()
                        .map_err(|e| format!("periodicity: {e}"))?,
                );
            }
            _ => {
                return Err(format!(
                    "unknown query parameter {:?}; /v1/status takes max_age and periodicity",
                    key.escape_debug().to_string()
                ));
            }
        }
    }
    Ok((max_age_text, request))
}

#[cfg(test)]
mod tests {
    use super::status_query;

    #[test]
    fn the_status_query_takes_its_two_parameters_and_nothing_else() {
        let (text, r) = status_query("/v1/status?max_age=26h&periodicity=daily").unwrap();
        assert_eq!(text, "26h");
        assert_eq!(r.max_age.unwrap().as_secs(), 26 * 3600);
        assert_eq!(r.periodicity.unwrap().as_str(), "daily");
        assert!(status_query("/v1/status").unwrap().1.max_age.is_none());
        for bad in ["?max_age=soon", "?periodicity=yearly", "?token=x"] {
            assert!(status_query(&format!("/v1/status{bad}")).is_err(), "{bad}");
        }
    }
}
