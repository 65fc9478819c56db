//! FHIR XML <-> JSON: round trips, a hand-written sample, and the errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure
#![allow(clippy::too_many_lines)] // a test reads as one story

use fhir_model::xml::{json_to_xml, xml_to_json};
use serde_json::{Value, json};

/// JSON -> XML (compact and pretty) -> JSON gives the same JSON.
fn round_trip(resource: &Value) -> String {
    let xml = json_to_xml(resource, false).expect("json_to_xml");
    let back = xml_to_json(&xml).unwrap_or_else(|e| panic!("xml_to_json: {e}\n{xml}"));
    assert_eq!(&back, resource, "compact round trip\n{xml}");
    let pretty = json_to_xml(resource, true).expect("json_to_xml pretty");
    let back = xml_to_json(&pretty).unwrap_or_else(|e| panic!("xml_to_json: {e}\n{pretty}"));
    assert_eq!(&back, resource, "pretty round trip\n{pretty}");
    xml
}

fn error_of(xml: &str) -> fhir_model::xml::XmlError {
    match xml_to_json(xml) {
        Ok(json) => panic!("expected an error, got {json}"),
        Err(e) => e,
    }
}

const NS: &str = r#"xmlns="http://hl7.org/fhir""#;

#[test]
fn patient_with_primitive_extensions_round_trips() {
    let patient = json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "3", "lastUpdated": "2024-01-02T03:04:05.678Z"},
        "extension": [{
            "url": "http://example.org/ext/nested",
            "extension": [
                {"url": "a", "valueCode": "x"},
                {"url": "b", "valueBoolean": false}
            ]
        }],
        "active": true,
        "name": [{
            "id": "n1",
            "use": "official",
            "family": "Dupont",
            "_family": {"extension": [{"url": "http://example.org/own-prefix", "valueString": "du"}]},
            "given": ["Jean", null, "Marie"],
            "_given": [
                null,
                {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}]},
                {"id": "g3"}
            ]
        }],
        "gender": "male",
        "birthDate": "1974-12-25",
        "_birthDate": {
            "id": "bd",
            "extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00"
            }]
        },
        "deceasedBoolean": false,
        "multipleBirthInteger": 2,
        "contact": [{"id": "c1", "name": {"family": "Durand"}}]
    });
    let xml = round_trip(&patient);
    // Element.id is an attribute, a resource's id an element, Extension.url an attribute.
    assert!(xml.contains(r#"<id value="p1"/>"#), "{xml}");
    assert!(xml.contains(r#"<name id="n1">"#), "{xml}");
    assert!(xml.contains(r#"<contact id="c1">"#), "{xml}");
    assert!(
        xml.contains(r#"<extension url="http://example.org/ext/nested">"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<birthDate id="bd" value="1974-12-25"><extension"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<given value="Jean"/><given><extension"#),
        "{xml}"
    );
    assert!(xml.contains(r#"<given id="g3" value="Marie"/>"#), "{xml}");
    assert!(xml.contains(r#"<active value="true"/>"#), "{xml}");
    assert!(
        xml.contains(r#"<multipleBirthInteger value="2"/>"#),
        "{xml}"
    );
}

#[test]
fn output_follows_definition_order() {
    // JSON keys in a scrambled order; XML must follow the definitions.
    let patient = json!({
        "birthDate": "2000-01-01",
        "name": [{"given": ["A"], "family": "B", "use": "usual"}],
        "gender": "female",
        "id": "x",
        "resourceType": "Patient",
        "active": false
    });
    let xml = json_to_xml(&patient, false).unwrap();
    assert_eq!(
        xml,
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<Patient xmlns="http://hl7.org/fhir"><id value="x"/><active value="false"/>"#,
            r#"<name><use value="usual"/><family value="B"/><given value="A"/></name>"#,
            r#"<gender value="female"/><birthDate value="2000-01-01"/></Patient>"#
        )
    );
    assert_eq!(xml_to_json(&xml).unwrap(), patient);
}

#[test]
fn pretty_output_indents() {
    let patient = json!({"resourceType": "Patient", "name": [{"family": "B"}]});
    let xml = json_to_xml(&patient, true).unwrap();
    assert_eq!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Patient xmlns=\"http://hl7.org/fhir\">\n  \
         <name>\n    <family value=\"B\"/>\n  </name>\n</Patient>\n"
    );
    let empty = json!({"resourceType": "Patient"});
    assert!(
        json_to_xml(&empty, false)
            .unwrap()
            .ends_with(r#"<Patient xmlns="http://hl7.org/fhir"/>"#)
    );
    round_trip(&empty);
}

#[test]
fn contained_resources_round_trip() {
    let observation = json!({
        "resourceType": "Observation",
        "id": "o1",
        "contained": [
            {"resourceType": "Patient", "id": "p", "name": [{"family": "Contained"}]},
            {"resourceType": "Practitioner", "id": "dr", "active": true}
        ],
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": "#p"},
        "performer": [{"reference": "#dr"}]
    });
    let xml = round_trip(&observation);
    assert!(
        xml.contains(r#"<contained><Patient><id value="p"/>"#),
        "contained resources carry no xmlns of their own: {xml}"
    );
}

#[test]
fn narrative_div_round_trips() {
    let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p class=\"x\">Tom &amp; Jerry &lt;3 \
               <b>bold <i>both</i></b><br/>caf\u{e9} &#169; &quot;q&quot;</p>\n  <!-- note -->\
               <table><tr><td>1</td></tr></table></div>";
    let patient = json!({
        "resourceType": "Patient",
        "text": {"status": "generated", "div": div}
    });
    let xml = round_trip(&patient);
    assert!(xml.contains(div), "{xml}");
    // Written in pretty mode, the div's own text is kept as is.
    let back = xml_to_json(&json_to_xml(&patient, true).unwrap()).unwrap();
    assert_eq!(back["text"]["div"], div);
}

#[test]
fn div_without_namespace_gets_it() {
    let patient = json!({
        "resourceType": "Patient",
        "text": {"status": "generated", "div": "<div><p>x</p></div>"}
    });
    let xml = json_to_xml(&patient, false).unwrap();
    assert!(
        xml.contains(r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>"#),
        "{xml}"
    );
    // In XML, a div inheriting the namespace or using a prefix becomes the JSON form.
    let xml = format!(
        r#"<Patient {NS} xmlns:h="http://www.w3.org/1999/xhtml"><text><status value="generated"/><h:div class="c"><h:p>a &amp; <h:b>b</h:b></h:p><h:br/></h:div></text></Patient>"#
    );
    let json = xml_to_json(&xml).unwrap();
    assert_eq!(
        json["text"]["div"],
        r#"<div xmlns="http://www.w3.org/1999/xhtml" class="c"><p>a &amp; <b>b</b></p><br/></div>"#
    );
    let xml = r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"/></text></Patient>"#;
    assert_eq!(
        xml_to_json(xml).unwrap()["text"]["div"],
        r#"<div xmlns="http://www.w3.org/1999/xhtml"/>"#
    );
}

#[test]
fn bad_divs_are_refused_when_writing() {
    for div in [
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>unclosed</div>",
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"></div><script/>",
        "<p xmlns=\"http://www.w3.org/1999/xhtml\">not a div</p>",
        "<div xmlns=\"http://example.org\">wrong namespace</div>",
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">&nbsp;</div>",
        "just text",
        "",
    ] {
        let patient =
            json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
        let error = json_to_xml(&patient, false).unwrap_err();
        assert_eq!(
            error.expression.as_deref(),
            Some("Patient.text.div"),
            "{div}: {error:?}"
        );
    }
}

#[test]
fn choice_types_and_decimals_round_trip() {
    let quantity = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "effectivePeriod": {"start": "2024-01-01", "end": "2024-01-02"},
        "valueQuantity": {
            "value": serde_json::from_str::<serde_json::Number>("72.50").unwrap(),
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg"
        },
        "component": [
            {"code": {"text": "a"}, "valueString": "hello"},
            {"code": {"text": "b"}, "valueInteger": -3},
            {"code": {"text": "c"}, "valueBoolean": true},
            {"code": {"text": "d"}, "valueRange": {"low": {"value": 1e-3}, "high": {"value": 1.0e10}}}
        ]
    });
    let xml = round_trip(&quantity);
    assert!(
        xml.contains(r#"<valueQuantity><value value="72.50"/>"#),
        "{xml}"
    );
    assert!(xml.contains(r#"<valueString value="hello"/>"#), "{xml}");
    let back = xml_to_json(&xml).unwrap();
    assert_eq!(back["valueQuantity"]["value"].to_string(), "72.50");
    assert!(back["component"][1]["valueInteger"].is_i64());
    assert!(back["component"][2]["valueBoolean"].is_boolean());
}

#[test]
fn decimals_keep_their_text() {
    let xml = format!(
        r#"<Observation {NS}><status value="final"/><code><text value="t"/></code><valueQuantity><value value="0.010"/></valueQuantity><component><code><text value="c"/></code><valueQuantity><value value="1.50E+3"/></valueQuantity></component></Observation>"#
    );
    let json = xml_to_json(&xml).unwrap();
    assert_eq!(json["valueQuantity"]["value"].to_string(), "0.010");
    assert_eq!(
        json["component"][0]["valueQuantity"]["value"].to_string(),
        "1.50E+3"
    );
    let again = json_to_xml(&json, false).unwrap();
    assert!(
        again.contains(r#"<value value="0.010"/>"#)
            && again.contains(r#"<value value="1.50E+3"/>"#)
    );
}

#[test]
fn bundle_with_resources_round_trips() {
    let bundle = json!({
        "resourceType": "Bundle",
        "id": "b",
        "type": "transaction-response",
        "total": 2,
        "link": [{"relation": "self", "url": "http://example.org/fhir/Patient"}],
        "entry": [
            {
                "fullUrl": "http://example.org/fhir/Patient/1",
                "resource": {"resourceType": "Patient", "id": "1", "active": true},
                "search": {"mode": "match", "score": 0.50},
                "response": {
                    "status": "201 Created",
                    "outcome": {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "information", "code": "informational", "diagnostics": "ok"}]
                    }
                }
            },
            {
                "link": [{"relation": "alternate", "url": "http://example.org/x"}],
                "resource": {
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "p", "resource": {"resourceType": "Patient", "id": "2"}},
                        {"name": "q", "part": [{"name": "r", "valueDecimal": 1.10}]}
                    ]
                }
            }
        ]
    });
    let xml = round_trip(&bundle);
    assert!(
        xml.contains(r#"<resource><Patient><id value="1"/>"#),
        "{xml}"
    );
    assert!(xml.contains(r#"<outcome><OperationOutcome>"#), "{xml}");
    assert!(xml.contains(r#"<total value="2"/>"#), "{xml}");
}

#[test]
fn questionnaire_nested_items_round_trip() {
    let questionnaire = json!({
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [{
            "linkId": "1",
            "type": "group",
            "item": [{
                "linkId": "1.1",
                "type": "choice",
                "enableWhen": [{"question": "0", "operator": "=", "answerBoolean": true}],
                "answerOption": [{"valueCoding": {"code": "y"}, "initialSelected": true}],
                "item": [{"linkId": "1.1.1", "type": "integer", "initial": [{"valueInteger": 0}]}]
            }]
        }]
    });
    let xml = round_trip(&questionnaire);
    assert!(xml.contains(r#"<item><linkId value="1.1.1"/>"#), "{xml}");
}

#[test]
fn timing_repeat_and_backbone_elements_round_trip() {
    let request = json!({
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "aspirin"},
        "subject": {"reference": "Patient/1"},
        "dosageInstruction": [{
            "sequence": 1,
            "timing": {
                "event": ["2024-01-01T08:00:00Z"],
                "repeat": {"id": "r", "frequency": 2, "period": 1.5, "periodUnit": "d", "boundsDuration": {"value": 10, "unit": "d"}}
            },
            "doseAndRate": [{"doseQuantity": {"value": 100, "unit": "mg"}}]
        }]
    });
    let xml = round_trip(&request);
    assert!(xml.contains(r#"<repeat id="r"><boundsDuration>"#), "{xml}");
}

#[test]
fn attribute_values_are_escaped() {
    let text = "a & b < c > d \" e ' f\nline\r\ttab  two  spaces é 😀";
    let patient = json!({"resourceType": "Patient", "name": [{"text": text}], "id": "x"});
    let xml = round_trip(&patient);
    assert!(
        xml.contains(r#"<text value="a &amp; b &lt; c &gt; d &quot; e ' f&#10;line&#13;&#9;tab  two  spaces é 😀"/>"#),
        "{xml}"
    );
    // XML cannot hold a control character even as a reference: one stored before the
    // validator refused them is served as U+FFFD rather than failing the answer.
    let control = json!({"resourceType": "Patient", "name": [{"text": "bell\u{7}"}]});
    let xml = json_to_xml(&control, false).expect("written");
    assert!(xml.contains("<text value=\"bell\u{fffd}\"/>"), "{xml}");
}

#[test]
fn hand_written_xml_parses_to_expected_json() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the root -->
<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://hl7.org/fhir ../patient.xsd">
  <id value="example"/>
  <?some-processing instruction?>
  <meta>
    <profile value="http://example.org/StructureDefinition/p"/>
  </meta>
  <text>
    <status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml"><p>Jim &amp; co</p></div>
  </text>
  <extension url="http://example.org/ext">
    <valueQuantity>
      <value value="72.50"/>
      <unit value="kg"/>
    </valueQuantity>
  </extension>
  <identifier>
    <system value="urn:oid:1.2.3"/>
    <value value="12345"/>
  </identifier>
  <active value="true"/>
  <name id="n">
    <family value="du March&#xE9;"/>
    <given value="Peter"/>
    <given>
      <extension url="http://hl7.org/fhir/StructureDefinition/data-absent-reason">
        <valueCode value="unknown"/>
      </extension>
    </given>
    <given id="g" value="Jim"/>
  </name>
  <telecom>
    <system value="phone"/>
    <value value="(03) 5555 6473"/>
    <rank value="1"/>
  </telecom>
  <birthDate value="1974-12-25"/>
  <deceasedBoolean value="false"/>
  <address>
    <line value="534 Erewhon St&#10;Floor 2"/>
    <line value="multi
line attribute"/>
  </address>
  <contained_is_not_here_but/>
</Patient>"#;
    // `contained_is_not_here_but` is unknown: strip it for the positive case.
    let error = error_of(xml);
    assert_eq!(
        error.expression.as_deref(),
        Some("Patient.contained_is_not_here_but")
    );
    let xml = xml.replace("  <contained_is_not_here_but/>\n", "");
    let expected = json!({
        "resourceType": "Patient",
        "id": "example",
        "meta": {"profile": ["http://example.org/StructureDefinition/p"]},
        "text": {
            "status": "generated",
            "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Jim &amp; co</p></div>"
        },
        "extension": [{
            "url": "http://example.org/ext",
            "valueQuantity": {"value": serde_json::from_str::<serde_json::Number>("72.50").unwrap(), "unit": "kg"}
        }],
        "identifier": [{"system": "urn:oid:1.2.3", "value": "12345"}],
        "active": true,
        "name": [{
            "id": "n",
            "family": "du Marché",
            "given": ["Peter", null, "Jim"],
            "_given": [
                null,
                {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]},
                {"id": "g"}
            ]
        }],
        "telecom": [{"system": "phone", "value": "(03) 5555 6473", "rank": 1}],
        "birthDate": "1974-12-25",
        "deceasedBoolean": false,
        "address": [{"line": ["534 Erewhon St\nFloor 2", "multi line attribute"]}]
    });
    let json = xml_to_json(&xml).unwrap();
    assert_eq!(json, expected);
    // The key order of the JSON follows the XML: resourceType first.
    let keys: Vec<_> = json.as_object().unwrap().keys().take(3).collect();
    assert_eq!(keys, ["resourceType", "id", "meta"]);
    round_trip(&json);
}

#[test]
fn only_extension_primitives_parse() {
    let xml = format!(
        r#"<Patient {NS}><birthDate><extension url="u"><valueCode value="unknown"/></extension></birthDate><name><given id="a"/><given id="b"/></name></Patient>"#
    );
    let json = xml_to_json(&xml).unwrap();
    assert_eq!(
        json,
        json!({
            "resourceType": "Patient",
            "_birthDate": {"extension": [{"url": "u", "valueCode": "unknown"}]},
            "name": [{"_given": [{"id": "a"}, {"id": "b"}]}]
        })
    );
    round_trip(&json);
}

#[test]
fn fhir_namespace_may_use_a_prefix() {
    let xml = r#"<f:Patient xmlns:f="http://hl7.org/fhir"><f:id value="x"/><f:active value="true"/></f:Patient>"#;
    assert_eq!(
        xml_to_json(xml).unwrap(),
        json!({"resourceType": "Patient", "id": "x", "active": true})
    );
}

#[test]
fn errors_name_the_problem() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><active value="true"></Patient>"#,
            "malformed XML",
            Some("Patient.active"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/>"#,
            "unexpected end",
            Some("Patient"),
        ),
        ("", "no root element", None),
        ("not xml at all", "unexpected content", None),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><foo value="x"/></Patient>"#,
            "unknown element `foo`",
            Some("Patient.foo"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><name><foo/></name></Patient>"#,
            "unknown element `foo`",
            Some("Patient.name[0].foo"),
        ),
        (
            r#"<Patient xmlns="http://example.org"><active value="true"/></Patient>"#,
            "not in the FHIR namespace",
            None,
        ),
        (
            r#"<Patient><active value="true"/></Patient>"#,
            "not in the FHIR namespace",
            None,
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><active xmlns="http://example.org" value="true"/></Patient>"#,
            "not in the FHIR namespace",
            Some("Patient.active"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>"#,
            "invalid boolean `yes`",
            Some("Patient.active"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><multipleBirthInteger value="2.5"/></Patient>"#,
            "invalid integer",
            Some("Patient.multipleBirthInteger"),
        ),
        (
            r#"<Observation xmlns="http://hl7.org/fhir"><valueQuantity><value value="1,5"/></valueQuantity></Observation>"#,
            "invalid decimal",
            Some("Observation.valueQuantity.value"),
        ),
        (
            r#"<Observation xmlns="http://hl7.org/fhir"><valueQuantity><value value=" 1"/></valueQuantity></Observation>"#,
            "invalid decimal",
            Some("Observation.valueQuantity.value"),
        ),
        (
            "<!DOCTYPE Patient [<!ENTITY a \"aaaa\">]><Patient xmlns=\"http://hl7.org/fhir\"/>",
            "DOCTYPE",
            None,
        ),
        (
            r#"<Foo xmlns="http://hl7.org/fhir"/>"#,
            "not a FHIR resource type",
            None,
        ),
        (
            r#"<DomainResource xmlns="http://hl7.org/fhir"/>"#,
            "not a FHIR resource type",
            None,
        ),
        (
            r#"<HumanName xmlns="http://hl7.org/fhir"/>"#,
            "not a FHIR resource type",
            None,
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"/><Patient xmlns="http://hl7.org/fhir"/>"#,
            "after the root",
            None,
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir">text</Patient>"#,
            "text content",
            Some("Patient"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><gender value="female"/></Patient>"#,
            "more than once",
            Some("Patient.gender"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><gender/></Patient>"#,
            "neither a value nor extensions",
            Some("Patient.gender"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><gender valu="male"/></Patient>"#,
            "unexpected attribute `valu`",
            Some("Patient.gender"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir" id="x"/>"#,
            "unexpected attribute `id`",
            Some("Patient"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><name><id value="x"/></name></Patient>"#,
            "must be an XML attribute",
            Some("Patient.name[0].id"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><extension><url value="x"/></extension></Patient>"#,
            "must be an XML attribute",
            Some("Patient.extension[0].url"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><gender value="male"><foo/></gender></Patient>"#,
            "only extension",
            Some("Patient.gender.foo"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><contained/></Patient>"#,
            "container is empty",
            Some("Patient.contained[0]"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><contained><Patient/><Patient/></contained></Patient>"#,
            "more than one resource",
            Some("Patient.contained[0]"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><contained><Foo/></contained></Patient>"#,
            "not a FHIR resource type",
            Some("Patient.contained[0]"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div>x</div></text></Patient>"#,
            "XHTML element",
            Some("Patient.text.div"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><text><div xmlns="http://www.w3.org/1999/xhtml">&nbsp;</div></text></Patient>"#,
            "entity",
            Some("Patient.text.div"),
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><name><family value="&bogus;"/></name></Patient>"#,
            "malformed XML",
            Some("Patient.name[0].family"),
        ),
    ];
    for (xml, message, expression) in cases {
        let error = error_of(xml);
        assert!(error.message.contains(message), "{xml}: {error:?}");
        assert_eq!(error.expression.as_deref(), *expression, "{xml}: {error:?}");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = |n: usize| {
        let mut xml = String::from(r#"<Patient xmlns="http://hl7.org/fhir">"#);
        for _ in 0..n {
            xml.push_str(r#"<extension url="u">"#);
        }
        for _ in 0..n {
            xml.push_str("</extension>");
        }
        xml.push_str("</Patient>");
        xml
    };
    let json = xml_to_json(&deep(100)).unwrap();
    json_to_xml(&json, true).unwrap();
    let error = error_of(&deep(100_000));
    assert!(error.message.contains("deeper"), "{error:?}");
    // The writer bounds JSON built by hand the same way.
    let mut extension = json!({"url": "u"});
    for _ in 0..1000 {
        let mut outer = serde_json::Map::new();
        outer.insert("url".into(), Value::from("u"));
        outer.insert("extension".into(), Value::Array(vec![extension]));
        extension = Value::Object(outer);
    }
    let mut patient = json!({"resourceType": "Patient"});
    patient["extension"] = Value::Array(vec![extension]);
    assert!(
        json_to_xml(&patient, false)
            .unwrap_err()
            .message
            .contains("deeper")
    );
    drop_deep(patient);
}

/// Drops a deeply nested value without recursing (serde_json's drop recurses).
fn drop_deep(value: Value) {
    let mut stack = vec![value];
    while let Some(mut value) = stack.pop() {
        match &mut value {
            Value::Array(items) => stack.append(items),
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    if let Some(item) = map.remove(&key) {
                        stack.push(item);
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn writer_refuses_what_xml_cannot_carry() {
    let cases = [
        (
            json!({"resourceType": "Patient", "foo": 1}),
            "unknown element `foo`",
            Some("Patient"),
        ),
        (
            json!({"resourceType": "Patient", "name": [{"foo": 1}]}),
            "unknown element `foo`",
            Some("Patient.name[0]"),
        ),
        (
            json!({"resourceType": "Patient", "_name": {}}),
            "only allowed on a primitive",
            Some("Patient.name"),
        ),
        (
            json!({"resourceType": "Patient", "name": [{"_id": {}}]}),
            "unknown element `_id`",
            Some("Patient.name[0]"),
        ),
        (
            json!({"resourceType": "Nope"}),
            "not a FHIR resource type",
            None,
        ),
        (json!({"id": "x"}), "resourceType is missing", None),
        (json!([1]), "must be a JSON object", None),
        (
            json!({"resourceType": "Patient", "contained": [{"id": "x"}]}),
            "resourceType is missing",
            Some("Patient.contained[0]"),
        ),
        (
            json!({"resourceType": "Patient", "_birthDate": {"foo": 1}}),
            "unknown element `_birthDate.foo`",
            Some("Patient.birthDate"),
        ),
    ];
    for (json, message, expression) in cases {
        let error = json_to_xml(&json, false).unwrap_err();
        assert!(error.message.contains(message), "{json}: {error:?}");
        assert_eq!(error.expression.as_deref(), expression, "{json}: {error:?}");
    }
}

#[test]
fn hostile_input_never_panics() {
    let patient = json!({
        "resourceType": "Patient",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a &amp; b</p></div>"},
        "contained": [{"resourceType": "Patient", "id": "c"}],
        "name": [{"given": ["a", null], "_given": [null, {"id": "x"}]}],
        "extension": [{"url": "u", "valueDecimal": 1.5}]
    });
    let xml = json_to_xml(&patient, false).unwrap();
    // Every truncation and a few byte substitutions parse or fail, never panic.
    for end in (0..xml.len()).filter(|&i| xml.is_char_boundary(i)) {
        let _ = xml_to_json(&xml[..end]);
        for replacement in ["<", ">", "\"", "&", "/", "x", ""] {
            if let Some(next) = xml[end..].chars().next() {
                let mutated = format!(
                    "{}{replacement}{}",
                    &xml[..end],
                    &xml[end + next.len_utf8()..]
                );
                let _ = xml_to_json(&mutated);
            }
        }
    }
}

/// Round-trips every JSON file of the spec examples (or of FHIR_JSON_DIR), when the
/// folder exists.
#[test]
#[ignore = "manual check against /work/shared/data/fhir/spec-r4-examples"]
fn spec_examples_round_trip() {
    let dir = std::env::var("FHIR_JSON_DIR")
        .unwrap_or_else(|_| "/work/shared/data/fhir/spec-r4-examples".to_owned());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let (mut total, mut failures) = (0, Vec::new());
    for path in paths {
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(resource) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if resource.get("resourceType").is_none() {
            continue;
        }
        total += 1;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result =
            json_to_xml(&resource, true).and_then(|xml| xml_to_json(&xml).map(|v| (xml, v)));
        match result {
            Ok((_, back)) if back == resource => {}
            Ok((xml, back)) => failures.push(format!("{name}: differs\n{xml}\n{back}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    println!(
        "{} of {total} JSON files round-trip",
        total - failures.len()
    );
    for failure in &failures {
        println!("{failure}");
    }
    assert!(failures.is_empty());
}

/// Replaces every narrative `div` string by a placeholder (other tools re-serialize
/// XHTML) and every number by its `f64` value (JavaScript tools drop `105.00` to `105`).
fn normalized(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "div" {
                    *item = Value::String("<div/>".into());
                } else {
                    normalized(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalized),
        Value::Number(n) => *value = json!(n.as_f64()),
        _ => {}
    }
}

/// Parses XML written by another implementation (FHIR_XML_DIR/NAME.xml for each spec
/// example NAME.json) and compares with the JSON, narrative divs and decimal digits aside.
/// With FHIR_XML_OUT set, also writes this implementation's XML there, for comparison.
#[test]
#[ignore = "manual check against XML written by another implementation"]
fn foreign_xml_matches_spec_examples() {
    let Ok(xml_dir) = std::env::var("FHIR_XML_DIR") else {
        return;
    };
    let out_dir = std::env::var("FHIR_XML_OUT").ok();
    let dir = std::env::var("FHIR_JSON_DIR")
        .unwrap_or_else(|_| "/work/shared/data/fhir/spec-r4-examples".to_owned());
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    let (mut total, mut failures) = (0, 0);
    for path in paths {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let Ok(xml) = std::fs::read_to_string(format!("{xml_dir}/{stem}.xml")) else {
            continue;
        };
        total += 1;
        let mut expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if let Some(out_dir) = &out_dir {
            let mine = json_to_xml(&expected, false).unwrap();
            std::fs::write(format!("{out_dir}/{stem}.xml"), mine).unwrap();
        }
        match xml_to_json(&xml) {
            Ok(mut got) => {
                normalized(&mut got);
                normalized(&mut expected);
                if got != expected {
                    failures += 1;
                    println!("{stem}: differs\n{got}\n{expected}");
                }
            }
            Err(e) => {
                failures += 1;
                println!("{stem}: {e}");
            }
        }
    }
    println!("{} of {total} foreign XML files match", total - failures);
    assert_eq!(failures, 0);
}

/// Parses every XML file in FHIR_XML_INPUTS (e.g. the FHIRPath test inputs) and writes
/// the JSON to FHIR_JSON_OUT when set; then round-trips that JSON through XML.
#[test]
#[ignore = "manual check: parses a folder of FHIR XML files"]
fn parse_xml_inputs() {
    let Ok(dir) = std::env::var("FHIR_XML_INPUTS") else {
        return;
    };
    let out = std::env::var("FHIR_JSON_OUT").ok();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    let (mut total, mut failures) = (0, 0);
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".xml") else {
            continue;
        };
        total += 1;
        match xml_to_json(&std::fs::read_to_string(&path).unwrap()) {
            Ok(json) => {
                if let Some(out) = &out {
                    let text = serde_json::to_string_pretty(&json).unwrap();
                    std::fs::write(format!("{out}/{stem}.json"), text).unwrap();
                }
                round_trip(&json);
            }
            Err(e) => {
                failures += 1;
                println!("{name}: {e}");
            }
        }
    }
    println!("{} of {total} XML files parse", total - failures);
    assert_eq!(failures, 0);
}

/// Times both directions on a JSON file (FHIR_BENCH_FILE); run with `--release`.
#[test]
#[ignore = "manual timing"]
fn bench_file() {
    let Ok(path) = std::env::var("FHIR_BENCH_FILE") else {
        return;
    };
    let resource: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rounds = 20;
    let start = std::time::Instant::now();
    let mut xml = String::new();
    for _ in 0..rounds {
        xml = json_to_xml(&resource, false).unwrap();
    }
    let write = start.elapsed() / rounds;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        xml_to_json(&xml).unwrap();
    }
    let read = start.elapsed() / rounds;
    let json_len = serde_json::to_string(&resource).unwrap().len();
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        serde_json::from_str::<Value>(&serde_json::to_string(&resource).unwrap()).unwrap();
    }
    let json = start.elapsed() / rounds;
    println!(
        "{} bytes of XML ({json_len} of JSON): write {write:?}, read {read:?}; serde_json write+read {json:?}",
        xml.len()
    );
}
