//! An S3-compatible bucket in panel.toml: `[store.s3]`, where a repository lives, and
//! `[remote]`, which receives a copy of every archive; the credentials to reach it.

use camino::Utf8PathBuf;
use serde::Deserialize;

/// A prefix of an S3-compatible bucket and the credentials to reach it: `[store.s3]` (where
/// the repository lives) and the bucket keys of `[remote]`. Unknown keys are refused by
/// `unknown_keys` (`unknown.rs`) before these tables are read (serde's own refusal cannot be combined with
/// `[remote]` flattening this table into its own).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct S3Bucket {
    /// `https://s3.example.com`; absent means AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. `host1/` or `host1/repository`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Else the environment's `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// A file holding the secret key (kept out of panel.toml); else `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key_file: Option<Utf8PathBuf>,
    /// Take the credentials from the cloud machine's instance-metadata endpoint (EC2's
    /// `169.254.169.254`) when no key is given. Off by default: without it, missing keys are
    /// refused before any request instead of asking an endpoint most hosts do not have.
    #[serde(default)]
    pub use_instance_metadata: bool,
    /// How many times a request that got no answer, a timeout or a server error (5xx) is
    /// tried again, with exponential backoff (100 ms doubling, at most 15 s), before the store
    /// counts as unreachable. Default 10.
    pub retries: Option<usize>,
    /// How long one request may take, connecting included, e.g. `"30s"` (the default).
    pub timeout: Option<String>,
}

/// `timeout` when panel.toml does not say.
pub const DEFAULT_S3_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// `retries` when panel.toml does not say.
pub const DEFAULT_S3_RETRIES: usize = 10;

/// The keys an S3 client signs with, as [`S3Bucket::credentials`] resolved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Credentials {
    Keys {
        access_key_id: String,
        secret_access_key: String,
    },
    /// `use-instance-metadata = true` and no key given: the client asks the endpoint.
    InstanceMetadata,
}

impl S3Bucket {
    /// `""` or `a/b/`: what every object key of the repository starts with.
    pub fn key_prefix(&self) -> String {
        let p = self.prefix.trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    }

    /// The key id (`access-key-id`, else `AWS_ACCESS_KEY_ID`) and the secret
    /// (`secret-access-key-file`, else `AWS_SECRET_ACCESS_KEY`), checked before any request:
    /// a missing, unreadable or empty one is refused naming the key of `section` (`remote` or
    /// `store.s3`) to set.
    pub fn credentials(&self, section: &str) -> Result<S3Credentials, String> {
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let id = match &self.access_key_id {
            Some(id) if id.trim().is_empty() => {
                return Err(format!("[{section}] access-key-id is empty"));
            }
            Some(id) => Some(id.trim().to_owned()),
            None => env("AWS_ACCESS_KEY_ID"),
        };
        let secret = match &self.secret_access_key_file {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    format!("[{section}] secret-access-key-file {file} cannot be read: {e}")
                })?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(format!(
                        "[{section}] secret-access-key-file {file} is empty; put the secret \
                         access key in it"
                    ));
                }
                Some(text.to_owned())
            }
            None => env("AWS_SECRET_ACCESS_KEY"),
        };
        match (id, secret) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(S3Credentials::Keys {
                access_key_id,
                secret_access_key,
            }),
            (None, None) if self.use_instance_metadata => Ok(S3Credentials::InstanceMetadata),
            (None, _) => Err(format!(
                "no access key given for {}: set access-key-id in [{section}] of panel.toml \
                 (or AWS_ACCESS_KEY_ID in the environment){}",
                self.describe(),
                if self.use_instance_metadata {
                    ", together with the secret"
                } else {
                    "; on a cloud machine whose instance-metadata endpoint hands out \
                     credentials, set use-instance-metadata = true instead"
                }
            )),
            (Some(_), None) => Err(format!(
                "no secret access key given for {}: set secret-access-key-file in [{section}] \
                 of panel.toml to a file holding it (or AWS_SECRET_ACCESS_KEY in the environment)",
                self.describe()
            )),
        }
    }

    /// `timeout` as a duration (`None`: not a positive duration such as `"30s"`).
    pub fn request_timeout(&self) -> Option<std::time::Duration> {
        match &self.timeout {
            None => Some(DEFAULT_S3_TIMEOUT),
            Some(t) => t
                .parse::<jiff::SignedDuration>()
                .ok()
                .and_then(|d| std::time::Duration::try_from(d).ok())
                .filter(|d| !d.is_zero()),
        }
    }

    /// `s3://bucket/prefix/`, for messages and reports.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key_prefix())
    }
}

/// An S3-compatible bucket that receives a copy of every backup. Unknown keys: as for
/// [`S3Bucket`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RemoteConfig {
    #[serde(flatten)]
    pub bucket: S3Bucket,
    #[serde(flatten)]
    pub upload: UploadSizes,
}

/// `[remote]`'s own keys besides the bucket's: how big the upload's parts are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UploadSizes {
    /// Files at least this big are uploaded in parts.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold_mib: u64,
    #[serde(default = "default_part_size")]
    pub part_size_mib: u64,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}
fn default_multipart_threshold() -> u64 {
    64
}
fn default_part_size() -> u64 {
    16
}
