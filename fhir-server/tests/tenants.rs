//! Tenants over real HTTP: creating them (admin API and CLI), unknown tenants, and
//! isolation: no read, search, history, write or delete in one tenant sees or touches
//! another tenant's resources.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure

mod common;

use common::{JSON, Server, json, patient};
use serde_json::{Value, json};

const MRN: &str = "http://example.org/mrn";

/// POSTs a tenant through the admin API; the status and body.
async fn post_tenant(server: &Server, body: Value) -> (u16, Value) {
    json(
        server
            .client
            .post(format!("{}/admin/tenants", server.root))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A request with a FHIR JSON body; the status and body.
async fn send(
    server: &Server,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = server.client.request(method, url);
    if let Some(body) = body {
        request = request.header("content-type", JSON).body(body.to_string());
    }
    json(request.send().await.expect("the server answers")).await
}

/// The ids of the resources in a Bundle's entries.
fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            entry["resource"]["id"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| {
                    entry["fullUrl"]
                        .as_str()
                        .and_then(|u| u.rsplit('/').next())
                        .map(str::to_owned)
                })
        })
        .collect()
}

async fn admin_api_creates_tenants(server: Server) {
    let (status, body) = post_tenant(&server, json!({"id": "acme", "name": "Acme"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_tenant(&server, json!({"id": "acme", "name": "Acme again"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    let (status, body) = post_tenant(&server, json!({"id": "default"})).await;
    assert_eq!(status, 409, "the default tenant exists: {body}");
    for bad in [
        json!({"id": "no spaces"}),
        json!({"id": ""}),
        json!({"id": "a/b"}),
        json!({"id": "x".repeat(65)}),
        json!({"name": "no id"}),
    ] {
        let (status, body) = post_tenant(&server, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    let (status, _) = server
        .get_json_url(&format!("{}/metadata", server.tenant_base("acme")))
        .await;
    assert_eq!(status, 200);
    server
        .create(&server.tenant_base("acme"), &patient("Acme", "acme-1"))
        .await;
}
both!(admin_api_creates_tenants);

async fn unknown_tenants_are_404(server: Server) {
    for url in [
        format!("{}/Patient", server.tenant_base("nope")),
        format!("{}/metadata", server.tenant_base("nope")),
    ] {
        let (status, body) = server.get_json_url(&url).await;
        assert_eq!(status, 404, "{url}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    let (status, body) = send(
        &server,
        reqwest::Method::POST,
        &format!("{}/Patient", server.tenant_base("nope")),
        Some(&patient("X", "x")),
    )
    .await;
    assert_eq!(status, 404, "{body}");
}
both!(unknown_tenants_are_404);

async fn cli_creates_tenants_seen_without_restart(server: Server) {
    let metadata = format!("{}/metadata", server.tenant_base("clinic2"));
    // Asked before it exists: 404, which must not be remembered.
    assert_eq!(server.get_json_url(&metadata).await.0, 404);

    let output = server.run_cli(&["tenant", "create", "clinic2", "--name", "Clinic Two"]);
    assert!(
        output.status.success(),
        "tenant create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(server.get_json_url(&metadata).await.0, 200);

    let again = server.run_cli(&["tenant", "create", "clinic2", "--name", "Clinic Two"]);
    assert!(!again.status.success(), "a second create fails");
    let invalid = server.run_cli(&["tenant", "create", "bad id", "--name", "X"]);
    assert!(!invalid.status.success(), "an invalid id is refused");
    // The admin API sees the CLI's tenant.
    assert_eq!(post_tenant(&server, json!({"id": "clinic2"})).await.0, 409);
}
both!(cli_creates_tenants_seen_without_restart);

/// Two tenants `a` and `b`, and `a`'s patient (server id), for the isolation tests.
struct Isolation {
    server: Server,
    a: String,
    b: String,
    /// `a`'s patient, as created.
    alice: Value,
    alice_id: String,
}

impl Isolation {
    async fn new(server: Server) -> Isolation {
        server.create_tenant("a").await;
        server.create_tenant("b").await;
        let a = server.tenant_base("a");
        let b = server.tenant_base("b");
        let alice = server.create(&a, &patient("Alice", "alice-1")).await;
        let alice_id = alice["id"].as_str().expect("id").to_owned();
        Isolation {
            server,
            a,
            b,
            alice,
            alice_id,
        }
    }

    /// Asserts `a`'s patient is still exactly version 1 as created.
    async fn assert_alice_untouched(&self) {
        let (status, body) = self
            .server
            .get_json_url(&format!("{}/Patient/{}", self.a, self.alice_id))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, self.alice);
        assert_eq!(body["meta"]["versionId"], "1");
        let (status, history) = self
            .server
            .get_json_url(&format!("{}/Patient/{}/_history", self.a, self.alice_id))
            .await;
        assert_eq!(status, 200);
        assert_eq!(history["total"], 1, "{history}");
    }
}

async fn same_client_id_in_two_tenants(server: Server) {
    let t = Isolation::new(server).await;
    for (base, family) in [(&t.a, "InA"), (&t.b, "InB")] {
        let mut resource = patient(family, "shared-1");
        resource["id"] = json!("shared");
        let (status, body) = send(
            &t.server,
            reqwest::Method::PUT,
            &format!("{base}/Patient/shared"),
            Some(&resource),
        )
        .await;
        assert_eq!(status, 201, "update-as-create in {base}: {body}");
    }
    for (base, family) in [(&t.a, "InA"), (&t.b, "InB")] {
        let (status, body) = t
            .server
            .get_json_url(&format!("{base}/Patient/shared"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["name"][0]["family"], family, "{base} sees its own");
        assert_eq!(
            body["meta"]["versionId"], "1",
            "neither write was an update of the other"
        );
    }
}
both!(same_client_id_in_two_tenants);

async fn reads_and_searches_stay_in_their_tenant(server: Server) {
    let t = Isolation::new(server).await;
    let id = &t.alice_id;
    assert_eq!(
        t.server
            .get_json_url(&format!("{}/Patient/{id}", t.b))
            .await
            .0,
        404
    );
    assert_eq!(
        t.server
            .get_json_url(&format!("{}/Patient/{id}/_history/1", t.b))
            .await
            .0,
        404
    );

    let (status, bundle) = t
        .server
        .get_json_url(&format!("{}/Patient?identifier={MRN}|alice-1", t.b))
        .await;
    assert_eq!(status, 200);
    assert_eq!(bundle["total"], 0, "{bundle}");
    let (_, bundle) = t
        .server
        .get_json_url(&format!("{}/Patient?_id={id}", t.b))
        .await;
    assert_eq!(bundle["total"], 0, "{bundle}");
    let (_, bundle) = t.server.get_json_url(&format!("{}/Patient", t.b)).await;
    assert_eq!(bundle["total"], 0, "{bundle}");
    // ... while `a` finds it.
    let (_, bundle) = t
        .server
        .get_json_url(&format!("{}/Patient?identifier={MRN}|alice-1", t.a))
        .await;
    assert_eq!(entry_ids(&bundle), vec![id.clone()]);
}
both!(reads_and_searches_stay_in_their_tenant);

async fn history_stays_in_its_tenant(server: Server) {
    let t = Isolation::new(server).await;
    let id = &t.alice_id;
    // Something of b's own, so its histories are not trivially empty.
    let bob = t.server.create(&t.b, &patient("Bob", "bob-1")).await;
    let bob_id = bob["id"].as_str().unwrap().to_owned();

    let (status, body) = t
        .server
        .get_json_url(&format!("{}/Patient/{id}/_history", t.b))
        .await;
    assert!(
        status == 404 || (status == 200 && body["total"] == 0),
        "instance history in b: {status} {body}"
    );
    for url in [
        format!("{}/Patient/_history", t.b),
        format!("{}/_history", t.b),
    ] {
        let (status, bundle) = t.server.get_json_url(&url).await;
        assert_eq!(status, 200, "{url}: {bundle}");
        assert_eq!(entry_ids(&bundle), vec![bob_id.clone()], "{url}: {bundle}");
        assert_eq!(bundle["total"], 1, "{url}: {bundle}");
    }
    for url in [
        format!("{}/Patient/_history", t.a),
        format!("{}/_history", t.a),
    ] {
        let (_, bundle) = t.server.get_json_url(&url).await;
        assert_eq!(entry_ids(&bundle), vec![id.clone()], "{url}: {bundle}");
    }
}
both!(history_stays_in_its_tenant);

async fn writes_in_one_tenant_never_touch_another(server: Server) {
    let t = Isolation::new(server).await;
    let id = t.alice_id.clone();

    // PUT in b to a's id: a new resource in b.
    let mut intruder = patient("Intruder", "intruder-1");
    intruder["id"] = json!(id);
    let (status, body) = send(
        &t.server,
        reqwest::Method::PUT,
        &format!("{}/Patient/{id}", t.b),
        Some(&intruder),
    )
    .await;
    assert_eq!(status, 201, "a create in b: {body}");
    assert_eq!(body["meta"]["versionId"], "1");
    t.assert_alice_untouched().await;
    // Clean b up again, which must not delete a's.
    let (status, _) = send(
        &t.server,
        reqwest::Method::DELETE,
        &format!("{}/Patient/{id}", t.b),
        None,
    )
    .await;
    assert_eq!(status, 204);
    t.assert_alice_untouched().await;

    // PATCH in b on an id only a has.
    let other = t.server.create(&t.a, &patient("Carol", "carol-1")).await;
    let other_id = other["id"].as_str().unwrap();
    let patch = r#"[{"op":"replace","path":"/gender","value":"male"}]"#;
    let response = t
        .server
        .client
        .patch(format!("{}/Patient/{other_id}", t.b))
        .header("content-type", "application/json-patch+json")
        .body(patch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let (_, carol) = t
        .server
        .get_json_url(&format!("{}/Patient/{other_id}", t.a))
        .await;
    assert_eq!(carol, other, "PATCH in b changed nothing in a");

    // DELETE in b of an id only a has: nothing to delete there.
    let (status, _) = send(
        &t.server,
        reqwest::Method::DELETE,
        &format!("{}/Patient/{other_id}", t.b),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, carol) = t
        .server
        .get_json_url(&format!("{}/Patient/{other_id}", t.a))
        .await;
    assert_eq!(status, 200, "still readable in a: {carol}");
    assert_eq!(carol, other);
}
both!(writes_in_one_tenant_never_touch_another);

async fn conditional_writes_match_only_their_tenant(server: Server) {
    let t = Isolation::new(server).await;
    let criteria = format!("identifier={MRN}|alice-1");

    // Conditional delete in b with a's identifier: no match in b, nothing deleted in a.
    let (status, body) = send(
        &t.server,
        reqwest::Method::DELETE,
        &format!("{}/Patient?{criteria}", t.b),
        None,
    )
    .await;
    assert!(status == 204 || status == 200, "{status} {body}");
    t.assert_alice_untouched().await;

    // Conditional update in b with a's identifier: no match, so a create in b.
    let (status, created) = send(
        &t.server,
        reqwest::Method::PUT,
        &format!("{}/Patient?{criteria}", t.b),
        Some(&patient("Copy", "alice-1")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_ne!(created["id"], t.alice["id"]);
    t.assert_alice_untouched().await;

    // Conditional create in a with If-None-Exist still matches only a's own.
    let response = t
        .server
        .client
        .post(format!("{}/Patient", t.a))
        .header("content-type", JSON)
        .header("if-none-exist", criteria.clone())
        .body(patient("Again", "alice-1").to_string())
        .send()
        .await
        .unwrap();
    let (status, matched) = json(response).await;
    assert_eq!(status, 200, "{matched}");
    assert_eq!(matched["id"], t.alice["id"]);
}
both!(conditional_writes_match_only_their_tenant);

async fn default_tenant_is_isolated(server: Server) {
    let t = Isolation::new(server).await;
    let default = t.server.tenant_base("default");
    let dora = t.server.create(&default, &patient("Dora", "dora-1")).await;
    let dora_id = dora["id"].as_str().unwrap();

    assert_eq!(
        t.server
            .get_json_url(&format!("{default}/Patient/{}", t.alice_id))
            .await
            .0,
        404
    );
    assert_eq!(
        t.server
            .get_json_url(&format!("{}/Patient/{dora_id}", t.a))
            .await
            .0,
        404
    );
    let (_, bundle) = t.server.get_json_url(&format!("{default}/Patient")).await;
    assert_eq!(entry_ids(&bundle), vec![dora_id.to_owned()], "{bundle}");
    let (_, bundle) = t.server.get_json_url(&format!("{default}/_history")).await;
    assert_eq!(entry_ids(&bundle), vec![dora_id.to_owned()], "{bundle}");
    let (_, bundle) = t
        .server
        .get_json_url(&format!("{}/Patient?identifier={MRN}|dora-1", t.a))
        .await;
    assert_eq!(bundle["total"], 0, "{bundle}");
    // `/t/default/fhir` is the default tenant's other address or unknown, never a.
    let (status, body) = t
        .server
        .get_json_url(&format!(
            "{}/t/default/fhir/Patient/{}",
            t.server.root, t.alice_id
        ))
        .await;
    assert_eq!(status, 404, "{body}");
}
both!(default_tenant_is_isolated);
