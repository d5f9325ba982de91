use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::infer::InputError;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Consecutive failures only: the error rate needs more calls than the
/// tests make.
fn policy() -> CircuitPolicy {
    CircuitPolicy {
        consecutive_failures: nz(3),
        error_rate: 0.5,
        window: Duration::from_secs(60),
        window_calls: nz(100),
        min_calls: nz(100),
        open_for: Duration::from_secs(30),
        half_open_probes: nz(1),
    }
}

fn breaker(policy: CircuitPolicy) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    (
        CircuitBreaker::with_clock(policy, Arc::new(clock.clone())),
        clock,
    )
}

fn succeed(b: &CircuitBreaker) {
    b.try_acquire().expect("closed").success();
}

fn fail(b: &CircuitBreaker) {
    b.try_acquire()
        .expect("closed")
        .failure(Failure::from(&EngineError::Execution("boom".into())));
}

/// Opens `b` (three consecutive failures with [`policy`]).
fn trip(b: &CircuitBreaker) {
    for _ in 0..3 {
        fail(b);
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn opens_after_consecutive_engine_failures() {
    let (b, _clock) = breaker(policy());
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Closed);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.state().as_str(), "open");
    let snapshot = b.snapshot();
    assert_eq!(snapshot.opens, 1);
    assert!(snapshot.opened_at.is_some());
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let (b, _clock) = breaker(policy());
    fail(&b);
    fail(&b);
    succeed(&b);
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 2);
}

#[test]
fn caller_and_configuration_errors_do_not_count() {
    let (b, _clock) = breaker(policy());
    let not_the_engines_fault = [
        EngineError::InvalidInput(InputError::Missing { name: "x".into() }),
        EngineError::Load("bad file".into()),
        EngineError::ManifestMismatch("shape".into()),
        EngineError::Unsupported { kind: "triton" },
        EngineError::Internal("panicked".into()),
    ];
    for _ in 0..3 {
        for error in &not_the_engines_fault {
            b.try_acquire().unwrap().failure(Failure::from(error));
        }
    }
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 0);
    assert_eq!(b.snapshot().window_calls, 0);
}

#[test]
fn timeouts_and_every_engine_fault_count() {
    let (b, _clock) = breaker(policy());
    b.try_acquire().unwrap().failure(Failure::Timeout);
    b.try_acquire()
        .unwrap()
        .failure(Failure::from(&EngineError::Overloaded {
            running: 1,
            queued: 0,
        }));
    b.try_acquire()
        .unwrap()
        .failure(Failure::from(&EngineError::Unavailable("refused".into())));
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn opens_on_error_rate_once_the_window_has_min_calls() {
    let (b, _clock) = breaker(CircuitPolicy {
        consecutive_failures: nz(100),
        error_rate: 0.5,
        window_calls: nz(10),
        min_calls: nz(6),
        ..policy()
    });
    // Alternating: never two failures in a row, half of them failures.
    for _ in 0..2 {
        fail(&b);
        succeed(&b);
    }
    fail(&b);
    // Five calls, three failed: above the rate but below min_calls.
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot().window_error_rate, 0.6);
    succeed(&b);
    // Six calls, three failed: the rate counts now and is reached, but
    // only a failure is checked against it.
    assert_eq!(b.state(), CircuitState::Closed);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn window_keeps_only_the_last_window_calls() {
    let (b, _clock) = breaker(CircuitPolicy {
        consecutive_failures: nz(100),
        error_rate: 0.5,
        window_calls: nz(4),
        min_calls: nz(4),
        ..policy()
    });
    fail(&b);
    fail(&b);
    // Now four successes push both failures out of the window.
    for _ in 0..4 {
        succeed(&b);
    }
    assert_eq!(b.snapshot().window_failures, 0);
    fail(&b);
    assert_eq!(b.state(), CircuitState::Closed, "1 of 4 failed");
    fail(&b);
    assert_eq!(b.state(), CircuitState::Open, "2 of 4 failed");
}

#[test]
fn window_slides_in_time_and_forgets_old_failures() {
    let (b, clock) = breaker(CircuitPolicy {
        consecutive_failures: nz(100),
        error_rate: 0.5,
        window: Duration::from_secs(60),
        window_calls: nz(10),
        min_calls: nz(4),
        ..policy()
    });
    fail(&b);
    fail(&b);
    fail(&b);
    clock.advance(Duration::from_secs(61));
    assert_eq!(b.snapshot().window_calls, 0, "a minute later");
    succeed(&b);
    succeed(&b);
    succeed(&b);
    fail(&b);
    // Counting the old failures this would be 4 of 7; it is 1 of 4.
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot().window_error_rate, 0.25);
}

#[test]
fn refuses_while_open_and_says_until_when() {
    let (b, clock) = breaker(policy());
    trip(&b);
    clock.advance(Duration::from_secs(10));
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(refused.until, Some(refused.since + Duration::from_secs(30)));
    assert_eq!(refused.retry_after, Some(Duration::from_secs(20)));
    assert_eq!(refused.to_string(), "circuit open, probing again in 20s");
    assert_eq!(AttemptError::from(refused).reason(), "circuit_open");
    clock.advance(Duration::from_secs(19));
    assert!(b.try_acquire().is_err());
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn half_open_admits_exactly_the_probes_and_closes_on_success() {
    let (b, clock) = breaker(CircuitPolicy {
        half_open_probes: nz(2),
        ..policy()
    });
    trip(&b);
    clock.advance(Duration::from_secs(30));
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_eq!(b.state().as_str(), "half_open");
    let first = b.try_acquire().expect("first probe");
    let second = b.try_acquire().expect("second probe");
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(refused.until, None);
    first.success();
    assert_eq!(b.state(), CircuitState::Closed);
    // The other probe finishing late changes nothing.
    second.failure(Failure::Timeout);
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 0);
}

#[test]
fn a_failed_probe_reopens_for_another_open_for() {
    let (b, clock) = breaker(policy());
    trip(&b);
    clock.advance(Duration::from_secs(30));
    b.try_acquire()
        .expect("probe")
        .failure(Failure::from(&EngineError::Unavailable("down".into())));
    assert_eq!(b.state(), CircuitState::Open);
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
    let snapshot = b.snapshot();
    assert_eq!((snapshot.opens, snapshot.reopens), (2, 1));
    clock.advance(Duration::from_secs(30));
    b.try_acquire().expect("probe again").success();
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn a_dropped_or_neutral_probe_frees_its_place() {
    let (b, clock) = breaker(policy());
    trip(&b);
    clock.advance(Duration::from_secs(30));
    drop(b.try_acquire().expect("probe"));
    assert_eq!(b.state(), CircuitState::HalfOpen);
    b.try_acquire()
        .expect("place freed by the drop")
        .failure(Failure::Engine(Fault::Caller));
    assert_eq!(b.state(), CircuitState::HalfOpen);
    b.try_acquire().expect("place freed again").success();
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn late_outcomes_from_before_the_circuit_opened_are_ignored() {
    let (b, clock) = breaker(policy());
    let slow = b.try_acquire().unwrap();
    trip(&b);
    clock.advance(Duration::from_secs(30));
    // Half-open now; a success from a call admitted while closed is not a
    // probe and must not close the circuit.
    slow.success();
    assert_eq!(b.state(), CircuitState::HalfOpen);
}

#[test]
fn clones_share_state() {
    let (b, _clock) = breaker(policy());
    let other = b.clone();
    trip(&other);
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test]
async fn call_with_timeout_times_out_a_slow_call_and_counts_it() {
    let b = CircuitBreaker::new(CircuitPolicy {
        consecutive_failures: nz(2),
        ..policy()
    });
    let timeout = Duration::from_millis(10);
    // `pending` never finishes, so the outcome does not depend on timing.
    let never = std::future::pending::<Result<(), EngineError>>();
    let error = call_with_timeout(&b, timeout, never).await.unwrap_err();
    assert!(matches!(error, AttemptError::Timeout(d) if d == timeout));
    assert_eq!(error.reason(), "timeout");
    assert_eq!(error.to_string(), "no answer within 10ms");
    assert_eq!(b.snapshot().consecutive_failures, 1);

    let never = std::future::pending::<Result<(), EngineError>>();
    call_with_timeout(&b, timeout, never).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);

    // Open: refused without polling the call.
    let polled = std::sync::atomic::AtomicBool::new(false);
    let call = async {
        polled.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, EngineError>(())
    };
    let error = call_with_timeout(&b, timeout, call).await.unwrap_err();
    assert_eq!(error.reason(), "circuit_open");
    assert!(!polled.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn call_with_timeout_records_results_and_engine_errors() {
    let (b, _clock) = breaker(policy());
    let timeout = Duration::from_secs(5);
    let value = call_with_timeout(&b, timeout, async { Ok::<_, EngineError>(7) })
        .await
        .unwrap();
    assert_eq!(value, 7);
    assert_eq!(b.snapshot().window_calls, 1);

    let error = call_with_timeout(&b, timeout, async {
        Err::<(), _>(EngineError::Execution("nan".into()))
    })
    .await
    .unwrap_err();
    assert_eq!(error.reason(), "execution_failed");
    assert_eq!(b.snapshot().consecutive_failures, 1);

    let error = call_with_timeout(&b, timeout, async {
        Err::<(), _>(EngineError::InvalidInput(InputError::Missing {
            name: "x".into(),
        }))
    })
    .await
    .unwrap_err();
    assert_eq!(error.reason(), "invalid_input");
    assert_eq!(
        b.snapshot().consecutive_failures,
        1,
        "not the engine's fault"
    );
}

#[test]
fn config_defaults_round_trip_and_validate() {
    let config: CircuitConfig = toml::from_str("").unwrap();
    assert_eq!(config, CircuitConfig::default());
    let policy = config.validate("circuit").unwrap();
    assert_eq!(policy, CircuitPolicy::default());
    assert_eq!(policy.open_for, Duration::from_secs(30));
    let text = toml::to_string(&config).unwrap();
    assert_eq!(toml::from_str::<CircuitConfig>(&text).unwrap(), config);
}

#[test]
fn config_rejects_unknown_fields() {
    let error = toml::from_str::<CircuitConfig>("open_for = \"1m\"\nopen_four = 3\n").unwrap_err();
    assert!(error.to_string().contains("open_four"), "{error}");
}

#[test]
fn config_validation_reports_every_problem_at_once() {
    let config = CircuitConfig {
        consecutive_failures: 0,
        error_rate: 1.5,
        window: "soon".into(),
        window_calls: 5,
        min_calls: 6,
        open_for: "0s".into(),
        half_open_probes: 0,
    };
    let problems = config.validate("routes.ct.circuit").unwrap_err();
    assert_eq!(
        problems,
        [
            "routes.ct.circuit.consecutive_failures: must be at least 1",
            "routes.ct.circuit.half_open_probes: must be at least 1",
            "routes.ct.circuit.error_rate: 1.5 is not a share in (0, 1]",
            "routes.ct.circuit.min_calls: 6 is more than window_calls (5), so the error rate would never count",
            "routes.ct.circuit.window: `soon` is not a duration like \"10s\" (expected number at 0)",
            "routes.ct.circuit.open_for: must be greater than zero",
        ]
    );
    let too_big = CircuitConfig {
        window_calls: MAX_WINDOW_CALLS + 1,
        error_rate: f64::NAN,
        ..CircuitConfig::default()
    };
    assert_eq!(too_big.validate("c").unwrap_err().len(), 2);
}
