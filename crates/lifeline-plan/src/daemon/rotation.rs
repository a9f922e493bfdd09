//! Key rotation on `[keys] rotate_every`: when the primary repository's current key epoch is older,
//! the daemon runs `lifeline key rotate --if-older-than PERIOD` as a child process, like a job, so
//! the rotation is audited like a manual one, needs the plan's key to be an administrator's, and
//! counts a rotation someone else did meanwhile. The epoch's age comes from the surveys, which read
//! the epochs from storage; a rotation missed while the daemon was down runs at its first survey.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A failed rotation is tried again after the daemon's retry delay, doubling, at most this late.
const RETRY_AT_MOST: Duration = Duration::from_secs(3600);

pub(super) struct Rotation {
    pub every: Duration,
    /// When the current epoch reaches `every`: from the newest survey, or estimated after a
    /// rotation until the next survey says. Unknown before the first survey.
    due: Option<DateTime<Utc>>,
    /// After a failure: not before this.
    not_before: Option<DateTime<Utc>>,
    pub running: bool,
    failures: u32,
}

impl Rotation {
    pub fn new(every: Duration) -> Self {
        Rotation {
            every,
            due: None,
            not_before: None,
            running: false,
            failures: 0,
        }
    }

    /// The current epoch was created at `created` (unknown: due now, and the child decides).
    pub fn surveyed(&mut self, created: Option<DateTime<Utc>>) {
        let now = Utc::now();
        self.due = Some(created.map_or(now, |c| c + chrono_duration(self.every)));
    }

    /// When the next rotation should start; none while one runs or before the first survey.
    pub fn when(&self) -> Option<DateTime<Utc>> {
        if self.running {
            return None;
        }
        let due = self.due?;
        Some(self.not_before.map_or(due, |n| due.max(n)))
    }

    pub fn started(&mut self) {
        self.running = true;
    }

    /// The child ended well (rotated, or found a young epoch): the next survey dates the epoch.
    pub fn succeeded(&mut self) {
        self.running = false;
        self.failures = 0;
        self.not_before = None;
        self.due = Some(Utc::now() + chrono_duration(self.every));
    }

    /// The child failed: try again after `retry_delay`, doubled per failure, at most an hour.
    /// Returns the wait.
    pub fn failed(&mut self, retry_delay: Duration) -> Duration {
        self.running = false;
        self.failures += 1;
        let delay = retry_delay
            .saturating_mul(2u32.saturating_pow(self.failures - 1))
            .min(RETRY_AT_MOST);
        self.not_before = Some(Utc::now() + chrono_duration(delay));
        delay
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_is_due_when_the_epoch_reaches_the_period_and_failures_back_off() {
        let mut r = Rotation::new(Duration::from_secs(90 * 86400));
        assert_eq!(r.when(), None, "unknown before the first survey");
        let created = Utc::now() - chrono::Duration::days(10);
        r.surveyed(Some(created));
        assert_eq!(r.when(), Some(created + chrono::Duration::days(90)));
        r.surveyed(Some(Utc::now() - chrono::Duration::days(100)));
        assert!(r.when().is_some_and(|w| w <= Utc::now()), "overdue: now");
        r.started();
        assert_eq!(r.when(), None, "not twice at once");
        let wait = r.failed(Duration::from_secs(60));
        assert_eq!(wait, Duration::from_secs(60));
        assert!(r.when().is_some_and(|w| w > Utc::now()));
        r.started();
        assert_eq!(r.failed(Duration::from_secs(60)), Duration::from_secs(120));
        for _ in 0..10 {
            r.started();
            r.failed(Duration::from_secs(60));
        }
        r.started();
        assert_eq!(r.failed(Duration::from_secs(60)), RETRY_AT_MOST);
        r.started();
        r.succeeded();
        let next = r.when().expect("due again one period on");
        assert!(next > Utc::now() + chrono::Duration::days(89));
    }
}
