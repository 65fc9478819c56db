//! Scheduling: when a Schedule is open (`availability`), what holds its time (`busy`),
//! and the openings `Appointment/$find` offers (`openings`). The rules run with the
//! server's rights (`lookup`); who may ask is the operation's concern (`ops`).

pub mod availability;
pub mod busy;
pub mod lookup;
pub mod openings;
