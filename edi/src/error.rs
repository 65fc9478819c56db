//! Errors that say where: the segment's position in the interchange (1-based, counting
//! every segment from ISA), its id, and the element (and component) when one is at fault.

use std::fmt;

/// What kind of problem, for acknowledgments (999 IK3/IK4 and TA1 codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorKind {
    /// The envelope (ISA/GS/ST and their trailers) is broken.
    Envelope,
    /// A segment the implementation guide requires is not there.
    MissingSegment,
    /// A segment where it does not belong, or not known.
    UnexpectedSegment,
    /// A required element is empty.
    MissingElement,
    /// An element holds a value it may not (a bad code, amount or number).
    #[default]
    InvalidValue,
    /// An element holds an invalid date or time.
    InvalidDate,
    /// Amounts that must balance do not.
    Imbalance,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdiError {
    /// The segment's position in the interchange, from 1 (ISA); 0 when the input has none.
    pub position: usize,
    /// The segment id, e.g. `CLM`; empty when there is no segment.
    pub segment: String,
    /// The element's position in the segment, from 1 (`CLM02` is 2).
    pub element: Option<usize>,
    /// The component's position in the element, from 1.
    pub component: Option<usize>,
    pub message: String,
    pub kind: ErrorKind,
}

impl EdiError {
    pub fn new(position: usize, segment: &str, message: impl Into<String>) -> EdiError {
        EdiError {
            position,
            segment: segment.to_owned(),
            element: None,
            component: None,
            message: message.into(),
            kind: ErrorKind::default(),
        }
    }

    pub fn with_kind(mut self, kind: ErrorKind) -> EdiError {
        self.kind = kind;
        self
    }

    pub fn at_element(mut self, element: usize) -> EdiError {
        self.element = Some(element);
        self
    }

    pub fn at_component(mut self, component: usize) -> EdiError {
        self.component = Some(component);
        self
    }

    /// `CLM02`, `SV101-2`, or the segment id alone.
    pub fn reference(&self) -> String {
        match (self.element, self.component) {
            (Some(e), Some(c)) => format!("{}{e:02}-{c}", self.segment),
            (Some(e), None) => format!("{}{e:02}", self.segment),
            _ => self.segment.clone(),
        }
    }
}

impl fmt::Display for EdiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.position == 0 {
            return write!(f, "{}", self.message);
        }
        write!(
            f,
            "segment {} ({}): {}",
            self.position,
            self.reference(),
            self.message
        )
    }
}

impl std::error::Error for EdiError {}
