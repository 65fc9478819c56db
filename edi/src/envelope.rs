//! The envelopes: ISA/IEA interchanges holding GS/GE functional groups holding ST/SE
//! transaction sets, with their control numbers and counts checked.

use std::ops::Range;

use crate::error::EdiError;
use crate::syntax::{Document, Segment, Writer, clean};

/// The parties, control numbers and time of an interchange we write.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// ISA06 / GS02: our id with the clearinghouse (the submitter's ETIN).
    pub sender_id: String,
    /// ISA08 / GS03: the clearinghouse's or payer's id.
    pub receiver_id: String,
    /// ISA13 (1 to 999,999,999); GS06 and ST02 derive from it.
    pub control_number: u32,
    /// `YYYYMMDD`.
    pub date: String,
    /// `HHMM`.
    pub time: String,
    /// `T` test, `P` production.
    pub usage: char,
}

impl Envelope {
    /// ISA13: nine digits.
    pub fn interchange_control(&self) -> String {
        format!("{:09}", self.control_number % 1_000_000_000)
    }

    /// GS06.
    pub fn group_control(&self) -> String {
        (self.control_number % 1_000_000_000).to_string()
    }

    /// ST02 of the interchange's only set (four digits).
    pub fn set_control(&self) -> String {
        format!("{:04}", self.control_number % 10_000)
    }

    /// ST02 of the `n`th set (from 1) of an interchange with several.
    pub fn nth_set_control(n: usize) -> String {
        format!("{:04}", n % 10_000)
    }

    /// Writes ISA (exactly 106 characters) and, with a functional code, GS.
    pub fn open(&self, w: &mut Writer, group: Option<(&str, &str)>) {
        let pad = |text: &str| format!("{:<15}", clean(text).chars().take(15).collect::<String>());
        w.segment(
            "ISA",
            &[
                "00",
                "          ",
                "00",
                "          ",
                "ZZ",
                &pad(&self.sender_id),
                "ZZ",
                &pad(&self.receiver_id),
                self.date.get(2..).unwrap_or_default(),
                &self.time,
                "^",
                "00501",
                &self.interchange_control(),
                "0",
                &self.usage.to_string(),
                ":",
            ],
        );
        if let Some((functional_code, version)) = group {
            self.group(w, functional_code, version);
        }
    }

    /// Writes GS (the one functional group of the interchange).
    pub fn group(&self, w: &mut Writer, functional_code: &str, version: &str) {
        w.segment(
            "GS",
            &[
                functional_code,
                &clean(&self.sender_id),
                &clean(&self.receiver_id),
                &self.date,
                &self.time,
                &self.group_control(),
                "X",
                version,
            ],
        );
    }

    /// Writes ST (with control number `control`) and starts counting its segments.
    pub fn start_set(&self, w: &mut Writer, set_id: &str, control: &str, version: &str) {
        w.since_st = 0;
        w.segment("ST", &[set_id, control, version]);
    }

    /// Writes SE with the count of the set's segments.
    pub fn end_set(&self, w: &mut Writer, control: &str) {
        let count = w.since_st + 1;
        w.segment("SE", &[&count.to_string(), control]);
    }

    /// Writes GE (with the number of sets) when a group was opened, and IEA.
    pub fn close(&self, w: &mut Writer, sets: Option<usize>) {
        if let Some(sets) = sets {
            w.segment("GE", &[&sets.to_string(), &self.group_control()]);
        }
        let groups = usize::from(sets.is_some());
        w.segment("IEA", &[&groups.to_string(), &self.interchange_control()]);
    }
}

/// An interchange: the index of its ISA and IEA in the document, and its groups.
#[derive(Debug, Clone)]
pub struct Interchange {
    pub isa: usize,
    pub iea: usize,
    /// TA1 acknowledgments the interchange carries (before its groups).
    pub ta1: Vec<usize>,
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub gs: usize,
    pub ge: usize,
    pub sets: Vec<TransactionSet>,
    /// What is wrong with its trailer (GE01, GE02); see `read_lenient`.
    pub problems: Vec<EdiError>,
}

/// A transaction set: its ST and SE, and the segments between them.
#[derive(Debug, Clone)]
pub struct TransactionSet {
    pub st: usize,
    pub se: usize,
    /// What is wrong with its header and trailer (SE01, SE02, ST03); see `read_lenient`.
    pub problems: Vec<EdiError>,
}

impl TransactionSet {
    /// The segments between ST and SE.
    pub fn body(&self) -> Range<usize> {
        self.st + 1..self.se
    }
}

/// Reads the envelopes of a document and checks them: every ISA has its IEA with the same
/// control number and the right group count, every GS its GE, every ST its SE with the
/// segment count; GS08 and ST03 agree.
pub fn read(document: &Document) -> Result<Vec<Interchange>, EdiError> {
    let interchanges = read_lenient(document)?;
    let first_problem = interchanges
        .iter()
        .flat_map(|i| &i.groups)
        .flat_map(|g| g.sets.iter().flat_map(|s| &s.problems).chain(&g.problems))
        .min_by_key(|e| e.position);
    match first_problem {
        Some(problem) => Err(problem.clone()),
        None => Ok(interchanges),
    }
}

/// Like `read`, but a group or set whose trailer does not agree with it (counts, control
/// numbers, ST03) is kept, with its problems: a 999 reports those (IK5, AK9), where only
/// an interchange that cannot be read at all is rejected by TA1.
pub fn read_lenient(document: &Document) -> Result<Vec<Interchange>, EdiError> {
    let mut interchanges = Vec::new();
    let mut at = 0;
    while at < document.len() {
        let (interchange, next) = interchange(document, at)
            .map_err(|e| e.with_kind(crate::error::ErrorKind::Envelope))?;
        interchanges.push(interchange);
        at = next;
    }
    if interchanges.is_empty() {
        return Err(EdiError::new(0, "", "no interchange (ISA) in the input"));
    }
    Ok(interchanges)
}

fn expect<'d>(document: &'d Document, at: usize, id: &str) -> Result<Segment<'d>, EdiError> {
    if at >= document.len() {
        let last = document.len();
        return Err(EdiError::new(
            last,
            if last > 0 {
                document.segment(last - 1).id
            } else {
                ""
            },
            format!("the input ends where {id} was expected"),
        ));
    }
    let segment = document.segment(at);
    if segment.id != id {
        return Err(segment.error(format!("{id} expected, found {}", segment.id)));
    }
    Ok(segment)
}

fn interchange(document: &Document, start: usize) -> Result<(Interchange, usize), EdiError> {
    let isa = expect(document, start, "ISA")?;
    if isa.elements.len() != 16 {
        return Err(isa.error(format!("ISA has 16 elements, not {}", isa.elements.len())));
    }
    if isa.element(12) != "00501" {
        return Err(isa.element_error(
            12,
            format!("version '{}' is not 00501 (5010)", isa.element(12)),
        ));
    }
    let control = isa.element(13);
    if control.len() != 9 || !control.bytes().all(|b| b.is_ascii_digit()) {
        return Err(isa.element_error(13, "the interchange control number is 9 digits"));
    }
    if !matches!(isa.element(15), "P" | "T") {
        return Err(isa.element_error(15, "the usage indicator is P or T"));
    }
    let mut ta1 = Vec::new();
    let mut at = start + 1;
    while at < document.len() && document.segment(at).id == "TA1" {
        ta1.push(at);
        at += 1;
    }
    let mut groups = Vec::new();
    while at < document.len() && document.segment(at).id == "GS" {
        let (group, next) = group(document, at)?;
        groups.push(group);
        at = next;
    }
    let iea = expect(document, at, "IEA")?;
    if iea.element(2) != control {
        return Err(iea.element_error(
            2,
            format!(
                "IEA02 '{}' does not match ISA13 '{control}'",
                iea.element(2)
            ),
        ));
    }
    if count(iea.element(1)) != Some(groups.len()) {
        return Err(iea.element_error(
            1,
            format!(
                "IEA01 says {} functional groups, the interchange has {}",
                iea.element(1),
                groups.len()
            ),
        ));
    }
    Ok((
        Interchange {
            isa: start,
            iea: at,
            ta1,
            groups,
        },
        at + 1,
    ))
}

/// The functional group whose GS is at `start`, and where what follows it starts.
fn group(document: &Document, start: usize) -> Result<(Group, usize), EdiError> {
    let gs = document.segment(start);
    let control = gs.element(6);
    if control.is_empty() || control.len() > 9 || !control.bytes().all(|b| b.is_ascii_digit()) {
        return Err(gs.element_error(6, "the group control number is 1 to 9 digits"));
    }
    let mut sets = Vec::new();
    let mut at = start + 1;
    while at < document.len() && document.segment(at).id == "ST" {
        let set = transaction_set(document, &gs, at)?;
        at = set.se + 1;
        sets.push(set);
    }
    let ge = expect(document, at, "GE")?;
    let problems = group_problems(&ge, control, sets.len());
    Ok((
        Group {
            gs: start,
            ge: at,
            sets,
            problems,
        },
        at + 1,
    ))
}

/// The transaction set whose ST is at `start` in the group `gs`, with what is wrong with
/// its header and trailer.
fn transaction_set(
    document: &Document,
    gs: &Segment,
    start: usize,
) -> Result<TransactionSet, EdiError> {
    let st = document.segment(start);
    let end = set_end(document, start);
    let se = expect(document, end, "SE")?;
    Ok(TransactionSet {
        st: start,
        se: end,
        problems: set_problems(gs, &st, &se, end - start + 1),
    })
}

/// Where the set starting at `start` ends: its SE, or the segment where its SE should be
/// (the next envelope segment, or the end of the input).
fn set_end(document: &Document, start: usize) -> usize {
    let mut end = start + 1;
    while end < document.len()
        && !matches!(
            document.segment(end).id,
            "SE" | "ST" | "GE" | "IEA" | "ISA" | "GS"
        )
    {
        end += 1;
    }
    end
}

/// SE02 against ST02, SE01 against the set's `segments`, ST03 against GS08.
fn set_problems(gs: &Segment, st: &Segment, se: &Segment, segments: usize) -> Vec<EdiError> {
    let mut problems = Vec::new();
    if se.element(2) != st.element(2) || st.element(2).is_empty() {
        problems.push(se.element_error(
            2,
            format!(
                "SE02 '{}' does not match ST02 '{}'",
                se.element(2),
                st.element(2)
            ),
        ));
    }
    if count(se.element(1)) != Some(segments) {
        problems.push(se.element_error(
            1,
            format!(
                "SE01 says {} segments, the transaction set has {segments}",
                se.element(1)
            ),
        ));
    }
    if !st.element(3).is_empty() && !gs.element(8).is_empty() && st.element(3) != gs.element(8) {
        problems.push(st.element_error(
            3,
            format!(
                "ST03 '{}' differs from GS08 '{}'",
                st.element(3),
                gs.element(8)
            ),
        ));
    }
    envelope_errors(problems)
}

/// GE02 against GS06 (`control`), GE01 against the group's number of `sets`.
fn group_problems(ge: &Segment, control: &str, sets: usize) -> Vec<EdiError> {
    let mut problems = Vec::new();
    if ge.element(2) != control {
        problems.push(ge.element_error(
            2,
            format!("GE02 '{}' does not match GS06 '{control}'", ge.element(2)),
        ));
    }
    if count(ge.element(1)) != Some(sets) {
        problems.push(ge.element_error(
            1,
            format!(
                "GE01 says {} transaction sets, the group has {sets}",
                ge.element(1)
            ),
        ));
    }
    envelope_errors(problems)
}

/// Trailer problems are envelope errors: a 999 reports them as such (IK5, AK9).
fn envelope_errors(problems: Vec<EdiError>) -> Vec<EdiError> {
    problems
        .into_iter()
        .map(|e| e.with_kind(crate::error::ErrorKind::Envelope))
        .collect()
}

fn count(text: &str) -> Option<usize> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
