//! Acknowledgments of an inbound 837: TA1s for the interchange envelopes and 999s
//! (005010X231A1) for the functional groups and transaction sets, in one interchange of
//! ours; and 999s read back.
//!
//! A TA1 per received interchange accepts it (A, note 000) when it can be read; otherwise
//! a lone TA1 rejects it (R) with the TA105 note code of the first envelope error, and no
//! 999 follows, as the groups cannot be trusted. Groups and sets whose trailers disagree
//! with them (counts, control numbers) are rejected in the 999 instead: IK5 R with IK502
//! 3, 4 or 5; AK9 R with AK905 4 or 5. A 999 per received
//! functional group acknowledges each 837 set: accepted (IK5 A), or rejected (IK5 R) with
//! an IK3 per segment in error (its id, position in the set and loop) and an IK4 per
//! element (its position, code and the bad value).

use crate::claim837::validate::{loop_of, validate};
use crate::envelope::Envelope;
use crate::error::{EdiError, ErrorKind};
use crate::loops;
use crate::syntax::{Delimiters, Document, Writer, clean};

/// The acknowledgment of one inbound input.
#[derive(Debug, Clone)]
pub struct Acknowledgment {
    /// One interchange: TA1s, then (unless the envelopes were rejected) a group of 999s.
    pub interchange: String,
    /// Whether the envelopes were accepted (TA1 A).
    pub envelope_accepted: bool,
    /// Whether every transaction set was accepted.
    pub accepted: bool,
}

/// At most this many IK3 loops per transaction set.
const MAX_SEGMENT_ERRORS: usize = 100;

/// Acknowledges an inbound 837P input. `ours` is our envelope (we are the sender of the
/// acknowledgment); its control number is the acknowledgment's.
pub fn acknowledge_837(input: &[u8], ours: &Envelope) -> Acknowledgment {
    let parsed = match crate::parse_lenient(input) {
        Ok(parsed) => parsed,
        Err(error) => return rejected(input, ours, &error),
    };
    let document = &parsed.document;
    let mut w = Writer::default();
    ours.open(&mut w, None);
    for interchange in &parsed.interchanges {
        let isa = document.segment(interchange.isa);
        w.segment(
            "TA1",
            &[isa.element(13), isa.element(9), isa.element(10), "A", "000"],
        );
    }
    let groups: Vec<_> = parsed.interchanges.iter().flat_map(|i| &i.groups).collect();
    let mut all_accepted = true;
    if !groups.is_empty() {
        ours.group(&mut w, "FA", "005010X231A1");
    }
    for (n, group) in groups.iter().enumerate() {
        let control = Envelope::nth_set_control(n + 1);
        ours.start_set(&mut w, "999", &control, "005010X231A1");
        all_accepted &= acknowledge_group(&mut w, document, group);
        ours.end_set(&mut w, &control);
    }
    ours.close(&mut w, (!groups.is_empty()).then_some(groups.len()));
    Acknowledgment {
        interchange: w.text,
        envelope_accepted: true,
        accepted: all_accepted,
    }
}

/// The body of one 999: AK1, an AK2..IK5 per set, AK9. Whether every set was accepted.
fn acknowledge_group(w: &mut Writer, document: &Document, group: &crate::Group) -> bool {
    let gs = document.segment(group.gs);
    w.segment("AK1", &[gs.element(1), gs.element(6), gs.element(8)]);
    let mut accepted = 0;
    for set in &group.sets {
        let st = document.segment(set.st);
        w.segment("AK2", &[st.element(1), st.element(2), st.element(3)]);
        if let Some(problem) = set.problems.first() {
            // The set's own envelope is wrong: IK5 says how, with no IK3.
            w.segment("IK5", &["R", set_error_code(problem)]);
            continue;
        }
        let errors = if st.element(1) == "837" && gs.element(1) == "HC" {
            validate(document, set)
        } else {
            vec![st.element_error(1, "only 837 transaction sets are accepted here")]
        };
        if errors.is_empty() {
            accepted += 1;
            w.segment("IK5", &["A"]);
            continue;
        }
        let tree = loops::build(document, set.body(), loops::LOOPS_837P);
        write_errors(w, document, set.st, &tree, &errors);
        w.segment("IK5", &["R", "5"]);
    }
    let received = group.sets.len();
    let status = match accepted {
        _ if !group.problems.is_empty() => "R",
        a if a == received => "A",
        0 => "R",
        _ => "P",
    };
    // AK902 is what GE01 said; AK903 what arrived.
    let ge = document.segment(group.ge);
    let included = match ge.element(1).parse::<usize>() {
        Ok(n) => n.to_string(),
        Err(_) => received.to_string(),
    };
    let mut ak9 = vec![
        status.to_owned(),
        included,
        received.to_string(),
        accepted.to_string(),
    ];
    ak9.extend(
        group
            .problems
            .iter()
            .map(|p| group_error_code(p).to_owned()),
    );
    let ak9: Vec<&str> = ak9.iter().map(String::as_str).collect();
    w.segment("AK9", &ak9);
    status == "A"
}

/// IK502 for an error of a set's own envelope.
fn set_error_code(error: &EdiError) -> &'static str {
    match (error.segment.as_str(), error.element) {
        ("SE", Some(1)) => "4",
        ("SE", Some(2)) => "3",
        _ => "5",
    }
}

/// AK905 for an error of a group's trailer.
fn group_error_code(error: &EdiError) -> &'static str {
    match error.element {
        Some(2) => "4",
        _ => "5",
    }
}

/// A lone TA1 rejecting an input whose envelopes are broken.
fn rejected(input: &[u8], ours: &Envelope, error: &EdiError) -> Acknowledgment {
    let start = input
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let (control, date, time) = received_isa(input.get(start..).unwrap_or_default());
    let mut w = Writer::default();
    ours.open(&mut w, None);
    w.segment("TA1", &[&control, &date, &time, "R", note_code(error)]);
    ours.close(&mut w, None);
    Acknowledgment {
        interchange: w.text,
        envelope_accepted: false,
        accepted: false,
    }
}

/// IK3 and IK4 segments for the errors of one set, grouped by segment.
fn write_errors(
    w: &mut Writer,
    document: &Document,
    st: usize,
    tree: &loops::Loop,
    errors: &[EdiError],
) {
    let mut written = 0;
    let mut last_segment = None;
    for error in errors {
        let key = (error.position, error.segment.clone());
        if last_segment.as_ref() != Some(&key) {
            if written == MAX_SEGMENT_ERRORS {
                break;
            }
            written += 1;
            last_segment = Some(key);
            // Position in the set: ST is 1.
            let in_set = (error.position + 1).saturating_sub(st + 1).max(1);
            let loop_id = loop_of(tree, error.position.saturating_sub(1)).unwrap_or("");
            let (segment_id, code) = match error.kind {
                ErrorKind::MissingSegment => (segment_id_of(&error.segment), "3"),
                ErrorKind::UnexpectedSegment if error.element.is_none() => {
                    (error.segment.clone(), "2")
                }
                _ => (error.segment.clone(), "8"),
            };
            let loop_id = if loop_id == "HEADER" { "" } else { loop_id };
            w.segment("IK3", &[&segment_id, &in_set.to_string(), loop_id, code]);
        }
        if let Some(element) = error.element {
            let position = match error.component {
                Some(c) => format!("{element}:{c}"),
                None => element.to_string(),
            };
            let code = match error.kind {
                ErrorKind::MissingElement => "1",
                ErrorKind::InvalidDate => "8",
                ErrorKind::Imbalance => "I12",
                _ => "7",
            };
            let bad = bad_value(document, error);
            w.segment("IK4", &[&position, "", code, &bad]);
        }
    }
}

/// `REF*F8` names segment REF.
fn segment_id_of(text: &str) -> String {
    text.split('*').next().unwrap_or_default().to_owned()
}

/// The offending value, cleaned for X12, for IK404.
fn bad_value(document: &Document, error: &EdiError) -> String {
    let Some(element) = error.element else {
        return String::new();
    };
    if error.position == 0 || error.position > document.len() {
        return String::new();
    }
    let segment = document.segment(error.position - 1);
    let value = match error.component {
        Some(c) => segment.component(element, c),
        None => segment.element(element),
    };
    clean(value).chars().take(99).collect()
}

/// ISA13, ISA09 and ISA10 of what was received, as far as they can be read.
fn received_isa(isa: &[u8]) -> (String, String, String) {
    let field = |range: std::ops::Range<usize>, digits: usize| {
        isa.get(range)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .filter(|t| t.len() == digits && t.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or_else(|| "0".repeat(digits))
    };
    match Delimiters::from_isa(isa) {
        Ok(_) => (field(90..99, 9), field(70..76, 6), field(77..81, 4)),
        Err(_) => ("000000000".into(), "000000".into(), "0000".into()),
    }
}

/// TA105 for an envelope error.
fn note_code(error: &EdiError) -> &'static str {
    match (error.segment.as_str(), error.element) {
        ("IEA", Some(2)) => "001",
        ("IEA", Some(1)) => "021",
        ("ISA", Some(13)) => "018",
        ("ISA", Some(12)) => "017",
        ("ISA", Some(15)) => "020",
        ("ISA", _) => "022",
        ("IEA", _) => "023",
        _ if error.position == 0 => "023",
        _ => "024",
    }
}

/// A received 999: per group its AK9 status, per set its IK5 status and errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received999 {
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStatus {
    /// AK102: the acknowledged group's control number.
    pub group_control: String,
    /// AK901: A, E, M, P, R, W or X.
    pub status: String,
    pub sets: Vec<SetStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetStatus {
    /// AK202.
    pub set_control: String,
    /// IK501.
    pub status: String,
    /// One line per IK3/IK4: `CLM (segment 23, loop 2300): element 2: code I12 (value 130)`.
    pub errors: Vec<String>,
}

/// Reads every 999 of a parsed input.
pub fn read_999(parsed: &crate::Parsed) -> Result<Received999, EdiError> {
    let document = &parsed.document;
    let mut received = Received999::default();
    for (_, set) in parsed.sets() {
        let st = document.segment(set.st);
        if st.element(1) != "999" {
            return Err(st.element_error(1, format!("a {} is not a 999", st.element(1))));
        }
        let mut group: Option<GroupStatus> = None;
        let mut current: Option<SetStatus> = None;
        let mut segment_text = String::new();
        for index in set.body() {
            let segment = document.segment(index);
            match segment.id {
                "AK1" => {
                    group = Some(GroupStatus {
                        group_control: segment.element(2).to_owned(),
                        ..Default::default()
                    });
                }
                "AK2" => {
                    current = Some(SetStatus {
                        set_control: segment.element(2).to_owned(),
                        ..Default::default()
                    });
                }
                "IK3" => {
                    segment_text = format!(
                        "{} (segment {}, loop {})",
                        segment.element(1),
                        segment.element(2),
                        segment.element(3)
                    );
                    if let Some(set) = current.as_mut() {
                        set.errors.push(format!(
                            "{segment_text}: segment error {}",
                            segment.element(4)
                        ));
                    }
                }
                "IK4" => {
                    if let Some(set) = current.as_mut() {
                        set.errors.push(format!(
                            "{segment_text}: element {}: error {} (value '{}')",
                            segment.element(1),
                            segment.element(3),
                            segment.element(4)
                        ));
                    }
                }
                "IK5" => {
                    let mut set = current
                        .take()
                        .ok_or_else(|| segment.error("IK5 without AK2"))?;
                    set.status = segment.element(1).to_owned();
                    group
                        .as_mut()
                        .ok_or_else(|| segment.error("IK5 without AK1"))?
                        .sets
                        .push(set);
                }
                "AK9" => {
                    let mut done = group
                        .take()
                        .ok_or_else(|| segment.error("AK9 without AK1"))?;
                    done.status = segment.element(1).to_owned();
                    received.groups.push(done);
                }
                _ => {}
            }
        }
    }
    Ok(received)
}
