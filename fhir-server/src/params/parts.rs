//! The string parts of HumanName and Address that are indexed, and searched, one by one.

/// The string parts of HumanName and Address, numbered from 1 by their place here (0 is a
/// string that is not a part). A row keeps its part so that `family` or `address-city`
/// can be answered from the rows of `name` or `address` (see `registry::Derived`).
pub const PARTS: [&str; 11] = [
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
];

/// The number of a part (see `PARTS`).
pub fn part_number(name: &str) -> Option<u8> {
    PARTS
        .iter()
        .position(|part| *part == name)
        .map(|i| i as u8 + 1)
}

/// The string parts of a complex type whose values are indexed part by part.
pub fn parts_of(type_code: &str) -> &'static [&'static str] {
    match type_code {
        "HumanName" => &PARTS[..5],
        "Address" => &[
            "text",
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
        ],
        _ => &[],
    }
}
