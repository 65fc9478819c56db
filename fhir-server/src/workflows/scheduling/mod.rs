//! Scheduling: when a Schedule is open (`availability`), what holds its time (`busy`),
//! the openings `Appointment/$find` offers (`openings`), and the states `$hold`, `$book` and
//! `$cancel` write (`booking`). The rules run with the
//! server's rights (`lookup`); who may ask is the operation's concern (`ops`).

/// When a Schedule is open: below the store (`index::availability`), which checks the
/// scheduling parameters of every Schedule written.
pub use crate::index::availability;
pub mod booking;
pub mod busy;
pub mod lookup;
pub mod moves;
pub mod openings;
pub mod series;
pub mod waitlist;

/// The `Patient/...` participant of an appointment.
pub fn patient_of(appointment: &serde_json::Value) -> Option<String> {
    appointment["participant"]
        .as_array()?
        .iter()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .find(|r| r.starts_with("Patient/"))
        .map(str::to_owned)
}

/// The first `Practitioner/...` participant of an appointment.
pub fn practitioner_of(appointment: &serde_json::Value) -> Option<&str> {
    appointment["participant"]
        .as_array()?
        .iter()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .find(|r| r.starts_with("Practitioner/"))
}
