//! `fhir-server edi ...`: the X12 translators from the command line.
//!
//! - `to-837 BUNDLE.json`: the 837P of the Claim in a Bundle (with the resources it
//!   references), or of each Bundle of an array of them (what `parse --to fhir` prints,
//!   so the two compose), one interchange each; each problem of a claim is listed and the
//!   exit status is 1;
//! - `parse FILE [--to fhir]`: the structure of an interchange (envelopes and loops), or
//!   its FHIR resources (837P claims, 835 remittances, 999 statuses) as JSON;
//! - `validate FILE`: envelopes, then the 837P implementation checks, the 835 balancing
//!   rules, or the reading of a 999; every error with its segment position and element;
//! - `ack FILE`: the TA1 and 999 acknowledging an inbound 837P.
//!
//! Every FILE (and BUNDLE) may be `-`, standard input, so the commands can be piped:
//! `fhir-server edi parse --to fhir f.837 | fhir-server edi to-837 -`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum EdiCommand {
    /// Write the 837P of the Claim in a FHIR Bundle (JSON) that also holds the resources it
    /// references, or of each Bundle in an array of them (what `parse --to fhir` prints),
    /// one interchange per Bundle with consecutive control numbers. `-` reads standard
    /// input.
    #[command(name = "to-837")]
    To837 {
        bundle: PathBuf,
        #[command(flatten)]
        envelope: EnvelopeArgs,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show an interchange's envelopes and loops, or (with --to fhir) its FHIR resources.
    Parse {
        file: PathBuf,
        /// `fhir`: print the FHIR resources as JSON.
        #[arg(long)]
        to: Option<String>,
    },
    /// Check an interchange (837P, 835 or 999); exit status 1 when it has errors.
    Validate { file: PathBuf },
    /// Write the TA1 and 999 acknowledging an inbound 837P.
    Ack {
        file: PathBuf,
        #[command(flatten)]
        envelope: EnvelopeArgs,
    },
}

/// Our side of an interchange we write.
#[derive(Debug, Clone, Args)]
pub struct EnvelopeArgs {
    /// ISA06/GS02: our id (the submitter's ETIN).
    #[arg(long, env = "FHIR_X12_SENDER_ID", default_value = "FHIRSERVER")]
    pub sender: String,
    /// ISA08/GS03: the receiver's id.
    #[arg(long, env = "FHIR_X12_RECEIVER_ID", default_value = "CLEARINGHOUSE")]
    pub receiver: String,
    /// ISA13 control number (default: from the clock).
    #[arg(long)]
    pub control: Option<u32>,
    /// `T` test or `P` production.
    #[arg(long, env = "FHIR_X12_USAGE", default_value = "T")]
    pub usage: char,
}

impl EnvelopeArgs {
    pub fn envelope(&self) -> edi::Envelope {
        crate::ops::claim_submit::envelope_now(
            &self.sender,
            &self.receiver,
            self.control,
            self.usage,
        )
    }
}

pub fn run(command: EdiCommand) -> Result<(), String> {
    match command {
        EdiCommand::To837 {
            bundle,
            envelope,
            out,
        } => to_837(&bundle, &envelope, out.as_deref()),
        EdiCommand::Parse { file, to } => parse(&file, to.as_deref()),
        EdiCommand::Validate { file } => validate(&file),
        EdiCommand::Ack { file, envelope } => ack(&file, &envelope),
    }
}

/// A file's bytes; `-` is standard input, so that the commands can be piped together.
fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|e| format!("standard input: {e}"))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn to_837(
    path: &std::path::Path,
    envelope: &EnvelopeArgs,
    out: Option<&std::path::Path>,
) -> Result<(), String> {
    let bytes = read(path)?;
    let input: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let text = interchanges_837(&input, &envelope.envelope())?;
    match out {
        Some(out) => std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// The 837P of one Bundle, or of each Bundle of an array (what `parse --to fhir` prints),
/// one interchange after the other, numbered on from `envelope`'s control number so that
/// none repeats. Every problem of every claim is listed (naming the Bundle, from 1, when
/// there is an array) before giving up, so one run shows all that needs fixing.
fn interchanges_837(input: &Value, envelope: &edi::Envelope) -> Result<String, String> {
    let (bundles, numbered) = match input {
        Value::Array(bundles) => (bundles.iter().collect::<Vec<_>>(), true),
        bundle => (vec![bundle], false),
    };
    if bundles.is_empty() {
        return Err("the input is an empty array: no Bundle to write".into());
    }
    let mut text = String::new();
    let mut problems = 0;
    for (n, bundle) in bundles.into_iter().enumerate() {
        let mut envelope = envelope.clone();
        envelope.control_number = nth_control(envelope.control_number, n);
        match edi::claim837::generate(bundle, &envelope) {
            Ok(interchange) => text.push_str(&interchange),
            Err(found) => {
                let bundle = if numbered {
                    format!("Bundle {}: ", n + 1)
                } else {
                    String::new()
                };
                for problem in &found {
                    eprintln!("  {bundle}{problem}");
                }
                problems += found.len();
            }
        }
    }
    if problems > 0 {
        return Err(format!(
            "the claims cannot be written as an 837P: {problems} problems"
        ));
    }
    Ok(text)
}

/// The `n`th (from 0) control number from `first`, within ISA13's 1 to 999,999,999.
fn nth_control(first: u32, n: usize) -> u32 {
    const MAX: u64 = 999_999_999;
    let next = (u64::from(first.max(1)) - 1 + n as u64) % MAX + 1;
    u32::try_from(next).unwrap_or(1)
}

/// The transaction set type of every set in the input (`837`, `835`, `999`).
fn set_types(parsed: &edi::Parsed) -> Vec<String> {
    parsed
        .sets()
        .map(|(_, set)| parsed.document.segment(set.st).element(1).to_owned())
        .collect()
}

fn parse(path: &std::path::Path, to: Option<&str>) -> Result<(), String> {
    let bytes = read(path)?;
    let parsed = edi::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    match to {
        None => {
            print_structure(&parsed);
            Ok(())
        }
        Some("fhir") => {
            let output = to_fhir(&parsed).map_err(|e| format!("{}: {e}", path.display()))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&output).unwrap_or_default()
            );
            Ok(())
        }
        Some(other) => Err(format!("--to {other}: the only target is 'fhir'")),
    }
}

/// The FHIR of every set: 837P claims as Bundles, 835 remittances as Bundles, 999s as
/// their statuses.
fn to_fhir(parsed: &edi::Parsed) -> Result<Value, edi::EdiError> {
    let types = set_types(parsed);
    let mut all = Vec::new();
    if types.iter().any(|t| t == "837") {
        all.extend(edi::claim837::to_fhir(parsed)?);
    }
    if types.iter().any(|t| t == "835") {
        for remittance in edi::remit835::to_fhir(parsed)? {
            let mut entries = vec![json!({"resource": remittance.payment})];
            entries.extend(
                remittance
                    .claim_responses
                    .into_iter()
                    .map(|c| json!({"resource": c.claim_response})),
            );
            all.push(json!({"resourceType": "Bundle", "type": "collection", "entry": entries}));
        }
    }
    if types.iter().any(|t| t == "999") {
        let received = edi::ack::read_999(parsed)?;
        all.push(json!(
            received
                .groups
                .iter()
                .map(|g| json!({
                    "group": g.group_control,
                    "status": g.status,
                    "sets": g.sets.iter().map(|s| json!({"set": s.set_control, "status": s.status, "errors": s.errors})).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        ));
    }
    Ok(Value::Array(all))
}

fn print_structure(parsed: &edi::Parsed) {
    let document = &parsed.document;
    for interchange in &parsed.interchanges {
        let isa = document.segment(interchange.isa);
        println!(
            "interchange {} from '{}' to '{}' ({} groups)",
            isa.element(13),
            isa.element(6).trim(),
            isa.element(8).trim(),
            interchange.groups.len()
        );
        for group in &interchange.groups {
            let gs = document.segment(group.gs);
            println!(
                "  group {} {} {} ({} sets)",
                gs.element(6),
                gs.element(1),
                gs.element(8),
                group.sets.len()
            );
            for set in &group.sets {
                let st = document.segment(set.st);
                println!(
                    "    set {} {} ({} segments)",
                    st.element(1),
                    st.element(2),
                    set.se - set.st + 1
                );
                let defs = match st.element(1) {
                    "837" => edi::loops::LOOPS_837P,
                    "835" => edi::loops::LOOPS_835,
                    "999" => edi::loops::LOOPS_999,
                    _ => continue,
                };
                let tree = edi::loops::build(document, set.body(), defs);
                print_loop(document, &tree, 3);
            }
        }
    }
}

fn print_loop(document: &edi::Document, l: &edi::loops::Loop, depth: usize) {
    let ids: Vec<&str> = l.segments.iter().map(|&i| document.segment(i).id).collect();
    println!("{}{}: {}", "  ".repeat(depth), l.id, ids.join(" "));
    for child in &l.children {
        print_loop(document, child, depth + 1);
    }
}

fn validate(path: &std::path::Path) -> Result<(), String> {
    let bytes = read(path)?;
    let name = path.display();
    let parsed = edi::parse(&bytes).map_err(|e| format!("{name}: {e}"))?;
    let mut errors: Vec<edi::EdiError> = Vec::new();
    for (_, set) in parsed.sets() {
        let st = parsed.document.segment(set.st);
        match st.element(1) {
            "837" => errors.extend(edi::claim837::validate(&parsed.document, set)),
            "835" | "999" => {}
            other => errors.push(st.element_error(
                1,
                format!("transaction set {other} is not one this server reads"),
            )),
        }
    }
    let types = set_types(&parsed);
    if types.iter().any(|t| t == "835") {
        errors.extend(edi::remit835::balance_errors(&parsed));
    }
    if types.iter().any(|t| t == "999")
        && let Err(error) = edi::ack::read_999(&parsed)
    {
        errors.push(error);
    }
    if errors.is_empty() {
        println!(
            "{name}: OK ({} transaction sets: {})",
            types.len(),
            types.join(", ")
        );
        return Ok(());
    }
    for error in &errors {
        println!("{name}: {error}");
    }
    Err(format!("{name}: {} errors", errors.len()))
}

fn ack(path: &std::path::Path, envelope: &EnvelopeArgs) -> Result<(), String> {
    let bytes = read(path)?;
    let acknowledgment = edi::ack::acknowledge_837(&bytes, &envelope.envelope());
    print!("{}", acknowledgment.interchange);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_numbers_go_on_and_wrap_within_isa13() {
        assert_eq!(nth_control(21, 0), 21);
        assert_eq!(nth_control(21, 1), 22);
        assert_eq!(nth_control(999_999_999, 1), 1);
        assert_eq!(nth_control(0, 0), 1);
        assert!((1..=999_999_999).contains(&nth_control(u32::MAX, 7)));
    }

    #[test]
    fn an_empty_array_is_refused() {
        let envelope = crate::ops::claim_submit::envelope_now("A", "B", Some(1), 'T');
        assert!(interchanges_837(&json!([]), &envelope).is_err());
        let error = interchanges_837(&json!([{"resourceType": "Bundle"}]), &envelope);
        assert!(error.is_err());
    }
}
