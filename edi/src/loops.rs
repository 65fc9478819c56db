//! The loop structure of a transaction set (837P, 835, 999), as a tree.
//!
//! Each implementation guide is a table of loops: a loop starts at its trigger segment
//! (with a qualifier value in one element when the same segment starts several loops) and
//! sits inside a parent loop. A segment that triggers a loop whose parent is open closes
//! the loops below that parent and opens it; when several loops could start, the one with
//! the deepest open parent wins (an `NM1*82` after `LX` is 2420A, not 2310B). Any other
//! segment belongs to the innermost open loop.

use crate::syntax::{Document, Segment};

/// A loop of an implementation guide.
pub struct LoopDef {
    pub id: &'static str,
    pub parent: &'static str,
    pub segment: &'static str,
    /// `(element, values)`: the trigger segment must have one of `values` there.
    pub qualifier: Option<(usize, &'static [&'static str])>,
}

const fn def(id: &'static str, parent: &'static str, segment: &'static str) -> LoopDef {
    LoopDef {
        id,
        parent,
        segment,
        qualifier: None,
    }
}

const fn qualified(
    id: &'static str,
    parent: &'static str,
    segment: &'static str,
    element: usize,
    values: &'static [&'static str],
) -> LoopDef {
    LoopDef {
        id,
        parent,
        segment,
        qualifier: Some((element, values)),
    }
}

/// 837P (005010X222A1). `HEADER` is the root: BHT and what follows it.
pub const LOOPS_837P: &[LoopDef] = &[
    qualified("1000A", "HEADER", "NM1", 1, &["41"]),
    qualified("1000B", "HEADER", "NM1", 1, &["40"]),
    qualified("2000A", "HEADER", "HL", 3, &["20"]),
    qualified("2010AA", "2000A", "NM1", 1, &["85"]),
    qualified("2010AB", "2000A", "NM1", 1, &["87"]),
    qualified("2010AC", "2000A", "NM1", 1, &["PE"]),
    qualified("2000B", "2000A", "HL", 3, &["22"]),
    qualified("2010BA", "2000B", "NM1", 1, &["IL"]),
    qualified("2010BB", "2000B", "NM1", 1, &["PR"]),
    qualified("2000C", "2000B", "HL", 3, &["23"]),
    qualified("2010CA", "2000C", "NM1", 1, &["QC"]),
    def("2300", "2000B", "CLM"),
    def("2300", "2000C", "CLM"),
    qualified("2310A", "2300", "NM1", 1, &["DN", "P3"]),
    qualified("2310B", "2300", "NM1", 1, &["82"]),
    qualified("2310C", "2300", "NM1", 1, &["77"]),
    qualified("2310D", "2300", "NM1", 1, &["DQ"]),
    qualified("2310E", "2300", "NM1", 1, &["PW"]),
    qualified("2310F", "2300", "NM1", 1, &["45"]),
    def("2320", "2300", "SBR"),
    qualified("2330A", "2320", "NM1", 1, &["IL"]),
    qualified("2330B", "2320", "NM1", 1, &["PR"]),
    qualified("2330C", "2320", "NM1", 1, &["DN", "P3"]),
    qualified("2330D", "2320", "NM1", 1, &["82"]),
    qualified("2330E", "2320", "NM1", 1, &["77"]),
    qualified("2330F", "2320", "NM1", 1, &["DQ"]),
    qualified("2330G", "2320", "NM1", 1, &["85"]),
    def("2400", "2300", "LX"),
    def("2410", "2400", "LIN"),
    qualified("2420A", "2400", "NM1", 1, &["82"]),
    qualified("2420B", "2400", "NM1", 1, &["QB"]),
    qualified("2420C", "2400", "NM1", 1, &["77"]),
    qualified("2420D", "2400", "NM1", 1, &["DQ"]),
    qualified("2420E", "2400", "NM1", 1, &["DK"]),
    qualified("2420F", "2400", "NM1", 1, &["DN", "P3"]),
    qualified("2420G", "2400", "NM1", 1, &["PW"]),
    qualified("2420H", "2400", "NM1", 1, &["45"]),
    def("2430", "2400", "SVD"),
    def("2440", "2400", "LQ"),
];

/// 835 (005010X221A1).
pub const LOOPS_835: &[LoopDef] = &[
    qualified("1000A", "HEADER", "N1", 1, &["PR"]),
    qualified("1000B", "HEADER", "N1", 1, &["PE"]),
    def("2000", "HEADER", "LX"),
    def("2100", "2000", "CLP"),
    def("2110", "2100", "SVC"),
    def("FOOTER", "HEADER", "PLB"),
];

/// 999 (005010X231A1).
pub const LOOPS_999: &[LoopDef] = &[
    def("2000", "HEADER", "AK2"),
    def("2100", "2000", "IK3"),
    def("2110", "2100", "IK4"),
];

/// A loop: its id, its own segments (indexes into the document) and the loops inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    pub id: &'static str,
    pub segments: Vec<usize>,
    pub children: Vec<Loop>,
}

impl Loop {
    fn new(id: &'static str) -> Loop {
        Loop {
            id,
            segments: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The loops with this id directly inside this one.
    pub fn loops<'l>(&'l self, id: &'l str) -> impl Iterator<Item = &'l Loop> + 'l {
        self.children.iter().filter(move |l| l.id == id)
    }

    /// The first loop with this id directly inside this one.
    pub fn first(&self, id: &str) -> Option<&Loop> {
        self.children.iter().find(|l| l.id == id)
    }

    /// This loop's segments with this id (and, when given, this qualifier in element 1).
    pub fn find<'d>(
        &self,
        document: &'d Document,
        id: &str,
        qualifier: Option<&str>,
    ) -> Vec<Segment<'d>> {
        self.segments
            .iter()
            .map(|&i| document.segment(i))
            .filter(|s| s.id == id && qualifier.is_none_or(|q| s.element(1) == q))
            .collect()
    }

    /// The first of `find`.
    pub fn get<'d>(
        &self,
        document: &'d Document,
        id: &str,
        qualifier: Option<&str>,
    ) -> Option<Segment<'d>> {
        self.segments
            .iter()
            .map(|&i| document.segment(i))
            .find(|s| s.id == id && qualifier.is_none_or(|q| s.element(1) == q))
    }
}

/// Builds the loop tree of the segments `body` (a transaction set between ST and SE).
/// The root is `HEADER`.
pub fn build(document: &Document, body: std::ops::Range<usize>, defs: &[LoopDef]) -> Loop {
    // The open loops, outermost first; each is moved into its parent when it closes.
    let mut open = vec![Loop::new("HEADER")];
    for index in body {
        let segment = document.segment(index);
        let best = defs
            .iter()
            .filter(|d| {
                d.segment == segment.id
                    && d.qualifier
                        .is_none_or(|(element, values)| values.contains(&segment.element(element)))
            })
            .filter_map(|d| {
                open.iter()
                    .rposition(|l| l.id == d.parent)
                    .map(|depth| (depth, d))
            })
            .max_by_key(|(depth, _)| *depth);
        if let Some((depth, def)) = best {
            close_to(&mut open, depth + 1);
            open.push(Loop::new(def.id));
        }
        // The root is never closed (`close_to` keeps at least one loop open).
        if let Some(current) = open.last_mut() {
            current.segments.push(index);
        }
    }
    close_to(&mut open, 1);
    open.pop().unwrap_or_else(|| Loop::new("HEADER"))
}

/// Closes the innermost loops until `keep` (at least 1) are open, each into its parent.
fn close_to(open: &mut Vec<Loop>, keep: usize) {
    while open.len() > keep.max(1) {
        let Some(done) = open.pop() else { break };
        if let Some(parent) = open.last_mut() {
            parent.children.push(done);
        }
    }
}
