//! The server's clock: the system time, plus an offset that only a server started with
//! `--test-clock` lets a test move forward (`POST /admin/clock`).
//!
//! Tests of expiry (export files, job leases, and later holds, codes and offers) move this
//! clock instead of sleeping: every time the server stamps or compares goes through
//! [`now_micros`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds added to the system time (0 unless a test moved the clock).
static OFFSET_MICROS: AtomicI64 = AtomicI64::new(0);

/// Microseconds since the Unix epoch, on the server's clock.
pub fn now_micros() -> i64 {
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    system.saturating_add(OFFSET_MICROS.load(Ordering::Relaxed))
}

/// Seconds since the Unix epoch, on the server's clock (as tokens count time).
pub fn now_seconds() -> i64 {
    now_micros().div_euclid(1_000_000)
}

/// Moves the clock forward by `micros` (never back: versions must not go back in time);
/// the offset after the move.
pub fn advance(micros: i64) -> i64 {
    let step = micros.max(0);
    OFFSET_MICROS.fetch_add(step, Ordering::Relaxed) + step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_only() {
        let before = now_micros();
        advance(-5_000_000);
        assert!(now_micros() >= before);
        advance(3_600_000_000);
        assert!(now_micros() >= before + 3_600_000_000);
    }
}
