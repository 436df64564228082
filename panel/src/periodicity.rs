//! Periodicities: why a backup was taken, as written in its file name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a backup was taken. Time-based ones are scheduled (systemd timer, cron); `shutdown`,
/// `manual` and `final` are event-driven; `all` is one backup that stands for every time-based
/// periodicity at once (e.g. the first backup of a fresh instance). `final` is the backup
/// `instance remove` takes before it removes anything: retention never removes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Periodicity {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Bimonthly,
    Shutdown,
    Manual,
    All,
    Final,
}

impl Periodicity {
    pub const EVERY: [Periodicity; 9] = [
        Periodicity::Hourly,
        Periodicity::Daily,
        Periodicity::Weekly,
        Periodicity::Monthly,
        Periodicity::Bimonthly,
        Periodicity::Shutdown,
        Periodicity::Manual,
        Periodicity::All,
        Periodicity::Final,
    ];

    /// The periodicities retention counts separately (everything but `all`, which is counted
    /// as each of the time-based ones, and `final`, which is always kept).
    pub const COUNTED: [Periodicity; 7] = [
        Periodicity::Hourly,
        Periodicity::Daily,
        Periodicity::Weekly,
        Periodicity::Monthly,
        Periodicity::Bimonthly,
        Periodicity::Shutdown,
        Periodicity::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Periodicity::Hourly => "hourly",
            Periodicity::Daily => "daily",
            Periodicity::Weekly => "weekly",
            Periodicity::Monthly => "monthly",
            Periodicity::Bimonthly => "bimonthly",
            Periodicity::Shutdown => "shutdown",
            Periodicity::Manual => "manual",
            Periodicity::All => "all",
            Periodicity::Final => "final",
        }
    }

    pub fn is_time_based(self) -> bool {
        matches!(
            self,
            Periodicity::Hourly
                | Periodicity::Daily
                | Periodicity::Weekly
                | Periodicity::Monthly
                | Periodicity::Bimonthly
        )
    }

    /// Whether a backup taken with `self` counts towards the keep-N of `bucket`.
    pub fn counts_for(self, bucket: Periodicity) -> bool {
        self == bucket || (self == Periodicity::All && bucket.is_time_based())
    }
}

impl fmt::Display for Periodicity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown periodicity {given:?}; expected one of hourly, daily, weekly, monthly, bimonthly, shutdown, manual, all, final"
)]
pub struct UnknownPeriodicity {
    pub given: String,
}

impl FromStr for Periodicity {
    type Err = UnknownPeriodicity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Periodicity::EVERY
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPeriodicity {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Periodicity::EVERY {
            assert_eq!(p.as_str().parse::<Periodicity>().unwrap(), p);
        }
        assert_eq!(
            "Daily".parse::<Periodicity>().unwrap_err().given,
            "Daily",
            "names are lower-case only, as in file names"
        );
    }

    #[test]
    fn all_counts_for_time_based_only() {
        assert!(Periodicity::All.counts_for(Periodicity::Hourly));
        assert!(Periodicity::All.counts_for(Periodicity::Bimonthly));
        assert!(!Periodicity::All.counts_for(Periodicity::Manual));
        assert!(!Periodicity::All.counts_for(Periodicity::Shutdown));
        assert!(!Periodicity::Daily.counts_for(Periodicity::Weekly));
        for bucket in Periodicity::COUNTED {
            assert!(!Periodicity::Final.counts_for(bucket), "{bucket}");
        }
    }
}
