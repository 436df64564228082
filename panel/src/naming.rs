//! Backup file names: `<instance>_<periodicity>_YYYY-MM-DD-HH-mm-SS[.N]<ext>`, time in UTC.
//! `.N` (N ≥ 2) tells apart backups of one instance and periodicity made within one second;
//! the store hands out the next free N when it reserves a name (the local store's `reserve`).
//!
//! The name is the only record of a backup (the store is the source of truth), so it carries
//! everything retention needs and parsing it must be exact.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::periodicity::Periodicity;

const TIME_FORMAT: &str = "%Y-%m-%d-%H-%M-%S";
const TIME_LEN: usize = "YYYY-MM-DD-HH-mm-SS".len();
/// Marker of the controller's temp files, `.<name>.aps-partial-<operation id>`.
pub use aps_controller::destination::PARTIAL_MARKER;

/// Compression of the archive, chosen in panel.toml and done by the controller's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
    None,
}

/// What the file extension says about the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ArchiveFormat {
    pub compression: Compression,
    /// Encrypted to age recipients (`.age` suffix).
    pub encrypted: bool,
}

impl ArchiveFormat {
    pub fn extension(self) -> &'static str {
        match (self.compression, self.encrypted) {
            (Compression::Zstd, false) => ".aps.tar.zst",
            (Compression::Gzip, false) => ".aps.tar.gz",
            (Compression::None, false) => ".aps.tar",
            (Compression::Zstd, true) => ".aps.tar.zst.age",
            (Compression::Gzip, true) => ".aps.tar.gz.age",
            (Compression::None, true) => ".aps.tar.age",
        }
    }

    const ALL: [ArchiveFormat; 6] = [
        // Longest first so `.aps.tar` does not shadow `.aps.tar.zst`.
        ArchiveFormat {
            compression: Compression::Zstd,
            encrypted: true,
        },
        ArchiveFormat {
            compression: Compression::Gzip,
            encrypted: true,
        },
        ArchiveFormat {
            compression: Compression::None,
            encrypted: true,
        },
        ArchiveFormat {
            compression: Compression::Zstd,
            encrypted: false,
        },
        ArchiveFormat {
            compression: Compression::Gzip,
            encrypted: false,
        },
        ArchiveFormat {
            compression: Compression::None,
            encrypted: false,
        },
    ];

    /// The format a file name's extension says, if it has one of ours.
    pub fn of_file_name(name: &str) -> Option<ArchiveFormat> {
        Self::strip(name).map(|(_, f)| f)
    }

    fn strip(name: &str) -> Option<(&str, ArchiveFormat)> {
        Self::ALL
            .into_iter()
            .find_map(|f| name.strip_suffix(f.extension()).map(|stem| (stem, f)))
    }
}

/// One backup, as named in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackupName {
    pub instance: String,
    pub periodicity: Periodicity,
    /// Whole seconds, UTC.
    pub time: Timestamp,
    /// 1 for the first backup of its second (no suffix), then 2, 3 … (`.2`, `.3` …).
    #[serde(default = "first_seq")]
    pub seq: u32,
    pub format: ArchiveFormat,
}

fn first_seq() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "{name:?} does not end in a backup extension (.aps.tar, .aps.tar.zst, .aps.tar.gz, optionally + .age)"
    )]
    Extension { name: String },
    #[error("{name:?} does not end in _YYYY-MM-DD-HH-mm-SS before its extension")]
    Time { name: String },
    #[error(
        "{name:?} has no known periodicity before its time (hourly, daily, weekly, monthly, bimonthly, shutdown, manual, all, final)"
    )]
    Periodicity { name: String },
    #[error("{name:?} does not start with a valid instance name ([a-z0-9][a-z0-9._-]{{0,62}})")]
    Instance { name: String },
}

/// `[a-z0-9][a-z0-9._-]{0,62}`: the controller's registry's rule, the one rule.
pub use aps_controller::registry::is_valid_instance_name;

impl BackupName {
    /// A name for a backup taken at `time` (sub-second part dropped: names have seconds).
    pub fn new(
        instance: &str,
        periodicity: Periodicity,
        time: Timestamp,
        format: ArchiveFormat,
    ) -> Self {
        let time =
            Timestamp::from_second(time.as_second()).expect("whole seconds of a valid timestamp");
        BackupName {
            instance: instance.to_owned(),
            periodicity,
            time,
            seq: 1,
            format,
        }
    }

    /// The same backup name with sequence number `seq` (1: no suffix).
    pub fn with_seq(&self, seq: u32) -> Self {
        BackupName {
            seq: seq.max(1),
            ..self.clone()
        }
    }

    pub fn file_name(&self) -> String {
        format!(
            "{}_{}_{}{}{}",
            self.instance,
            self.periodicity,
            self.time.to_zoned(TimeZone::UTC).strftime(TIME_FORMAT),
            if self.seq > 1 {
                format!(".{}", self.seq)
            } else {
                String::new()
            },
            self.format.extension()
        )
    }

    /// Parses from the right: extension, fixed-width time, then a known periodicity, so that
    /// instance names may themselves contain `_`.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let (stem, format) = ArchiveFormat::strip(name).ok_or_else(|| NameError::Extension {
            name: name.to_owned(),
        })?;
        let time_err = || NameError::Time {
            name: name.to_owned(),
        };
        // `.N` after the time: digits only, N ≥ 2 (the first backup of a second has none).
        let (stem, seq) = match stem.rsplit_once('.') {
            Some((rest, n))
                if !n.is_empty()
                    && n.len() <= 9
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && !n.starts_with('0') =>
            {
                match n.parse::<u32>() {
                    Ok(seq) if seq >= 2 => (rest, seq),
                    _ => return Err(time_err()),
                }
            }
            _ => (stem, 1),
        };
        let split = stem.len().checked_sub(TIME_LEN + 1).ok_or_else(time_err)?;
        let (rest, time) = (&stem[..split], &stem[split..]);
        let time = time.strip_prefix('_').ok_or_else(time_err)?;
        let time = DateTime::strptime(TIME_FORMAT, time)
            .ok()
            .and_then(|dt| dt.to_zoned(TimeZone::UTC).ok())
            .ok_or_else(time_err)?
            .timestamp();
        let (instance, periodicity) = rest
            .rsplit_once('_')
            .and_then(|(i, p)| Some((i, p.parse::<Periodicity>().ok()?)))
            .ok_or_else(|| NameError::Periodicity {
                name: name.to_owned(),
            })?;
        if !is_valid_instance_name(instance) {
            return Err(NameError::Instance {
                name: name.to_owned(),
            });
        }
        Ok(BackupName {
            instance: instance.to_owned(),
            periodicity,
            time,
            seq,
            format,
        })
    }
}

impl fmt::Display for BackupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

impl FromStr for BackupName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackupName::parse(s)
    }
}

/// Whether `name` is one of the controller's temp files (`.<name>.aps-partial-*`): a backup
/// being written now, or left behind by a crash.
pub fn is_partial(name: &str) -> bool {
    name.starts_with('.') && name.contains(PARTIAL_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn formats_in_utc_with_extension() {
        let n = BackupName::new(
            "blog",
            Periodicity::Daily,
            ts("2026-03-04T05:06:07.9+02:00"),
            ArchiveFormat {
                compression: Compression::Zstd,
                encrypted: true,
            },
        );
        assert_eq!(
            n.file_name(),
            "blog_daily_2026-03-04-03-06-07.aps.tar.zst.age"
        );
        assert_eq!(BackupName::parse(&n.file_name()).unwrap(), n);
    }

    #[test]
    fn round_trips_every_format_and_periodicity() {
        for format in ArchiveFormat::ALL {
            for p in Periodicity::EVERY {
                let n = BackupName::new("my_shop.v2-x", p, ts("2026-12-31T23:59:59Z"), format);
                assert_eq!(BackupName::parse(&n.file_name()).unwrap(), n, "{n}");
            }
        }
    }

    #[test]
    fn sequence_suffix_tells_apart_backups_of_one_second() {
        let first = BackupName::new(
            "blog",
            Periodicity::Manual,
            ts("2026-01-02T03:04:05Z"),
            ArchiveFormat::default(),
        );
        let second = first.with_seq(2);
        assert_eq!(
            second.file_name(),
            "blog_manual_2026-01-02-03-04-05.2.aps.tar.zst"
        );
        assert_eq!(BackupName::parse(&second.file_name()).unwrap(), second);
        assert_eq!(BackupName::parse(&first.file_name()).unwrap().seq, 1);
        for bad in [
            "blog_manual_2026-01-02-03-04-05.1.aps.tar.zst",
            "blog_manual_2026-01-02-03-04-05.02.aps.tar.zst",
            "blog_manual_2026-01-02-03-04-05.x.aps.tar.zst",
        ] {
            assert!(BackupName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instance_names_may_contain_underscore_and_periodicity_words() {
        let n = BackupName::parse("a_daily_b_weekly_2026-01-02-03-04-05.aps.tar").unwrap();
        assert_eq!(n.instance, "a_daily_b");
        assert_eq!(n.periodicity, Periodicity::Weekly);
    }

    #[test]
    fn rejects_what_is_not_a_backup_name() {
        let cases = [
            ("blog_daily_2026-01-02-03-04-05.tar.zst", "Extension"),
            ("blog_daily_2026-01-02-03-04.aps.tar", "Time"),
            ("blog_daily_2026-13-02-03-04-05.aps.tar", "Time"),
            ("blog_daily-2026-01-02-03-04-05.aps.tar", "Time"),
            ("blog_yearly_2026-01-02-03-04-05.aps.tar", "Periodicity"),
            ("daily_2026-01-02-03-04-05.aps.tar", "Periodicity"),
            ("Blog_daily_2026-01-02-03-04-05.aps.tar", "Instance"),
            ("_daily_2026-01-02-03-04-05.aps.tar", "Instance"),
        ];
        for (name, kind) in cases {
            let err = BackupName::parse(name).unwrap_err();
            assert!(format!("{err:?}").starts_with(kind), "{name}: {err:?}");
        }
    }

    #[test]
    fn partial_files() {
        assert!(is_partial(
            ".blog_daily_2026-01-02-03-04-05.aps.tar.zst.aps-partial-x8Yz"
        ));
        assert!(!is_partial("blog_daily_2026-01-02-03-04-05.aps.tar.zst"));
        assert!(!is_partial(".hidden"));
    }
}
