//! Query strings, as FHIR search and conditional criteria carry them.

/// Parses a query string (`a=1&b=2`) into ordered pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
