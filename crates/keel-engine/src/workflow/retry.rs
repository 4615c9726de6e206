//! Temporal's retry policy arithmetic, shared by activities and workflow runs.

use super::model::{RetryPolicy, RetryState};

const DEFAULT_INITIAL_INTERVAL_MS: u64 = 1_000;
const DEFAULT_BACKOFF_COEFFICIENT: f64 = 2.0;

/// The backoff before attempt `attempt + 1` under `p`, or why there is none: a non-retryable
/// failure (flagged, or its type listed) or the maximum attempts reached. Zero fields take
/// Temporal's defaults (1 s initial interval, coefficient 2, maximum 100 × initial).
pub(super) fn backoff(
    p: &RetryPolicy,
    attempt: i32,
    non_retryable: bool,
    failure_type: &str,
) -> Result<u64, RetryState> {
    if non_retryable
        || p.non_retryable_error_types
            .iter()
            .any(|t| t == failure_type)
    {
        return Err(RetryState::NonRetryableFailure);
    }
    if p.maximum_attempts > 0 && attempt >= p.maximum_attempts {
        return Err(RetryState::MaximumAttemptsReached);
    }
    let initial = if p.initial_interval_ms == 0 {
        DEFAULT_INITIAL_INTERVAL_MS
    } else {
        p.initial_interval_ms
    };
    let coefficient = if p.backoff_coefficient >= 1.0 {
        p.backoff_coefficient
    } else {
        DEFAULT_BACKOFF_COEFFICIENT
    };
    let max = if p.maximum_interval_ms == 0 {
        initial.saturating_mul(100)
    } else {
        p.maximum_interval_ms
    };
    // Repeated multiplication (not powi) keeps the arithmetic identical on every node.
    let mut b = initial as f64;
    for _ in 1..attempt {
        b *= coefficient;
        if b >= max as f64 {
            break;
        }
    }
    Ok(b.min(max as f64) as u64)
}
