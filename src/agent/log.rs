//! The agent's log: one line per action on stderr.

use std::io::Write;
use std::time::SystemTime;

/// One line per action on stderr. Under systemd (`JOURNAL_STREAM` set) the
/// journal stamps each line, so none is added; elsewhere each line starts
/// with the UTC time.
pub struct Log {
    timestamps: bool,
}

impl Log {
    pub fn new(under_journald: bool) -> Log {
        Log {
            timestamps: !under_journald,
        }
    }

    pub fn line(&self, message: &str) {
        let stamp = if self.timestamps {
            format!("{} ", utc_stamp(SystemTime::now()))
        } else {
            String::new()
        };
        // A closed stderr must not stop the agent: the error is dropped.
        let _ = writeln!(std::io::stderr(), "{stamp}wgp2p agent: {message}");
    }
}

/// `2026-12-01T05:40:07Z`.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days.cast_signed() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_stamps() {
        let at = |secs| utc_stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_103_607), "2026-12-01T05:40:07Z");
    }
}
