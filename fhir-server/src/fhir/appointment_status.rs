//! The life of an Appointment as a state machine, so that no client can get around it: the
//! scheduling operations and every plain write (PUT, PATCH, conditional and transaction
//! writes) are held to the same moves (`store::claims` checks each update).
//!
//! proposed → pending → booked → arrived → checked-in → fulfilled, with cancelled from
//! any state before fulfilled, noshow from booked, waitlist before booking, and
//! entered-in-error from anywhere. fulfilled, cancelled, noshow and entered-in-error are
//! final. Creating an appointment in any state is allowed (an EHR's history brings
//! fulfilled and cancelled ones); only moves are checked.

/// The statuses an appointment may move to from `from` (besides staying).
fn next(from: &str) -> &'static [&'static str] {
    match from {
        "proposed" => &[
            "pending",
            "booked",
            "waitlist",
            "cancelled",
            "entered-in-error",
        ],
        "pending" => &["proposed", "booked", "cancelled", "entered-in-error"],
        "waitlist" => &[
            "proposed",
            "pending",
            "booked",
            "cancelled",
            "entered-in-error",
        ],
        "booked" => &[
            "pending",
            "arrived",
            "checked-in",
            "fulfilled",
            "noshow",
            "cancelled",
            "entered-in-error",
        ],
        "arrived" => &["checked-in", "fulfilled", "cancelled", "entered-in-error"],
        "checked-in" => &["fulfilled", "cancelled", "entered-in-error"],
        "fulfilled" | "cancelled" | "noshow" => &["entered-in-error"],
        _ => &[],
    }
}

/// Whether an appointment may go from `from` to `to`; `Err` says why not.
pub fn may_move(from: &str, to: &str) -> Result<(), String> {
    if from == to || next(from).contains(&to) {
        return Ok(());
    }
    Err(format!(
        "An appointment cannot go from {from} to {to}{}",
        match next(from) {
            [] => " (it is final)".to_owned(),
            allowed => format!(" (from {from}: {})", allowed.join(", ")),
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::may_move;

    #[test]
    fn the_usual_path_and_its_exits() {
        for (from, to) in [
            ("proposed", "pending"),
            ("pending", "booked"),
            ("booked", "arrived"),
            ("arrived", "checked-in"),
            ("checked-in", "fulfilled"),
            ("booked", "noshow"),
            ("booked", "cancelled"),
            ("fulfilled", "entered-in-error"),
            ("booked", "booked"),
        ] {
            assert!(may_move(from, to).is_ok(), "{from} → {to}");
        }
    }

    #[test]
    fn what_is_over_stays_over() {
        for (from, to) in [
            ("fulfilled", "booked"),
            ("cancelled", "arrived"),
            ("cancelled", "booked"),
            ("noshow", "fulfilled"),
            ("entered-in-error", "booked"),
            ("checked-in", "booked"),
            ("proposed", "fulfilled"),
        ] {
            assert!(may_move(from, to).is_err(), "{from} → {to}");
        }
    }
}
