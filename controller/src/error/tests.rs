use super::*;

fn io_failure(code: i32) -> OperationError {
    OperationError::Io {
        step: Step::RestoreResources,
        what: "cannot write",
        path: "/srv/www/a".into(),
        source: std::io::Error::from_raw_os_error(code),
    }
}

#[test]
fn sizes_are_binary_units_with_one_decimal() {
    for (n, text) in [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536 * 1024, "1.5 MiB"),
        (5 * 1024 * 1024 * 1024 + 1, "5.0 GiB"),
        (3 << 40, "3.0 TiB"),
        (u64::MAX, "16777216.0 TiB"),
    ] {
        assert_eq!(human_bytes(n), text, "{n}");
    }
}

#[test]
fn full_disk_codes_are_no_space_whatever_the_step() {
    for code in [libc::ENOSPC, libc::EDQUOT, libc::EFBIG] {
        assert_eq!(io_failure(code).kind(), ErrorKind::NoSpace, "errno {code}");
    }
    assert_eq!(io_failure(libc::EACCES).kind(), ErrorKind::Internal);
    // Deeper in the chain: an archive write error inside the operation error.
    let archive = OperationError::Archive {
        step: Step::BackupResources,
        source: ArchiveError::WriteArchive {
            part: "web-0".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        },
    };
    assert_eq!(archive.kind(), ErrorKind::NoSpace);
    assert_eq!(archive.step(), Step::BackupResources);
}

#[test]
fn a_database_server_with_a_full_disk_is_no_space() {
    use crate::database::{DatabaseError, DbKind, Target};
    let load = |stderr: &str| OperationError::Database {
        step: Step::RestoreResources,
        db_id: "main".into(),
        source: DatabaseError::Load {
            target: Box::new(Target {
                kind: DbKind::Mysql,
                database: "shop".into(),
                server: "127.0.0.1:3306".into(),
            }),
            file: "/w/load-main.sql".into(),
            tool: "mysql".into(),
            status: "exit code 1".into(),
            stderr: stderr.into(),
        },
    };
    let full = load("ERROR 1114 (HY000) at line 40: The table 'posts' is full");
    assert_eq!(full.kind(), ErrorKind::NoSpace);
    let pg = load("ERROR:  could not extend file \"base/16384/16385\": No space left on device");
    assert_eq!(pg.kind(), ErrorKind::NoSpace);
    assert_eq!(
        load("ERROR 1064 (42000): syntax error").kind(),
        ErrorKind::ResourceFailed
    );
    // No local folder is blamed for the server's disk.
    let here = camino::Utf8Path::new("/");
    assert!(matches!(
        full.with_space_facts(&[here], None),
        OperationError::Database { .. }
    ));
}

#[test]
fn a_cut_stream_is_interrupted_and_names_its_signal() {
    let cut = OperationError::Archive {
        step: Step::BackupResources,
        source: ArchiveError::WriteArchive {
            part: "web-0".into(),
            source: crate::cancel::Cancelled::io_error(libc::SIGTERM),
        },
    };
    assert_eq!(cut.kind(), ErrorKind::Interrupted);
    assert_eq!(cut.signal(), Some(libc::SIGTERM));
    // A damaged-looking failure after a signal asked to stop is reported as the stop.
    let other = io_failure(libc::EIO).interrupted_by(Some(libc::SIGINT));
    assert_eq!(other.kind(), ErrorKind::Interrupted);
    assert_eq!(other.step(), Step::RestoreResources);
    assert_eq!(other.to_json()["signal"], "SIGINT");
}
