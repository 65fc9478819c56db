//! Formats over real HTTP: content negotiation (`_format`, `Accept`, `_pretty`, 406), reading
//! JSON and XML bodies (201, 400, 415), exact decimals, and the body size limit (413).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure

mod common;

use common::{Backend, JSON, Server, json, patient};
use serde_json::Value;

const XML: &str = "application/fhir+xml";

/// A Patient in FHIR XML.
const PATIENT_XML: &str = r#"<Patient xmlns="http://hl7.org/fhir">
  <identifier>
    <system value="http://example.org/mrn"/>
    <value value="xml-1"/>
  </identifier>
  <name>
    <family value="Chalmers"/>
    <given value="Peter"/>
    <given value="James"/>
  </name>
  <gender value="male"/>
  <birthDate value="1974-12-25"/>
</Patient>"#;

/// An Observation whose decimal has a trailing zero that must survive.
const OBSERVATION_XML: &str = r#"<Observation xmlns="http://hl7.org/fhir">
  <status value="final"/>
  <code>
    <text value="Body weight"/>
  </code>
  <valueQuantity>
    <value value="72.50"/>
    <unit value="kg"/>
  </valueQuantity>
</Observation>"#;

/// An answer's status, Content-Type and body text.
struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

impl Answer {
    async fn from(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.expect("body");
        Answer {
            status,
            content_type,
            text,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn is_json(&self) -> bool {
        self.content_type.starts_with("application/fhir+json")
    }

    fn is_xml(&self) -> bool {
        self.content_type.starts_with("application/fhir+xml")
    }

    /// Asserts an OperationOutcome in JSON with this status.
    fn assert_outcome(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        assert!(
            self.is_json(),
            "an OperationOutcome in JSON, got {}",
            self.content_type
        );
        let outcome = self.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
        outcome
    }
}

/// GET `url` with optional Accept header.
async fn get(server: &Server, url: &str, accept: Option<&str>) -> Answer {
    let mut request = server.client.get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    Answer::from(request.send().await.expect("GET answers")).await
}

/// POST `body` to `{base}/{resource_type}` with `content_type`.
async fn post(
    server: &Server,
    resource_type: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let response = server
        .client
        .post(format!("{}/{resource_type}", server.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST answers");
    Answer::from(response).await
}

/// Creates a Patient and returns its URL.
async fn patient_url(server: &Server) -> String {
    let created = server.create(&server.base, &patient("Format", "f-1")).await;
    format!(
        "{}/Patient/{}",
        server.base,
        created["id"].as_str().expect("id")
    )
}

/// The resource without the server's `id` and `meta`, for comparing content.
fn content(resource: &Value) -> Value {
    let mut resource = resource.clone();
    let object = resource.as_object_mut().expect("a resource object");
    object.shift_remove("id");
    object.shift_remove("meta");
    resource
}

async fn json_is_the_default(server: Server) {
    let url = patient_url(&server).await;
    let answer = get(&server, &url, None).await;
    assert_eq!(answer.status, 200);
    assert!(answer.is_json(), "Content-Type {}", answer.content_type);
    assert_eq!(answer.json()["name"][0]["family"], "Format");
    let answer = get(&server, &url, Some("*/*")).await;
    assert!(
        answer.is_json(),
        "*/* gives JSON, got {}",
        answer.content_type
    );
}
both!(json_is_the_default);

async fn xml_on_request(server: Server) {
    let url = patient_url(&server).await;
    for answer in [
        get(&server, &format!("{url}?_format=xml"), None).await,
        get(
            &server,
            &format!("{url}?_format=application/fhir%2Bxml"),
            None,
        )
        .await,
        // Unencoded, as the specification writes it: the `+` arrives as a space.
        get(
            &server,
            &format!("{url}?_format=application/fhir+xml"),
            None,
        )
        .await,
        get(&server, &url, Some(XML)).await,
    ] {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert!(answer.is_xml(), "Content-Type {}", answer.content_type);
        assert!(
            answer
                .text
                .contains(r#"<Patient xmlns="http://hl7.org/fhir">"#),
            "{}",
            answer.text
        );
        assert!(
            answer.text.contains(r#"<family value="Format"/>"#),
            "{}",
            answer.text
        );
    }
}
both!(xml_on_request);

async fn errors_and_bundles_follow_the_format(server: Server) {
    let url = patient_url(&server).await;
    let missing = get(
        &server,
        &format!("{}/Patient/missing", server.base),
        Some(XML),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert!(missing.is_xml(), "Content-Type {}", missing.content_type);
    assert!(
        missing
            .text
            .contains(r#"<OperationOutcome xmlns="http://hl7.org/fhir">"#),
        "{}",
        missing.text
    );

    let bundle = get(
        &server,
        &format!("{}/Patient?_format=xml&_pretty=true", server.base),
        None,
    )
    .await;
    assert_eq!(bundle.status, 200);
    assert!(bundle.is_xml());
    assert!(
        bundle
            .text
            .contains(r#"<Bundle xmlns="http://hl7.org/fhir">"#),
        "{}",
        bundle.text
    );
    assert!(
        bundle.text.contains("\n      <Patient>"),
        "indented, the resource wrapped: {}",
        bundle.text
    );
    assert!(
        bundle
            .text
            .contains(&format!(r#"<fullUrl value="{url}"/>"#)),
        "{}",
        bundle.text
    );
}
both!(errors_and_bundles_follow_the_format);

async fn format_parameter_overrides_accept(server: Server) {
    let url = patient_url(&server).await;
    let answer = get(&server, &format!("{url}?_format=json"), Some(XML)).await;
    assert_eq!(answer.status, 200);
    assert!(answer.is_json(), "Content-Type {}", answer.content_type);
    assert_eq!(answer.json()["name"][0]["family"], "Format");
}
both!(format_parameter_overrides_accept);

async fn pretty_json_is_indented(server: Server) {
    let url = patient_url(&server).await;
    let compact = get(&server, &url, None).await;
    assert!(
        !compact.text.contains('\n'),
        "compact by default: {}",
        compact.text
    );
    let pretty = get(&server, &format!("{url}?_pretty=true"), None).await;
    assert_eq!(pretty.status, 200);
    assert!(pretty.is_json());
    assert!(
        pretty.text.contains("\n  \"resourceType\": \"Patient\""),
        "{}",
        pretty.text
    );
    assert_eq!(
        pretty.json(),
        compact.json(),
        "pretty and compact are the same resource"
    );
}
both!(pretty_json_is_indented);

async fn unservable_formats_are_406(server: Server) {
    let url = patient_url(&server).await;
    get(&server, &url, Some("text/html"))
        .await
        .assert_outcome(406);
    get(&server, &format!("{url}?_format=html"), None)
        .await
        .assert_outcome(406);
    get(
        &server,
        &url,
        Some("application/fhir+json; fhirVersion=3.0"),
    )
    .await
    .assert_outcome(406);
    // The FHIR version we speak is fine.
    let answer = get(
        &server,
        &url,
        Some("application/fhir+json; fhirVersion=4.0"),
    )
    .await;
    assert_eq!(answer.status, 200);
}
both!(unservable_formats_are_406);

async fn create_from_xml_reads_back_in_both_formats(server: Server) {
    let created = post(&server, "Patient", XML, PATIENT_XML).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let url = format!("{}/Patient/{id}", server.base);

    let as_json = get(&server, &url, None).await.json();
    assert_eq!(as_json["name"][0]["family"], "Chalmers");
    assert_eq!(
        as_json["name"][0]["given"],
        serde_json::json!(["Peter", "James"])
    );
    assert_eq!(as_json["birthDate"], "1974-12-25");
    assert_eq!(as_json["identifier"][0]["value"], "xml-1");

    let as_xml = get(&server, &url, Some(XML)).await;
    assert!(as_xml.is_xml());
    for fragment in [
        r#"<family value="Chalmers"/>"#,
        r#"<given value="Peter"/>"#,
        r#"<given value="James"/>"#,
        r#"<birthDate value="1974-12-25"/>"#,
        &format!(r#"<id value="{id}"/>"#),
    ] {
        assert!(
            as_xml.text.contains(fragment),
            "{fragment} in {}",
            as_xml.text
        );
    }

    // The XML read back, created again, is the same content as the JSON read back.
    let again = post(&server, "Patient", XML, as_xml.text.clone()).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(content(&again.json()), content(&as_json));
}
both!(create_from_xml_reads_back_in_both_formats);

async fn xml_declaration_and_bom_are_accepted(server: Server) {
    let declared = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{PATIENT_XML}");
    let answer = post(
        &server,
        "Patient",
        "application/fhir+xml; charset=UTF-8",
        declared.clone(),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let with_bom = [b"\xEF\xBB\xBF".as_slice(), declared.as_bytes()].concat();
    let answer = post(&server, "Patient", XML, with_bom).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.json()["name"][0]["family"], "Chalmers");
}
both!(xml_declaration_and_bom_are_accepted);

async fn decimals_keep_their_precision(server: Server) {
    let created = post(&server, "Observation", XML, OBSERVATION_XML).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let url = format!("{}/Observation/{id}", server.base);

    let as_json = get(&server, &url, None).await;
    assert!(
        as_json.text.contains(r#""value":72.50"#),
        "{}",
        as_json.text
    );
    let pretty = get(&server, &format!("{url}?_pretty=true"), None).await;
    assert!(pretty.text.contains(r#""value": 72.50"#), "{}", pretty.text);
    let as_xml = get(&server, &url, Some(XML)).await;
    assert!(
        as_xml.text.contains(r#"<value value="72.50"/>"#),
        "{}",
        as_xml.text
    );

    // The same from a JSON body.
    let body = r#"{"resourceType":"Observation","status":"final","code":{"text":"Weight"},"valueQuantity":{"value":72.50,"unit":"kg"}}"#;
    let created = post(&server, "Observation", JSON, body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(
        created.text.contains(r#""value":72.50"#),
        "{}",
        created.text
    );
}
both!(decimals_keep_their_precision);

async fn unreadable_bodies_are_rejected(server: Server) {
    let body = patient("Plain", "p-1").to_string();
    post(&server, "Patient", "text/plain", body)
        .await
        .assert_outcome(415);

    post(
        &server,
        "Patient",
        XML,
        "<Patient xmlns=\"http://hl7.org/fhir\"><name>",
    )
    .await
    .assert_outcome(400);
    post(&server, "Patient", XML, "not xml at all")
        .await
        .assert_outcome(400);

    let outcome = post(
        &server,
        "Patient",
        JSON,
        "{\"resourceType\": \"Patient\",\n  \"gender\": }",
    )
    .await
    .assert_outcome(400);
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap_or("");
    assert!(
        diagnostics.contains("line 2") && diagnostics.contains("column"),
        "the position of the error: {diagnostics}"
    );

    let unknown =
        r#"<Patient xmlns="http://hl7.org/fhir"><foo value="1"/><gender value="male"/></Patient>"#;
    let outcome = post(&server, "Patient", XML, unknown)
        .await
        .assert_outcome(400);
    assert_eq!(
        common::issue_expressions(&outcome),
        vec!["Patient.foo"],
        "{outcome}"
    );

    let (status, bundle) = json(
        server
            .client
            .get(format!("{}/Patient", server.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bundle["total"], 0, "nothing was stored: {bundle}");
}
both!(unreadable_bodies_are_rejected);

/// POSTs `body` in HTTP/1.1 chunks (no Content-Length) over a raw connection; the status.
async fn post_chunked(server: &Server, path: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.root.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {JSON}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in body.as_bytes().chunks(500) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).expect("ASCII")
        ));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {answer}"))
}

async fn bodies_over_the_limit_are_413(backend: Backend) {
    let server = Server::start_with(backend, &["--max-body-bytes", "1000"], &[])
        .await
        .expect("the server starts");
    let mut resource = patient("Large", "l-1");
    resource["name"][0]["given"] = serde_json::json!(["x".repeat(1800)]);
    let body = resource.to_string();
    assert!(
        body.len() >= 1900 && body.len() <= 2100,
        "about 2,000 bytes: {}",
        body.len()
    );

    post(&server, "Patient", JSON, body.clone())
        .await
        .assert_outcome(413);

    // Without a Content-Length (chunked), the limit holds too.
    let status = post_chunked(&server, "/fhir/Patient", &body).await;
    assert_eq!(status, 413);

    // A body under the limit is fine.
    let small = post(
        &server,
        "Patient",
        JSON,
        patient("Small", "s-1").to_string(),
    )
    .await;
    assert_eq!(small.status, 201, "{}", small.text);
}
both_backends!(bodies_over_the_limit_are_413);

async fn summary_and_elements_apply_to_read_and_vread(server: Server) {
    let created = server
        .create(&server.base, &patient("Summary", "s-1"))
        .await;
    let url = format!(
        "{}/Patient/{}",
        server.base,
        created["id"].as_str().unwrap()
    );
    for read in [url.clone(), format!("{url}/_history/1")] {
        let answer = get(&server, &format!("{read}?_elements=gender"), None).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let resource = answer.json();
        assert_eq!(resource["gender"], "female", "{resource}");
        assert!(resource.get("name").is_none(), "{resource}");
        assert!(
            resource["meta"]["tag"][0]["code"] == "SUBSETTED",
            "{resource}"
        );

        let summary = get(&server, &format!("{read}?_summary=true"), None)
            .await
            .json();
        assert!(summary.get("name").is_some(), "name is a summary element");
        let text = get(&server, &format!("{read}?_summary=text&_format=xml"), None).await;
        assert!(
            text.is_xml() && !text.text.contains("Summary"),
            "{}",
            text.text
        );
    }
    let answer = get(&server, &format!("{url}?_summary=count"), None).await;
    answer.assert_outcome(400);
    let answer = get(&server, &format!("{url}?_summary=maybe"), None).await;
    answer.assert_outcome(400);
}
both!(summary_and_elements_apply_to_read_and_vread);

async fn paging_links_keep_the_format(server: Server) {
    for n in 0..3 {
        server
            .create(&server.base, &patient("Paged", &format!("p-{n}")))
            .await;
    }
    let first = get(
        &server,
        &format!("{}/Patient?_count=1&_format=json&_pretty=true", server.base),
        None,
    )
    .await;
    let bundle = first.json();
    let next = bundle["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .expect("a next link")
        .to_owned();
    assert!(
        next.contains("_format=json") && next.contains("_pretty=true"),
        "{next}"
    );
    let xml = get(
        &server,
        &format!("{}/Patient?_count=1&_format=xml", server.base),
        None,
    )
    .await;
    assert!(xml.is_xml());
    let next = xml
        .text
        .split("<relation value=\"next\"/>")
        .nth(1)
        .and_then(|rest| rest.split("<url value=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("a next link")
        .replace("&amp;", "&");
    let page_two = get(&server, &next, None).await;
    assert!(page_two.is_xml(), "page 2 of an XML search is XML: {next}");
    let history = get(
        &server,
        &format!("{}/_history?_count=1&_format=xml", server.base),
        None,
    )
    .await;
    assert!(history.text.contains("_format=xml"), "{}", history.text);
}
both!(paging_links_keep_the_format);
