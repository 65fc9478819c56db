//! `fhir-server edi bench`: how fast the X12 translators are, on one core, and how that
//! compares with pyx12 on the same files.
//!
//! It builds varied claims (1 to 12 lines, with and without a dependent) and writes their
//! 837Ps, timing the generation; writes a balanced 835 of the asked size and times
//! parsing it (envelopes, loops, FHIR, balancing). With `--pyx12`, it writes both files
//! to `--dir` and times `x12valid` on them, printing each ratio.

use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use edi::fhir::systems;

#[derive(Debug, Clone, Args)]
pub struct EdiBenchConfig {
    /// How many claims to generate.
    #[arg(long, default_value_t = 100_000)]
    pub claims: usize,
    /// Megabytes of 835 to read (as files of 1 MB).
    #[arg(long, default_value_t = 100)]
    pub remit_mb: usize,
    /// Also time pyx12's `x12valid` against our reading of the same files: an 837P file
    /// of 1,000 claims and a 2 MB 835, written to `--dir`.
    #[arg(long)]
    pub pyx12: bool,
    /// Where the `--pyx12` files are written.
    #[arg(long, default_value = "./data/edi-bench")]
    pub dir: std::path::PathBuf,
}

pub fn run(config: EdiBenchConfig) -> Result<(), String> {
    let envelope =
        fhir_server::ops::claim_submit::envelope_now("BENCHCLINIC", "CLEARINGHOUSE", Some(1), 'T');
    let bundles: Vec<Value> = (0..config.claims.min(1000)).map(claim_bundle).collect();
    let started = Instant::now();
    let mut bytes = 0;
    for n in 0..config.claims {
        let text = edi::claim837::generate(&bundles[n % bundles.len()], &envelope)
            .map_err(|p| format!("the benchmark claim does not generate: {p:?}"))?;
        bytes += text.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "837P generation: {} claims in {seconds:.2}s = {:.0} claims/s ({:.1} MB written)",
        config.claims,
        config.claims as f64 / seconds,
        bytes as f64 / 1e6
    );

    // 835s of 1 MB (a large payer's daily file), read `remit_mb` times: the rate of the
    // X12 reading (segments, envelopes, loop tree), and of the whole way to FHIR.
    let remit = remittance(1_000_000);
    let rounds = config.remit_mb.max(1);
    let started = Instant::now();
    let mut loops = 0;
    for _ in 0..rounds {
        let parsed = edi::parse(remit.as_bytes()).map_err(|e| e.to_string())?;
        for (_, set) in parsed.sets() {
            loops += edi::loops::build(&parsed.document, set.body(), edi::loops::LOOPS_835)
                .children
                .len();
        }
    }
    let read_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut claims = 0;
    for _ in 0..rounds {
        let parsed = edi::parse(remit.as_bytes()).map_err(|e| e.to_string())?;
        let remittances = edi::remit835::to_fhir(&parsed).map_err(|e| e.to_string())?;
        claims += remittances
            .iter()
            .map(|r| r.claim_responses.len())
            .sum::<usize>();
    }
    let seconds = started.elapsed().as_secs_f64();
    let mb = (remit.len() * rounds) as f64 / 1e6;
    println!(
        "835 reading: {mb:.0} MB ({rounds} files of 1 MB, {loops} loops) in {read_seconds:.2}s = {:.0} MB/s (segments, envelopes, loop tree)",
        mb / read_seconds
    );
    println!(
        "835 to FHIR: {mb:.0} MB ({claims} ClaimResponses) in {seconds:.2}s = {:.0} MB/s (with balancing, PaymentReconciliation and ClaimResponses as JSON)",
        mb / seconds
    );

    if config.pyx12 {
        pyx12(&config, &bundles, &envelope)?;
    }
    Ok(())
}

/// Times x12valid against our reading of the same files.
fn pyx12(
    config: &EdiBenchConfig,
    bundles: &[Value],
    envelope: &edi::Envelope,
) -> Result<(), String> {
    std::fs::create_dir_all(&config.dir).map_err(|e| e.to_string())?;
    // An 837P file of 1,000 claims (one interchange each), and a 2 MB 835.
    let mut claims_file = String::new();
    for (n, bundle) in bundles.iter().enumerate().take(1000) {
        let envelope = edi::Envelope {
            control_number: n as u32 + 1,
            ..envelope.clone()
        };
        claims_file
            .push_str(&edi::claim837::generate(bundle, &envelope).map_err(|p| format!("{p:?}"))?);
    }
    let small_remit = remittance(2_000_000);
    for (name, text, kind) in [
        ("claims.837", claims_file, "837"),
        ("remit.835", small_remit, "835"),
    ] {
        let path = config.dir.join(name);
        std::fs::write(&path, &text).map_err(|e| e.to_string())?;
        let ours = Instant::now();
        let parsed = edi::parse(text.as_bytes()).map_err(|e| e.to_string())?;
        if kind == "837" {
            for (_, set) in parsed.sets() {
                let problems = edi::claim837::validate(&parsed.document, set);
                if !problems.is_empty() {
                    return Err(format!("our check finds problems: {problems:?}"));
                }
            }
            edi::claim837::to_fhir(&parsed).map_err(|e| e.to_string())?;
        } else {
            edi::remit835::to_fhir(&parsed).map_err(|e| e.to_string())?;
        }
        let ours = ours.elapsed().as_secs_f64();
        let theirs = Instant::now();
        let output = std::process::Command::new("x12valid")
            .arg(&path)
            .output()
            .map_err(|e| format!("x12valid (pip install pyx12): {e}"))?;
        let theirs = theirs.elapsed().as_secs_f64();
        let report = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        let verdict = if report.contains(": OK") {
            "OK"
        } else {
            "not OK"
        };
        println!(
            "{name} ({:.1} MB): ours {ours:.3}s (parse, check, to FHIR), pyx12 {theirs:.1}s ({verdict}): pyx12 takes {:.0}x as long",
            text.len() as f64 / 1e6,
            theirs / ours.max(1e-9)
        );
    }
    Ok(())
}

/// A varied claim: 1 to 12 lines; every third for a dependent child.
fn claim_bundle(n: usize) -> Value {
    let lines = 1 + n % 12;
    let items: Vec<Value> = (1..=lines)
        .map(|i| {
            let code = ["99213", "99214", "97110", "90471"][i % 4];
            json!({"sequence": i,
                "productOrService": {"coding": [{"system": systems::CPT, "code": code}]},
                "modifier": if i % 3 == 0 { json!([{"coding": [{"code": "25"}]}]) } else { json!([]) },
                "quantity": {"value": 1 + i % 2},
                "net": {"value": 20 + i * 5, "currency": "USD"},
                "diagnosisSequence": [1 + i % 2],
                "servicedDate": format!("2026-11-{:02}", 1 + n % 28)})
        })
        .collect();
    let total: usize = (1..=lines).map(|i| 20 + i * 5).sum();
    let dependent = n.is_multiple_of(3);
    let mut entries = vec![
        json!({"resourceType": "Claim", "id": format!("c{n}"), "status": "active",
            "identifier": [{"system": systems::PATIENT_CONTROL_NUMBER, "value": format!("PCN{n}")}],
            "patient": {"reference": "Patient/p"}, "provider": {"reference": "Organization/o"},
            "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/v"}}],
            "diagnosis": [
                {"sequence": 1, "diagnosisCodeableConcept": {"coding": [{"system": systems::ICD10CM, "code": "J06.9"}]}},
                {"sequence": 2, "diagnosisCodeableConcept": {"coding": [{"system": systems::ICD10CM, "code": "R05.9"}]}}],
            "item": items, "total": {"value": total}}),
        json!({"resourceType": "Organization", "id": "o", "name": "Bench Clinic",
            "identifier": [{"system": systems::NPI, "value": "1234567893"}, {"system": systems::EIN, "value": "123456789"}],
            "telecom": [{"system": "phone", "value": "5550100000"}],
            "address": [{"line": ["1 Main St"], "city": "Salem", "state": "OR", "postalCode": "973011234"}]}),
        json!({"resourceType": "Organization", "id": "payer", "name": "Bench Payer", "identifier": [{"value": "BP01"}]}),
        json!({"resourceType": "Patient", "id": "p", "name": [{"family": format!("Family{n}"), "given": ["Pat"]}],
            "gender": "female", "birthDate": "2012-03-04",
            "address": [{"line": ["2 Elm St"], "city": "Salem", "state": "OR", "postalCode": "97302"}]}),
    ];
    let mut coverage = json!({"resourceType": "Coverage", "id": "v", "status": "active", "subscriberId": format!("M{n}"),
        "beneficiary": {"reference": "Patient/p"}, "payor": [{"reference": "Organization/payer"}]});
    if dependent {
        coverage["subscriber"] = json!({"reference": "Patient/parent"});
        coverage["relationship"] = json!({"coding": [{"code": "child"}]});
        entries.push(json!({"resourceType": "Patient", "id": "parent", "name": [{"family": format!("Family{n}"), "given": ["Parent"]}],
            "gender": "male", "birthDate": "1980-01-01"}));
    }
    entries.push(coverage);
    json!({"resourceType": "Bundle", "type": "collection",
        "entry": entries.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
}

/// A balanced 835 of about `size` bytes: claims of two lines with contractual and
/// patient-responsibility adjustments, and one provider adjustment.
fn remittance(size: usize) -> String {
    let mut body = String::with_capacity(size + 4096);
    let mut segments = 0;
    let mut paid_total: i64 = 0;
    let mut push = |body: &mut String, text: &str| {
        body.push_str(text);
        body.push_str("~\n");
        segments += 1;
    };
    let mut claims = String::with_capacity(size);
    let mut claim_segments = 0;
    let mut n = 0;
    while claims.len() < size {
        n += 1;
        let (a, b) = (100 + n % 50, 40 + n % 30);
        let (co_a, pr_a, co_b) = (20, 10, 5);
        let (paid_a, paid_b) = (a - co_a - pr_a, b - co_b);
        let paid = (paid_a + paid_b) as i64;
        paid_total += paid;
        for segment in [
            format!("CLP*PCN{n}*1*{}*{paid}*{pr_a}*12*PAYER{n}", a + b),
            format!("NM1*QC*1*FAMILY{n}*PAT****MI*M{n}"),
            format!("SVC*HC:99213*{a}*{paid_a}**1"),
            "DTM*472*20261115".to_owned(),
            format!("CAS*CO*45*{co_a}"),
            format!("CAS*PR*1*{pr_a}"),
            format!("AMT*B6*{}", a - co_a),
            format!("SVC*HC:97110*{b}*{paid_b}**1"),
            "DTM*472*20261115".to_owned(),
            format!("CAS*CO*45*{co_b}"),
        ] {
            claims.push_str(&segment);
            claims.push_str("~\n");
            claim_segments += 1;
        }
    }
    let adjustment = 12;
    push(&mut body, "ST*835*0001");
    push(
        &mut body,
        &format!(
            "BPR*I*{}*C*ACH*CCP*01*111000025*DA*1234*1512345678**01*111000026*DA*5678*20261201",
            paid_total - adjustment
        ),
    );
    push(&mut body, "TRN*1*BENCH-TRACE-1*1512345678");
    push(&mut body, "N1*PR*BENCH PAYER");
    push(&mut body, "N3*1 PAYER WAY");
    push(&mut body, "N4*DALLAS*TX*75201");
    push(&mut body, "PER*BL*EDI*TE*5550109999");
    push(&mut body, "N1*PE*BENCH CLINIC*XX*1234567893");
    push(&mut body, "LX*1");
    body.push_str(&claims);
    push(
        &mut body,
        &format!("PLB*1234567893*20261231*WO:ADJ1*{adjustment}"),
    );
    let count = segments + claim_segments + 1;
    format!(
        "ISA*00*          *00*          *ZZ*BENCHPAYER     *ZZ*BENCHCLINIC    *261201*1200*^*00501*000000001*0*T*:~\nGS*HP*BENCHPAYER*BENCHCLINIC*20261201*1200*1*X*005010X221A1~\n{body}SE*{count}*0001~\nGE*1*1~\nIEA*1*000000001~\n"
    )
}
