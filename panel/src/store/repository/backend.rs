//! Where a repository's files are stored: a local folder through the engine's own local
//! backend, or an S3-compatible bucket through [`S3Backend`].
//!
//! The bucket is reached with `object_store`'s S3 client — the client the off-machine copy
//! (`[remote]`) already uses, with the same settings — rather than with the engine's opendal
//! backend, which would add a second HTTP/TLS stack (aws-lc, built from C) and some 25 other
//! storage services (FTP, SFTP, …) to the build. The objects follow restic's S3 layout
//! (`<prefix>config`, `<prefix>keys/<id>`, `<prefix>data/<2 hex>/<id>`, …), so
//! `restic -r s3:<endpoint>/<bucket>/<prefix>` opens the same repository.
//!
//! Every listing or request error is returned to the engine (opendal's backend only logs a
//! failed listing entry), so a check or prune never works from a partial listing.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use rustic_backend::BackendOptions;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RepositoryBackends, RusticError, RusticResult,
    WriteBackend,
};

use crate::config::{RepositoryLocation, S3Bucket};
use crate::store::repository::{RepositoryError, engine_err};

/// The code of an engine error whose request the store did not serve (no connection, no
/// answer in time, 5xx after every retry): it becomes [`RepositoryError::Unreachable`].
pub(super) const UNREACHABLE_CODE: &str = "APS-S3-UNREACHABLE";

/// Whether the engine's error `e` (or one it wraps) is [`UNREACHABLE_CODE`]'s.
pub(super) fn is_unreachable(e: &RusticError) -> bool {
    e.is_code(UNREACHABLE_CODE) || e.display_log().contains(UNREACHABLE_CODE)
}

/// The engine's backends for `location`.
pub(super) fn backends(
    location: &RepositoryLocation,
) -> Result<RepositoryBackends, RepositoryError> {
    match location {
        RepositoryLocation::Folder(path) => BackendOptions::default()
            .repository(path.as_str())
            .to_backends()
            .map_err(engine_err(location.describe())),
        RepositoryLocation::S3(s3) => {
            let be = S3Backend::new(s3).map_err(|message| RepositoryError::Engine {
                repository: location.describe(),
                message,
            })?;
            Ok(RepositoryBackends::new(Arc::new(be), None))
        }
    }
}

/// One runtime for every S3 repository handle of the process: the engine opens several
/// handles per command, and each would otherwise start its own threads.
pub(super) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("aps-repository-s3")
            .build()
            .expect("a tokio runtime starts")
    })
}

#[derive(Debug)]
pub struct S3Backend {
    store: AmazonS3,
    bucket: String,
    /// `""` or `a/b/`: where the repository's objects start in the bucket.
    prefix: String,
    location: String,
}

impl S3Backend {
    /// Credentials as for `[remote]`: `access-key-id` / `secret-access-key-file`, else the
    /// environment's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub fn new(c: &S3Bucket) -> Result<Self, String> {
        let store = crate::store::s3::client(c, "store.s3")
            .map_err(|e| format!("invalid [store.s3] settings: {e}"))?;
        Ok(S3Backend {
            store,
            bucket: c.bucket.clone(),
            prefix: c.key_prefix(),
            location: c.describe(),
        })
    }

    fn object(&self, tpe: FileType, id: &Id) -> Path {
        let hex = id.to_hex();
        Path::from(match tpe {
            FileType::Config => format!("{}config", self.prefix),
            FileType::Pack => format!("{}data/{}/{}", self.prefix, &hex[..2], &*hex),
            _ => format!("{}{}/{}", self.prefix, tpe.dirname(), &*hex),
        })
    }

    fn fail(&self, what: &'static str, path: &Path, e: object_store::Error) -> Box<RusticError> {
        let unreachable = crate::store::s3::unreachable(&e);
        let err = RusticError::with_source(ErrorKind::Backend, what, e)
            .attach_context("object", format!("s3://{}/{path}", self.bucket));
        if unreachable {
            err.attach_error_code(UNREACHABLE_CODE)
        } else {
            err
        }
    }
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let path = self.object(tpe, &Id::default());
            return match runtime().block_on(self.store.head(&path)) {
                Ok(meta) => Ok(vec![(Id::default(), size_u32(meta.size))]),
                Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(self.fail("cannot look for the repository config", &path, e)),
            };
        }
        let dir = Path::from(format!("{}{}", self.prefix, tpe.dirname()));
        let metas: Vec<_> = runtime().block_on(self.store.list(Some(&dir)).collect::<Vec<_>>());
        let mut out = Vec::with_capacity(metas.len());
        for meta in metas {
            let meta = meta.map_err(|e| self.fail("cannot list the repository", &dir, e))?;
            // Anything that is not named by an id (a folder marker, a stray file) is not ours.
            if let Some(id) = meta
                .location
                .filename()
                .and_then(|name| name.parse::<Id>().ok())
            {
                out.push((id, size_u32(meta.size)));
            }
        }
        Ok(out)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = self.object(tpe, id);
        runtime()
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .map_err(|e| self.fail("cannot read a repository object", &path, e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = self.object(tpe, id);
        let range = u64::from(offset)..u64::from(offset) + u64::from(length);
        runtime()
            .block_on(self.store.get_range(&path, range))
            .map_err(|e| self.fail("cannot read part of a repository object", &path, e))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.object(tpe, id).to_string()
    }
}

impl WriteBackend for S3Backend {
    fn create(&self) -> RusticResult<()> {
        // Object stores have no folders to make.
        Ok(())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let path = self.object(tpe, id);
        // One PUT: S3 shows an object whole or not at all, so an interrupted write never
        // leaves a short pack behind.
        let payload: PutPayload = content.into_vec().into_iter().collect();
        runtime()
            .block_on(self.store.put(&path, payload))
            .map(drop)
            .map_err(|e| self.fail("cannot write a repository object", &path, e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = self.object(tpe, id);
        runtime()
            .block_on(self.store.delete(&path))
            .map_err(|e| self.fail("cannot remove a repository object", &path, e))
    }
}

fn size_u32(size: u64) -> u32 {
    // Repository files are far below 4 GiB (packs are tens of MiB); anything bigger is not a
    // file the engine wrote, and the check reports its size as wrong.
    u32::try_from(size).unwrap_or(u32::MAX)
}
