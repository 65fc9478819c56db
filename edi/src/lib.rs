//! X12 5010 for a medical practice, independent of storage: FHIR resources
//! (`serde_json::Value`) in, X12 text out, and back.
//!
//! - `syntax`: separators, segments and elements (zero-copy);
//! - `envelope`: ISA/GS/ST envelopes with their control numbers and counts checked;
//! - `loops`: the loop tree of an 837P, 835 or 999;
//! - `claim837`: 837P (005010X222A1) from a FHIR Claim and the resources it references,
//!   and back to FHIR;
//! - `remit835`: 835 (005010X221A1) to ClaimResponses and a PaymentReconciliation, with the
//!   balancing rules checked;
//! - `ack`: 999 and TA1 acknowledgments of an inbound 837, and 999s read back.
//!
//! Nothing here panics on any input: every problem is an `EdiError` naming the segment's
//! position, its id and the element.

pub mod ack;
pub mod claim837;
pub mod envelope;
pub mod error;
pub mod fhir;
pub mod loops;
pub mod remit835;
pub mod syntax;

pub use envelope::{Envelope, Group, Interchange, TransactionSet};
pub use error::{EdiError, ErrorKind};
pub use syntax::{Delimiters, Document, Segment};

/// A parsed and envelope-checked input.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub document: Document<'a>,
    pub interchanges: Vec<Interchange>,
}

impl<'a> Parsed<'a> {
    /// Every transaction set, with its group's GS.
    pub fn sets(&self) -> impl Iterator<Item = (&Group, &TransactionSet)> {
        self.interchanges
            .iter()
            .flat_map(|i| i.groups.iter())
            .flat_map(|g| g.sets.iter().map(move |s| (g, s)))
    }
}

/// Parses like `parse`, but keeps groups and sets whose trailers disagree with them,
/// with their problems (`Group::problems`, `TransactionSet::problems`): what a 999
/// reports rather than a TA1.
pub fn parse_lenient(input: &[u8]) -> Result<Parsed<'_>, EdiError> {
    let document = Document::parse(input)?;
    let interchanges = envelope::read_lenient(&document)?;
    Ok(Parsed {
        document,
        interchanges,
    })
}

/// Parses an interchange (or several, one after the other) and checks the envelopes.
pub fn parse(input: &[u8]) -> Result<Parsed<'_>, EdiError> {
    let document = Document::parse(input)?;
    let interchanges = envelope::read(&document)?;
    Ok(Parsed {
        document,
        interchanges,
    })
}
