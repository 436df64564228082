//! The S3-compatible remote store, through `object_store`. Objects are
//! `<prefix><instance>/<backup file name>`, the same layout as the local folder.
//!
//! Uploads are atomic by nature: a single PUT, or a multipart upload that is either completed
//! or aborted, so a listed object is always whole. After each upload the object is read back
//! and hashed: a copy that was never read back is not a copy we can count on. The SHA-256 is
//! also stored as user metadata (`x-amz-meta-sha256`) for whoever inspects the bucket.

use std::io::{Read, Write};

use camino::Utf8Path;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
};
use sha2::{Digest, Sha256};

use super::files::{ArchiveFiles, Remote, StoreError, StoredFile, Upload};
use crate::config::RemoteConfig;

const MIB: u64 = 1024 * 1024;

pub struct S3Store {
    store: AmazonS3,
    bucket: String,
    prefix: String,
    multipart_threshold: u64,
    part_size: u64,
    runtime: tokio::runtime::Runtime,
}

impl S3Store {
    /// Credentials: panel.toml's `access-key-id` / `secret-access-key-file`, else the
    /// environment's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub fn open(c: &RemoteConfig) -> Result<Self, StoreError> {
        let b = &c.bucket;
        let describe = format!("s3://{}/{}", b.bucket, b.prefix);
        let err = |message: String| StoreError::Remote {
            store: describe.clone(),
            message,
        };
        let store =
            client(b, "remote").map_err(|e| err(format!("invalid [remote] settings: {e}")))?;
        if c.upload.part_size_mib < 5 {
            return Err(err(
                "part-size-mib must be at least 5 (the S3 minimum part size)".to_owned(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("aps-panel-s3")
            .build()
            .map_err(|e| err(format!("cannot start the S3 client runtime: {e}")))?;
        Ok(S3Store {
            store,
            bucket: b.bucket.clone(),
            prefix: b.key_prefix(),
            multipart_threshold: c.upload.multipart_threshold_mib * MIB,
            part_size: c.upload.part_size_mib * MIB,
            runtime,
        })
    }

    fn path(&self, key: &str) -> Path {
        Path::from(format!("{}{key}", self.prefix))
    }

    fn error(&self, key: &str, action: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Remote {
            store: self.describe(),
            message: format!("{action} {key}: {e}"),
        }
    }

    fn put_whole(&self, local: &Utf8Path, key: &str, sha256: &str) -> Result<u64, StoreError> {
        let body =
            std::fs::read(local).map_err(|e| self.error(key, "cannot read local file for", e))?;
        let opts = PutOptions {
            attributes: attributes(sha256),
            ..Default::default()
        };
        self.runtime
            .block_on(
                self.store
                    .put_opts(&self.path(key), PutPayload::from(body), opts),
            )
            .map_err(|e| self.error(key, "cannot upload", e))?;
        Ok(1)
    }

    fn put_parts(&self, local: &Utf8Path, key: &str, sha256: &str) -> Result<u64, StoreError> {
        let mut file = std::fs::File::open(local)
            .map_err(|e| self.error(key, "cannot read local file for", e))?;
        let opts = PutMultipartOptions {
            attributes: attributes(sha256),
            ..Default::default()
        };
        self.runtime.block_on(async {
            let mut upload = self
                .store
                .put_multipart_opts(&self.path(key), opts)
                .await
                .map_err(|e| self.error(key, "cannot start multipart upload of", e))?;
            let mut parts = 0;
            let result: Result<(), StoreError> = async {
                loop {
                    // One part in memory at a time: bounded memory whatever the archive size.
                    let mut buf = Vec::with_capacity(self.part_size as usize);
                    (&mut file)
                        .take(self.part_size)
                        .read_to_end(&mut buf)
                        .map_err(|e| self.error(key, "cannot read local file for", e))?;
                    if buf.is_empty() {
                        break;
                    }
                    upload.put_part(PutPayload::from(buf)).await.map_err(|e| {
                        self.error(key, &format!("cannot upload part {} of", parts + 1), e)
                    })?;
                    parts += 1;
                }
                upload
                    .complete()
                    .await
                    .map_err(|e| self.error(key, "cannot complete multipart upload of", e))?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                // Leave no half-uploaded parts to be billed for; the original error matters more.
                let _ = upload.abort().await;
                return Err(e);
            }
            Ok(parts)
        })
    }

    /// Reads the object back and returns its size and SHA-256.
    fn hash_remote(&self, key: &str) -> Result<(u64, String), StoreError> {
        let (mut size, mut hasher) = (0u64, Sha256::new());
        self.each_chunk(key, "cannot read back", |chunk| {
            size += chunk.len() as u64;
            hasher.update(chunk);
            Ok(())
        })?;
        Ok((size, hex::encode(hasher.finalize())))
    }

    /// Streams the object `key` through `f`, a chunk at a time (bounded memory); a failed read
    /// is reported as `action` (`cannot download`, …).
    fn each_chunk(
        &self,
        key: &str,
        action: &str,
        mut f: impl FnMut(&[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            let got = self
                .store
                .get(&self.path(key))
                .await
                .map_err(|e| self.error(key, action, e))?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                f(&chunk.map_err(|e| self.error(key, action, e))?)?;
            }
            Ok(())
        })
    }
}

fn attributes(sha256: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert(
        Attribute::Metadata("sha256".into()),
        sha256.to_owned().into(),
    );
    a
}

impl ArchiveFiles for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn list(&self, instance: Option<&str>) -> Result<Vec<StoredFile>, StoreError> {
        let under = match instance {
            Some(i) => self.path(&format!("{i}/")),
            None => Path::from(self.prefix.as_str()),
        };
        let metas: Vec<_> = self.runtime.block_on(async {
            let under = (!under.as_ref().is_empty()).then_some(&under);
            self.store.list(under).collect::<Vec<_>>().await
        });
        let mut out = Vec::new();
        for meta in metas {
            let meta = meta.map_err(|e| self.error(under.as_ref(), "cannot list", e))?;
            let location = meta.location.as_ref();
            let Some(rel) = location.strip_prefix(self.prefix.as_str()) else {
                continue;
            };
            // Only `<instance>/<file>`; anything deeper or shallower is not ours.
            if let Some((dir, file)) = rel.split_once('/')
                && !file.contains('/')
                && instance.is_none_or(|i| i == dir)
            {
                out.push(StoredFile::classify(dir, file, meta.size));
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn location(&self, file: &StoredFile) -> String {
        format!("{}/{}", self.describe().trim_end_matches('/'), file.key)
    }

    fn remove(&self, file: &StoredFile) -> Result<(), StoreError> {
        self.runtime
            .block_on(self.store.delete(&self.path(&file.key)))
            .map_err(|e| self.error(&file.key, "cannot remove", e))
    }
}

impl Remote for S3Store {
    fn upload(&self, local: &Utf8Path, key: &str, sha256: &str) -> Result<Upload, StoreError> {
        let size = std::fs::metadata(local)
            .map_err(|e| self.error(key, "cannot read local file for", e))?
            .len();
        let parts = if size >= self.multipart_threshold {
            self.put_parts(local, key, sha256)?
        } else {
            self.put_whole(local, key, sha256)?
        };
        let (remote_size, remote_sha) = self.hash_remote(key)?;
        if remote_size != size || remote_sha != sha256 {
            // A corrupt copy must not be counted by retention as a good backup.
            let _ = self.runtime.block_on(self.store.delete(&self.path(key)));
            return Err(self.error(
                key,
                "checksum mismatch after upload of",
                format!("local {size} bytes sha256 {sha256}, remote {remote_size} bytes sha256 {remote_sha}"),
            ));
        }
        Ok(Upload {
            key: key.to_owned(),
            size,
            sha256: remote_sha,
            parts,
        })
    }

    fn download(&self, key: &str, to: &Utf8Path) -> Result<(), StoreError> {
        let dir = to.parent().unwrap_or(Utf8Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}", to.file_name().unwrap_or("download")))
            .suffix(".aps-partial")
            .tempfile_in(dir)
            .map_err(|e| self.error(key, "cannot create a temp file for", e))?;
        self.each_chunk(key, "cannot download", |chunk| {
            tmp.write_all(chunk)
                .map_err(|e| self.error(key, "cannot write download of", e))
        })?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| self.error(key, "cannot write download of", e))?;
        tmp.persist(to)
            .map_err(|e| self.error(key, "cannot write download of", e.error))?;
        Ok(())
    }
}

/// An S3 client for `bucket`, as panel.toml's S3 settings describe it (the off-machine copy's
/// `[remote]` and the repository's `[store.s3]` alike): path-style requests to a self-hosted
/// `endpoint` (plain `http://` only when it says so), the key id and the secret from its file,
/// else the environment's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
pub(crate) fn client(c: &crate::config::S3Bucket, section: &str) -> Result<AmazonS3, String> {
    let (bucket, region, endpoint) = (&c.bucket, &c.region, c.endpoint.as_deref());
    let timeout = c.request_timeout().ok_or_else(|| {
        format!(
            "[{section}] timeout {:?} is not a duration such as \"30s\"",
            c.timeout.as_deref().unwrap_or_default()
        )
    })?;
    // Bounded: `retries` tries more with backoff, and never longer than they can take.
    let retries = c.retries.unwrap_or(crate::config::DEFAULT_S3_RETRIES);
    let tries = u32::try_from(retries).unwrap_or(u32::MAX);
    let retry = object_store::RetryConfig {
        max_retries: retries,
        // Each try may take `timeout`, each pause at most 15 s: the tries are never cut short.
        retry_timeout: timeout
            .saturating_mul(tries.saturating_add(1))
            .saturating_add(std::time::Duration::from_secs(15).saturating_mul(tries)),
        ..Default::default()
    };
    // Client options first: `with_allow_http` below is one of them.
    let mut b = AmazonS3Builder::from_env()
        .with_retry(retry)
        .with_client_options(
            object_store::ClientOptions::new()
                .with_timeout(timeout)
                .with_connect_timeout(timeout.min(std::time::Duration::from_secs(5))),
        )
        .with_bucket_name(bucket)
        .with_region(region);
    if let Some(endpoint) = endpoint {
        // Self-hosted S3 servers rarely have per-bucket DNS names.
        b = b
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    // Keys given (or refused) here, so that the client never falls back on the
    // instance-metadata endpoint unless panel.toml asks for it.
    match c.credentials(section)? {
        crate::config::S3Credentials::Keys {
            access_key_id,
            secret_access_key,
        } => {
            b = b
                .with_access_key_id(access_key_id)
                .with_secret_access_key(secret_access_key);
        }
        crate::config::S3Credentials::InstanceMetadata => {}
    }
    b.build().map_err(|e| e.to_string())
}

/// Whether `e` means that the store did not serve the request: no connection, no answer in
/// time, or a server error (5xx) after every retry — not a refusal (403, 404) it answered.
/// object_store's retry error is not a public type, and its HTTP error is wrapped
/// transparently (that error's kind is not on the source chain): their texts name them.
pub(crate) fn unreachable(e: &object_store::Error) -> bool {
    let text = e.to_string();
    matches!(e, object_store::Error::Generic { .. })
        && (text.contains("HTTP error: ")
            || text.contains("Server returned non-2xx status code: 5"))
}
