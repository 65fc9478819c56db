//! X12 syntax: the separators read from ISA, and the input split into segments and
//! elements without copying (every element is a slice of the input).
//!
//! All elements of a document live in one flat vector and each segment is a range of it,
//! so parsing allocates twice, not once per segment: an 835 parses at hundreds of MB/s.

use crate::error::EdiError;

/// ISA is exactly this long, its segment terminator included.
pub const ISA_LENGTH: usize = 106;

/// The four separators of an interchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub element: u8,
    pub repetition: u8,
    pub component: u8,
    pub segment: u8,
}

impl Default for Delimiters {
    /// What this crate writes: `*`, `^`, `:`, `~`.
    fn default() -> Self {
        Delimiters {
            element: b'*',
            repetition: b'^',
            component: b':',
            segment: b'~',
        }
    }
}

impl Delimiters {
    /// The separators of the ISA at the start of `input`: the element separator is its
    /// fourth character, the repetition separator ISA11, the component separator ISA16 and
    /// the segment terminator the character after it.
    pub fn from_isa(input: &[u8]) -> Result<Delimiters, EdiError> {
        if input.len() < ISA_LENGTH || !input.starts_with(b"ISA") {
            return Err(EdiError::new(
                1,
                "ISA",
                format!("an interchange starts with an ISA segment of {ISA_LENGTH} characters"),
            ));
        }
        let delimiters = Delimiters {
            element: input[3],
            repetition: input[82],
            component: input[104],
            segment: input[105],
        };
        let all = [
            delimiters.element,
            delimiters.repetition,
            delimiters.component,
            delimiters.segment,
        ];
        for (i, d) in all.iter().enumerate() {
            if d.is_ascii_alphanumeric() || all[..i].contains(d) {
                return Err(EdiError::new(
                    1,
                    "ISA",
                    format!(
                        "the separators read from ISA must be distinct and not letters or digits; \
                         found '{}'",
                        String::from_utf8_lossy(&all)
                    ),
                ));
            }
        }
        // The element separator must sit at every fixed ISA position.
        for (n, at) in [
            3, 6, 17, 20, 31, 34, 50, 53, 69, 76, 81, 83, 89, 99, 101, 103,
        ]
        .into_iter()
        .enumerate()
        {
            if input[at] != delimiters.element {
                return Err(EdiError::new(
                    1,
                    "ISA",
                    format!(
                        "ISA must be exactly {ISA_LENGTH} characters with fixed-width elements; \
                         element ISA{:02} does not end where it should",
                        n
                    ),
                )
                .at_element(n.max(1)));
            }
        }
        Ok(delimiters)
    }
}

/// A segment: its id and its elements, `elements[0]` being element 01.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub id: &'a str,
    pub elements: &'a [&'a str],
    /// Position in the document, from 1.
    pub position: usize,
    pub delimiters: Delimiters,
}

impl<'a> Segment<'a> {
    /// Element `n` (from 1), or `""` when absent.
    pub fn element(&self, n: usize) -> &'a str {
        n.checked_sub(1)
            .and_then(|i| self.elements.get(i))
            .copied()
            .unwrap_or("")
    }

    /// Component `c` (from 1) of element `n`, or `""`.
    pub fn component(&self, n: usize, c: usize) -> &'a str {
        self.element(n)
            .split(self.delimiters.component as char)
            .nth(c.saturating_sub(1))
            .filter(|_| c > 0)
            .unwrap_or("")
    }

    /// The components of element `n`.
    pub fn components(&self, n: usize) -> impl Iterator<Item = &'a str> + use<'a> {
        let element = self.element(n);
        let separator = self.delimiters.component as char;
        element
            .split(separator)
            .filter(move |_| !element.is_empty())
    }

    /// An error about this segment.
    pub fn error(&self, message: impl Into<String>) -> EdiError {
        EdiError::new(self.position, self.id, message)
    }

    /// An error about element `n` of this segment.
    pub fn element_error(&self, n: usize, message: impl Into<String>) -> EdiError {
        self.error(message).at_element(n)
    }
}

/// A parsed input: every segment, in order.
#[derive(Debug)]
pub struct Document<'a> {
    pub delimiters: Delimiters,
    /// Per segment: id, range of `elements`.
    segments: Vec<(&'a str, u32, u32)>,
    elements: Vec<&'a str>,
}

impl<'a> Document<'a> {
    /// Splits `input` into segments. The separators come from its ISA. Line breaks (and
    /// other whitespace) after a segment terminator are skipped.
    pub fn parse(input: &'a [u8]) -> Result<Document<'a>, EdiError> {
        let start = input
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(input.len());
        let input = &input[start..];
        let delimiters = Delimiters::from_isa(input)
            .map_err(|e| e.with_kind(crate::error::ErrorKind::Envelope))?;
        let text = std::str::from_utf8(input).map_err(|error| {
            let at = error.valid_up_to();
            let position = input[..at]
                .iter()
                .filter(|&&b| b == delimiters.segment)
                .count()
                + 1;
            EdiError::new(
                position,
                "",
                format!("byte {} is not valid text (UTF-8)", start + at),
            )
        })?;
        let mut document = Document {
            delimiters,
            segments: Vec::with_capacity(input.len() / 24),
            elements: Vec::with_capacity(input.len() / 5),
        };
        let segment_separator = delimiters.segment as char;
        let element_separator = delimiters.element as char;
        for raw in text.split(segment_separator) {
            let raw = raw.trim_start_matches(['\r', '\n', ' ', '\t']);
            if raw.is_empty() {
                continue;
            }
            let begin = document.elements.len() as u32;
            let mut parts = raw.split(element_separator);
            let id = parts.next().unwrap_or("");
            let position = document.segments.len() + 1;
            if id.is_empty()
                || id.len() > 3
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                return Err(EdiError::new(
                    position,
                    id,
                    format!("'{}' is not a segment id", truncate(id, 12)),
                ));
            }
            document.elements.extend(parts);
            document
                .segments
                .push((id, begin, document.elements.len() as u32));
        }
        Ok(document)
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Segment `index` (from 0).
    pub fn segment(&self, index: usize) -> Segment<'_> {
        let (id, begin, end) = self.segments[index];
        Segment {
            id,
            elements: &self.elements[begin as usize..end as usize],
            position: index + 1,
            delimiters: self.delimiters,
        }
    }

    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> {
        (0..self.len()).map(|i| self.segment(i))
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Writes segments with the default separators, one per line.
#[derive(Debug, Default)]
pub struct Writer {
    pub text: String,
    /// Segments written since the last `ST` (for `SE01`).
    pub since_st: usize,
}

impl Writer {
    /// Writes a segment; trailing empty elements are left out, as X12 requires.
    pub fn segment(&mut self, id: &str, elements: &[&str]) {
        let used = elements
            .iter()
            .rposition(|e| !e.is_empty())
            .map_or(0, |i| i + 1);
        self.text.push_str(id);
        for element in &elements[..used] {
            self.text.push('*');
            self.text.push_str(element);
        }
        self.text.push_str("~\n");
        self.since_st += 1;
    }
}

/// An X12 string value: upper case, separators and characters outside the basic and
/// extended character sets replaced by a space, runs of spaces collapsed, trimmed.
pub fn clean(text: &str) -> String {
    clean_as(text, true)
}

/// Like `clean`, but keeping lower case (part of the extended character set): for free
/// text such as a procedure description, which an 837P read back should give unchanged.
pub fn clean_text(text: &str) -> String {
    clean_as(text, false)
}

fn clean_as(text: &str, upper: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = match c {
            '*' | '~' | ':' | '^' => ' ',
            c if (c.is_ascii_graphic() || c == ' ') && upper => c.to_ascii_uppercase(),
            c if c.is_ascii_graphic() => c,
            _ => ' ',
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isa(element: char, repetition: char, component: char, segment: char) -> String {
        format!(
            "ISA{e}00{e}          {e}00{e}          {e}ZZ{e}SENDER         {e}ZZ{e}RECEIVER       {e}261201{e}1200{e}{r}{e}00501{e}000000001{e}0{e}T{e}{c}{s}",
            e = element,
            r = repetition,
            c = component,
            s = segment
        )
    }

    #[test]
    fn separators_come_from_isa() {
        let text = isa('|', '!', '>', '\'');
        assert_eq!(text.len(), ISA_LENGTH);
        let d = Delimiters::from_isa(text.as_bytes()).unwrap();
        assert_eq!(
            (d.element, d.repetition, d.component, d.segment),
            (b'|', b'!', b'>', b'\'')
        );
        let input = format!("{text}\r\nGS|HC|A>B||x'\nIEA|1|000000001'");
        let document = Document::parse(input.as_bytes()).unwrap();
        assert_eq!(document.len(), 3);
        let gs = document.segment(1);
        assert_eq!(gs.id, "GS");
        assert_eq!(gs.element(2), "A>B");
        assert_eq!(gs.component(2, 2), "B");
        assert_eq!(gs.element(3), "");
        assert_eq!(gs.element(4), "x");
        assert_eq!(gs.element(9), "");
        assert_eq!(gs.position, 2);
    }

    #[test]
    fn a_short_or_misaligned_isa_is_refused() {
        let text = isa('*', '^', ':', '~');
        assert!(Delimiters::from_isa(&text.as_bytes()[..100]).is_err());
        let shifted = text.replacen("SENDER ", "SENDER", 1) + "~";
        let error = Delimiters::from_isa(shifted.as_bytes()).unwrap_err();
        assert_eq!(
            (error.position, error.segment.as_str()),
            (1, "ISA"),
            "{error}"
        );
        let letters = isa('*', '^', 'X', '~');
        assert!(Delimiters::from_isa(letters.as_bytes()).is_err());
    }

    #[test]
    fn bad_segment_ids_are_named_with_their_position() {
        let input = format!("{}GS*HC~bad*x~", isa('*', '^', ':', '~'));
        let error = Document::parse(input.as_bytes()).unwrap_err();
        assert_eq!(error.position, 3);
        assert!(error.to_string().contains("segment 3"), "{error}");
    }

    #[test]
    fn writer_leaves_out_trailing_empty_elements() {
        let mut writer = Writer::default();
        writer.segment(
            "NM1",
            &["85", "2", "CLINIC", "", "", "", "", "XX", "1234567893"],
        );
        writer.segment("PER", &["IC", "", "", ""]);
        assert_eq!(writer.text, "NM1*85*2*CLINIC*****XX*1234567893~\nPER*IC~\n");
    }

    #[test]
    fn clean_values_fit_x12() {
        assert_eq!(clean(" Dr. José  O'Brien*~ "), "DR. JOS O'BRIEN");
        assert_eq!(
            clean_text(" Sod Chl 0.9%:see  NDC# "),
            "Sod Chl 0.9% see NDC#"
        );
    }
}
