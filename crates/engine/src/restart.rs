//! Restart policies as Docker applies them: which policies a container may have, whether
//! an exit is followed by a restart, and the back-off between restarts (100 ms,
//! doubling up to a minute, back to 100 ms after a run of at least 10 s).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::hostconfig::RestartPolicy;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the back-off.
const GOOD_RUN: Duration = Duration::from_secs(10);

/// The policy kinds, parsed from `RestartPolicy.Name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    No,
    Always,
    UnlessStopped,
    /// Restart on a non-zero exit, at most this many times (0: no limit).
    OnFailure(i64),
}

impl Policy {
    /// The container's policy; one that [`validate`] would refuse counts as `no`.
    pub fn of(p: &RestartPolicy) -> Policy {
        match p.name.as_str() {
            "always" => Policy::Always,
            "unless-stopped" => Policy::UnlessStopped,
            "on-failure" => Policy::OnFailure(p.maximum_retry_count.max(0)),
            _ => Policy::No,
        }
    }

    /// Docker's rule, once a container exited with `exit_code` after `restart_count`
    /// restarts; `manually_stopped` is a stop or kill by the user.
    pub fn should_restart(
        self,
        exit_code: i32,
        manually_stopped: bool,
        restart_count: i64,
    ) -> bool {
        match self {
            Policy::No => false,
            Policy::Always => true,
            Policy::UnlessStopped => !manually_stopped,
            Policy::OnFailure(max) => exit_code != 0 && (max == 0 || restart_count < max),
        }
    }
}

/// Check a create request's policy as Docker does (its messages; all are HTTP 400).
pub fn validate(p: &RestartPolicy, auto_remove: bool) -> Result<()> {
    let invalid = |m: String| Err(Error::InvalidInput(format!("invalid restart policy: {m}")));
    match p.name.as_str() {
        "" => {}
        "no" | "always" | "unless-stopped" if p.maximum_retry_count != 0 => {
            let mut m = "maximum retry count can only be used with 'on-failure'".to_string();
            if p.maximum_retry_count < 0 {
                m.push_str(" and cannot be negative");
            }
            return invalid(m);
        }
        "no" | "always" | "unless-stopped" => {}
        "on-failure" if p.maximum_retry_count < 0 => {
            return invalid("maximum retry count cannot be negative".into());
        }
        "on-failure" => {}
        other => {
            return invalid(format!(
                "unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            ))
        }
    }
    if auto_remove && Policy::of(p) != Policy::No {
        return Err(Error::InvalidInput(
            "can't create 'AutoRemove' container with restart policy".into(),
        ));
    }
    Ok(())
}

/// The delay before each restart of one supervised run of a container.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    delay: Option<Duration>,
}

impl Backoff {
    /// The delay before the restart that follows a run of `ran_for`.
    pub fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= GOOD_RUN {
            self.delay = None;
        }
        let delay = match self.delay {
            None => FIRST_DELAY,
            Some(d) => (d * 2).min(MAX_DELAY),
        };
        self.delay = Some(delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, max: i64) -> RestartPolicy {
        RestartPolicy {
            name: name.into(),
            maximum_retry_count: max,
        }
    }

    #[test]
    fn validation_matches_docker() {
        for ok in [
            policy("", 0),
            policy("no", 0),
            policy("always", 0),
            policy("unless-stopped", 0),
            policy("on-failure", 0),
            policy("on-failure", 5),
        ] {
            validate(&ok, false).unwrap();
        }
        let err = |p: RestartPolicy, rm: bool| validate(&p, rm).unwrap_err().to_string();
        assert_eq!(
            err(policy("sometimes", 0), false),
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        );
        assert_eq!(
            err(policy("always", 3), false),
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        );
        assert_eq!(
            err(policy("no", -1), false),
            "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative"
        );
        assert_eq!(
            err(policy("on-failure", -2), false),
            "invalid restart policy: maximum retry count cannot be negative"
        );
        assert_eq!(
            err(policy("always", 0), true),
            "can't create 'AutoRemove' container with restart policy"
        );
        validate(&policy("no", 0), true).unwrap();
    }

    #[test]
    fn restart_decisions() {
        let of = |n: &str, m: i64| Policy::of(&policy(n, m));
        assert!(!of("no", 0).should_restart(1, false, 0));
        assert!(!of("", 0).should_restart(1, false, 0));
        assert!(of("always", 0).should_restart(0, true, 100));
        assert!(of("unless-stopped", 0).should_restart(0, false, 7));
        assert!(!of("unless-stopped", 0).should_restart(0, true, 0));
        assert!(!of("on-failure", 0).should_restart(0, false, 0));
        assert!(of("on-failure", 0).should_restart(3, false, 1000));
        assert!(of("on-failure", 2).should_restart(3, false, 1));
        assert!(!of("on-failure", 2).should_restart(3, false, 2));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::default();
        let short = Duration::from_secs(1);
        let ms = |n| Duration::from_millis(n);
        assert_eq!(b.next(short), ms(100));
        assert_eq!(b.next(short), ms(200));
        assert_eq!(b.next(short), ms(400));
        assert_eq!(b.next(Duration::from_secs(10)), ms(100));
        for _ in 0..20 {
            b.next(short);
        }
        assert_eq!(b.next(short), MAX_DELAY);
        assert_eq!(b.next(Duration::from_secs(30)), ms(100));
    }
}
