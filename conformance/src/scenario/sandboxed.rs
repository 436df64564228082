//! The instances the rounds make besides the one under test (the migration's target, each
//! upgrade's old version): each installed into a sandbox of its own by the run's controller,
//! captured as its own account, and removed with its sandbox at the end of its round.

use std::collections::BTreeMap;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use aps_controller::lifecycle::generate_missing;
use aps_controller::lifecycle::given::GivenSettings;
use aps_controller::operation::install::InstallRequest;
use aps_controller::operation::remove::RemoveRequest;
use aps_controller::registry::{Instance, open_package};
use aps_controller::{Controller, OperationError};
use aps_meta::model::{AppMeta, Mapping};

use super::{Context, StepFailure};
use crate::capture::{Capture, CaptureOptions};
use crate::sandbox::{Ending, Sandbox};

/// How long a capture's queries may take when the run names no timeout.
pub(super) const CAPTURE_TIMEOUT: Duration = Duration::from_secs(300);

/// An instance of the run in a sandbox of its own.
pub(super) struct Sandboxed {
    pub sandbox: Sandbox,
    /// The instance's name: the sandbox's (unique on the host, valid as an instance name).
    pub name: String,
}

/// The metadata of the package at `path` (a folder or `.app.zip`).
pub(super) fn package_meta(cx: &Context<'_>, path: &Utf8Path) -> Result<AppMeta, StepFailure> {
    open_package(&cx.controller.config().state, path)
        .map(|opened| opened.meta)
        .map_err(|e| StepFailure::new(format!("cannot open the package: {e}")))
}

/// The settings an extra instance of `meta` is installed with: what the run was given for the
/// settings `meta` declares, except those it declares `uniq` (an instance's own, which a
/// second instance on the same controller may not share), then a generated value for every
/// required setting still missing — generated afresh, so that `uniq` ones differ.
pub(super) fn settings_for(
    meta: &AppMeta,
    given: &GivenSettings,
) -> Result<GivenSettings, StepFailure> {
    let usable: Vec<&str> = meta
        .service
        .all_settings()
        .into_iter()
        .chain(meta.all_global_settings())
        .filter(|s| s.uniq.is_none())
        .map(|s| s.id.as_str())
        .collect();
    let mut kept = GivenSettings::new();
    for (id, value) in given.iter() {
        if usable.contains(&id) {
            kept.insert(id, value.clone());
        }
    }
    generate_missing(meta, &kept, &random_seed()?)
        .map_err(|e| StepFailure::new(format!("cannot fill in the settings: {e}")))
}

/// Makes a sandbox and installs `package` into its web root as its account, with `settings`;
/// the databases go to servers of the host's configuration that suit the package.
pub(super) fn install(
    cx: &Context<'_>,
    package: &Utf8Path,
    settings: GivenSettings,
) -> Result<Sandboxed, StepFailure> {
    let sandbox = Sandbox::create(&cx.options.sandbox)?;
    let name = sandbox.name().to_owned();
    let mut request = InstallRequest::new(
        package,
        name.as_str(),
        format!("http://{name}.invalid/"),
        sandbox.web_root(),
    );
    request.user = Some(name.clone());
    request.settings = settings;
    request.timeout = cx.options.timeout;
    cx.controller
        .install(&request)
        .map_err(|e| operation_failed("installing", &e))?;
    Ok(Sandboxed { sandbox, name })
}

/// The registered instance `name`.
pub(super) fn instance(controller: &Controller, name: &str) -> Result<Instance, StepFailure> {
    controller
        .store()
        .get(name)
        .map_err(|e| StepFailure::new(format!("cannot read the record of `{name}`: {e}")))
}

/// A capture of the instance `name`, whose files the account `uid` owns.
pub(super) fn capture(cx: &Context<'_>, name: &str, uid: u32) -> Result<Capture, StepFailure> {
    let instance = instance(&cx.controller, name)?;
    let options = CaptureOptions {
        account_uid: Some(uid),
        timeout: cx.options.timeout.unwrap_or(CAPTURE_TIMEOUT),
    };
    Ok(Capture::of_instance(&instance, &options)?)
}

/// The web folders of `instance` that `meta` declares writable, by url-mapping path: what
/// the seed writes its markers into.
pub(super) fn writable_dirs(meta: &AppMeta, instance: &Instance) -> BTreeMap<String, Utf8PathBuf> {
    fn walk(m: &Mapping, parent: &str, out: &mut Vec<String>) {
        let url = match m.url.trim_matches('/') {
            "" => parent.to_owned(),
            rel => format!("{}/{rel}", parent.trim_end_matches('/')),
        };
        if m.writable == Some(true) && !m.is_virtual {
            out.push(url.clone());
        }
        for child in &m.children {
            walk(child, &url, out);
        }
    }
    let mut urls = Vec::new();
    if let Some(mapping) = &meta.service.provision.url_mapping {
        for m in &mapping.mappings {
            walk(m, "/", &mut urls);
        }
    }
    urls.into_iter()
        .filter_map(|url| Some((url.clone(), instance.web_dirs.get(&url)?.clone())))
        .filter(|(_, dir)| dir.is_dir())
        .collect()
}

/// Ends an extra instance: removes it (its files, databases and users) and then its sandbox;
/// with `keep`, leaves both and says where. Returns what became of the sandbox.
pub(super) fn finish(cx: &Context<'_>, extra: Sandboxed) -> Result<Ending, StepFailure> {
    if !cx.options.sandbox.keep {
        let mut request = RemoveRequest::new(extra.name.as_str());
        request.timeout = cx.options.timeout;
        cx.controller
            .remove(&request)
            .map_err(|e| operation_failed("removing", &e))?;
    }
    Ok(extra.sandbox.finish()?)
}

/// A failed operation, as a row's why: the phase it failed in and the controller's words.
pub(super) fn operation_failed(doing: &str, e: &OperationError) -> StepFailure {
    let mut failure = StepFailure::new(format!("{doing} failed ({}): {e}", e.kind().as_str()));
    if let OperationError::Script { source, .. } = e {
        failure.output = source.output().cloned();
    }
    failure
}

fn random_seed() -> Result<[u8; 32], StepFailure> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .map_err(|e| StepFailure::new(format!("cannot read /dev/urandom: {e}")))?;
    Ok(seed)
}
