//! Any input through every reader of the crate: it may be refused, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = edi::parse(data) else {
        let _ = edi::ack::acknowledge_837(data, &envelope());
        return;
    };
    for (_, set) in parsed.sets() {
        let _ = edi::claim837::validate(&parsed.document, set);
        for defs in [edi::loops::LOOPS_837P, edi::loops::LOOPS_835, edi::loops::LOOPS_999] {
            let _ = edi::loops::build(&parsed.document, set.body(), defs);
        }
    }
    if let Ok(bundles) = edi::claim837::to_fhir(&parsed) {
        // What we read back must write again or say why.
        for bundle in &bundles {
            let _ = edi::claim837::generate(bundle, &envelope());
        }
    }
    let _ = edi::remit835::to_fhir(&parsed);
    let _ = edi::remit835::balance_errors(&parsed);
    let _ = edi::ack::read_999(&parsed);
    let _ = edi::ack::acknowledge_837(data, &envelope());
});

fn envelope() -> edi::Envelope {
    edi::Envelope {
        sender_id: "FUZZ".into(),
        receiver_id: "TARGET".into(),
        control_number: 1,
        date: "20261201".into(),
        time: "1200".into(),
        usage: 'T',
    }
}
