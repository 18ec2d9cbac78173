//! The lease judgement on the local monotonic clock, by example.

use k8s_openapi::jiff::SignedDuration;

use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn config() -> LeaderConfig {
    LeaderConfig::new("ops", "lease", "me", Duration::from_secs(15))
}

/// A record held by `holder`, renewed at `renewed` on the holder's clock.
fn record(holder: Option<&str>, renewed: Timestamp, seconds: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: holder.map(String::from),
        lease_duration_seconds: Some(seconds),
        renew_time: Some(MicroTime(renewed)),
        ..LeaseSpec::default()
    }
}

#[test]
fn the_timings_follow_the_lease_duration() {
    let c = config();
    assert_eq!(c.renew_deadline, Duration::from_millis(11_250));
    assert_eq!(c.poll_every, Duration::from_millis(3_750));
    // Room for a slow renewal and a retry before the deadline.
    assert!(c.renew_deadline - c.poll_every > c.call_timeout);
    assert!(c.retry_every < c.poll_every);
    assert!(c.call_timeout <= MAX_CALL_TIMEOUT);
    assert!(c.renew_deadline < c.lease_duration);
}

#[test]
fn a_holder_whose_clock_is_an_hour_behind_keeps_its_lease_while_it_renews() {
    let c = config();
    let start = Instant::now();
    let behind = Timestamp::now() - SignedDuration::from_hours(1);
    let mut seen = Observed::see(None, record(Some("other"), behind, 15), start);
    // Every renewal changes the record, so the lease runs on.
    for step in 1..10u32 {
        let now = start + 10 * SECOND * step;
        let renewed = behind + SignedDuration::from_secs(10 * i64::from(step));
        seen = Observed::see(Some(seen), record(Some("other"), renewed, 15), now);
        assert_eq!(judge(&seen, &c, now), Verdict::Wait, "step {step}");
        assert_eq!(judge(&seen, &c, now + 14 * SECOND), Verdict::Wait);
    }
}

#[test]
fn a_holder_that_stops_renewing_is_replaced_after_its_duration_and_never_earlier() {
    let c = config();
    let start = Instant::now();
    // Its clock an hour ahead: the renewTime is of no use to us.
    let ahead = Timestamp::now() + SignedDuration::from_hours(1);
    let spec = record(Some("other"), ahead, 20);
    let mut seen = Observed::see(None, spec.clone(), start);
    for s in 0..20 {
        let now = start + s * SECOND;
        seen = Observed::see(Some(seen), spec.clone(), now);
        assert_eq!(judge(&seen, &c, now), Verdict::Wait, "at {s} s");
    }
    let now = start + 20 * SECOND;
    seen = Observed::see(Some(seen), spec, now);
    assert_eq!(
        judge(&seen, &c, now),
        Verdict::Take,
        "the holder's own 20 s counts"
    );
}

#[test]
fn without_a_duration_in_the_record_ours_counts() {
    let c = config();
    let start = Instant::now();
    let mut spec = record(Some("other"), Timestamp::now(), 0);
    spec.lease_duration_seconds = None;
    let seen = Observed::see(None, spec, start);
    assert_eq!(judge(&seen, &c, start + 14 * SECOND), Verdict::Wait);
    assert_eq!(judge(&seen, &c, start + 15 * SECOND), Verdict::Take);
}

#[test]
fn free_released_and_own_leases() {
    let c = config();
    let now = Instant::now();
    let free = Observed::see(None, LeaseSpec::default(), now);
    assert_eq!(judge(&free, &c, now), Verdict::Take);
    let released = Observed::see(None, record(Some(""), Timestamp::now(), 15), now);
    assert_eq!(judge(&released, &c, now), Verdict::Take);
    let ours = Observed::see(None, record(Some("me"), Timestamp::now(), 15), now);
    assert_eq!(judge(&ours, &c, now), Verdict::Renew);
}

#[test]
fn the_record_we_wrote_names_us_and_counts_the_transition() {
    let c = config();
    let api_less = |current: Option<&LeaseSpec>| our_spec(&c, current);
    let other = record(Some("other"), Timestamp::now(), 30);
    let mut with_transitions = other.clone();
    with_transitions.lease_transitions = Some(4);
    let taken = api_less(Some(&with_transitions));
    assert_eq!(taken.holder_identity.as_deref(), Some("me"));
    assert_eq!(taken.lease_transitions, Some(5));
    assert_eq!(taken.lease_duration_seconds, Some(15));
    assert!(taken.acquire_time.is_some());
    let renewed = api_less(Some(&taken));
    assert_eq!(renewed.lease_transitions, Some(5));
    assert_eq!(renewed.acquire_time, taken.acquire_time);
    assert_eq!(api_less(None).lease_transitions, Some(0));
}
