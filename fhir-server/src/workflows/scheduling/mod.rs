//! Scheduling: when a Schedule is open (`availability`), what holds its time
//! (`busy`), and the openings `Appointment/$find` offers (`openings`).

pub mod availability;
