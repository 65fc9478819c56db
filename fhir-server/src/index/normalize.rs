//! String normalization for search: FHIR string search is case- and accent-insensitive, so
//! values and search terms are both lowercased and stripped of combining marks (after
//! canonical decomposition: "Müller" and "Muller" both become "muller").

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

pub fn normalize(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_accents_fold() {
        assert_eq!(normalize("Müller"), "muller");
        assert_eq!(normalize("NÚÑEZ"), "nunez");
        assert_eq!(normalize("Zoë O'Brien"), "zoe o'brien");
        assert_eq!(normalize("smith"), "smith");
    }
}
