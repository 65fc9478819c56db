//! SMART on FHIR end to end, on both databases: discovery, Backend Services (secret and
//! private_key_jwt), the standalone patient launch through the real login and consent
//! pages, refresh rotation, revocation, and a patient's token confined to its own
//! compartment everywhere; and one test per rule that must refuse.
#![allow(clippy::too_many_lines, clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure

mod common;

use common::signin::{
    APP_REDIRECT, Browser, PASSWORD, VERIFIER, authorize_params, encode_form, exchange, field,
    form, query_value, sign_in, with_token,
};
use common::webdriver::WebDriver;
use common::{Server, entries, resource_ids, set};
use reqwest::redirect::Policy;
use serde_json::{Value, json};

async fn smart_server(backend: common::Backend) -> Option<Server> {
    Server::start_with(
        backend,
        &["--auth", "smart", "--admin-token", "admin-secret"],
        &[],
    )
    .await
}

fn cli_ok(server: &Server, args: &[&str]) -> String {
    let output = server.run_cli(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A server under `--auth smart` whose clock the test moves (`/admin/clock`); `None`
/// (with a note) when the test has no PostgreSQL to run on.
async fn clocked_smart_server(backend: common::Backend) -> Option<Server> {
    let args = [
        "--auth",
        "smart",
        "--admin-token",
        "admin-secret",
        "--test-clock",
    ];
    let server = Server::start_with(backend, &args, &[]).await;
    if server.is_none() {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
    }
    server
}

/// `both!` for servers started with `--auth smart`.
macro_rules! smart {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let server = super::smart_server(super::common::Backend::Sqlite).await;
                super::$test(server.expect("the SQLite server starts")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match super::smart_server(super::common::Backend::Postgres).await {
                    Some(server) => super::$test(server).await,
                    None => eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set"),
                }
            }
        }
    };
}

/// For a test that starts its own servers: `name(backend)` on both databases.
macro_rules! on_both {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(super::common::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$test(super::common::Backend::Postgres).await;
            }
        }
    };
}

/// Clients and users of the tests.
fn register(server: &Server) {
    cli_ok(
        server,
        &[
            "client",
            "create",
            "--id",
            "backend",
            "--type",
            "confidential-symmetric",
            "--secret",
            "backend-secret-0123456789",
            "--scopes",
            "system/*.cruds",
        ],
    );
    cli_ok(
        server,
        &[
            "client",
            "create",
            "--id",
            "app",
            "--type",
            "public",
            "--redirect-uri",
            APP_REDIRECT,
            "--scopes",
            "launch/patient patient/*.cruds user/*.rs openid fhirUser offline_access",
        ],
    );
    cli_ok(
        server,
        &[
            "user",
            "create",
            "--username",
            "pat",
            "--password",
            PASSWORD,
            "--role",
            "patient",
            "--fhir-user",
            "Patient/p1",
            "--create-patient",
        ],
    );
    cli_ok(
        server,
        &[
            "user",
            "create",
            "--username",
            "desk",
            "--password",
            PASSWORD,
            "--role",
            "front-desk",
            "--fhir-user",
            "Practitioner/d1",
            "--create-patient",
        ],
    );
}

async fn backend_token(server: &Server) -> String {
    let (status, body) = form(
        server,
        "auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.cruds"),
        ],
        Some(("backend", "backend-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get(server: &Server, token: &str, path: &str) -> (u16, Value) {
    with_token(server, token, reqwest::Method::GET, path, None).await
}

/// A patient's token through the standalone launch.
async fn patient_launch(server: &Server) -> Value {
    let location = sign_in(
        server,
        "pat",
        PASSWORD,
        "launch/patient patient/*.cruds openid fhirUser offline_access",
        &[],
    )
    .await
    .unwrap();
    assert!(location.starts_with(APP_REDIRECT));
    assert_eq!(query_value(&location, "state").as_deref(), Some("st-123"));
    let code = query_value(&location, "code").unwrap();
    let (status, token) = exchange(server, &code, VERIFIER).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["patient"], "p1");
    assert!(token["id_token"].is_string() && token["refresh_token"].is_string());
    token
}

async fn discovery_and_no_token(server: Server) {
    let answer = server
        .client
        .get(format!("{}/.well-known/smart-configuration", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["access-control-allow-origin"], "*");
    let configuration: Value = answer.json().await.unwrap();
    assert_eq!(
        configuration["token_endpoint"],
        format!("{}/auth/token", server.base)
    );
    assert!(
        configuration["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("permission-v2"))
    );
    let (status, jwks) = common::json(
        server
            .client
            .get(format!("{}/.well-known/jwks.json", server.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, jwks["keys"][0]["kty"].as_str()),
        (200, Some("RSA"))
    );
    let (status, statement) = server.get_json("metadata").await;
    assert_eq!(status, 200, "the CapabilityStatement needs no token");
    let oauth = &statement["rest"][0]["security"]["extension"][0];
    assert_eq!(
        oauth["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );
    assert_eq!(
        oauth["extension"][1]["valueUri"],
        format!("{}/auth/token", server.base)
    );
    let refused = server
        .client
        .get(server.url("Patient"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let forged = server
        .client
        .get(server.url("Patient"))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert!(
        forged.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}
smart!(discovery_and_no_token);

async fn backend_services(server: Server) {
    register(&server);
    let (status, refused) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.cruds"),
        ],
        Some(("backend", "wrong")),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, refused) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "patient/*.rs"),
        ],
        Some(("backend", "backend-secret-0123456789")),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let token = backend_token(&server).await;
    let (status, _) = with_token(
        &server,
        &token,
        reqwest::Method::PUT,
        "Patient/p2",
        Some(&json!({"resourceType": "Patient", "id": "p2"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, bundle) = get(&server, &token, "Patient").await;
    assert_eq!(status, 200);
    assert_eq!(set(resource_ids(&bundle)), set(["p1", "p2"]));
    // Revoked: refused at once.
    let (status, _) = form(
        &server,
        "auth/revoke",
        &[("token", &token)],
        Some(("backend", "backend-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = get(&server, &token, "Patient").await;
    assert_eq!(status, 401, "a revoked token stops working");
    let (_, active) = form(
        &server,
        "auth/introspect",
        &[("token", &token)],
        Some(("backend", "backend-secret-0123456789")),
    )
    .await;
    assert_eq!(active["active"], false);
    // A token of the default tenant is no good on another.
    cli_ok(&server, &["tenant", "create", "acme"]);
    let token = backend_token(&server).await;
    let other = server
        .client
        .get(format!("{}/Patient", server.tenant_base("acme")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
}
smart!(backend_services);

/// A backend client authenticates with a signed assertion (RS384) against its JWKS; the
/// same assertion again is a replay.
/// Registers the Backend Services client `svc` (confidential-asymmetric, its own RSA key
/// in an inline JWKS as kid `k1`, allowed `system/Patient.rs`); what signs its RS384
/// assertions for this server's token endpoint, by expiry and jti.
fn asymmetric_client(server: &Server) -> impl Fn(u64, &str) -> String + use<> {
    let key = smart_auth::jwt::SigningKey::generate().unwrap();
    let mut jwk = serde_json::to_value(key.public_jwk()).unwrap();
    jwk["kid"] = json!("k1");
    jwk["alg"] = json!("RS384");
    let jwks_file = server.dir.join("client-jwks.json");
    std::fs::write(&jwks_file, json!({"keys": [jwk]}).to_string()).unwrap();
    let jwks = jwks_file.to_str().unwrap();
    let args = [
        "client",
        "create",
        "--id",
        "svc",
        "--type",
        "confidential-asymmetric",
        "--jwks-file",
        jwks,
        "--scopes",
        "system/Patient.rs",
    ];
    cli_ok(server, &args);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS384);
    header.kid = Some("k1".into());
    let audience = format!("{}/auth/token", server.base);
    move |exp: u64, jti: &str| {
        let claims = json!({"iss": "svc", "sub": "svc", "aud": audience, "exp": exp, "jti": jti});
        let encoding = jsonwebtoken::EncodingKey::from_rsa_der(key.pkcs1_der());
        jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn private_key_jwt(server: Server) {
    let sign = asymmetric_client(&server);
    let now = unix_now();
    let assertion = sign(now + 240, "jti-1");
    let pairs = |assertion: &str| -> Vec<(String, String)> {
        vec![
            ("grant_type".into(), "client_credentials".into()),
            ("scope".into(), "system/Patient.rs".into()),
            (
                "client_assertion_type".into(),
                smart_auth::client_auth::JWT_BEARER.into(),
            ),
            ("client_assertion".into(), assertion.into()),
        ]
    };
    let send = |pairs: Vec<(String, String)>| {
        let request = server
            .client
            .post(format!("{}/auth/token", server.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_form(&pairs));
        async move { common::json(request.send().await.unwrap()).await }
    };
    let (status, token) = send(pairs(&assertion)).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["expires_in"], 300);
    let (status, _) = get(&server, token["access_token"].as_str().unwrap(), "Patient").await;
    assert_eq!(status, 200);
    let (status, _) = get(
        &server,
        token["access_token"].as_str().unwrap(),
        "Observation",
    )
    .await;
    assert_eq!(status, 403, "system/Patient.rs does not cover Observation");
    let (status, replay) = send(pairs(&assertion)).await;
    assert_eq!(
        (status, replay["error"].as_str()),
        (401, Some("invalid_client")),
        "a replayed jti"
    );
    let (status, _) = send(pairs(&sign(now + 3600, "jti-2"))).await;
    assert_eq!(
        status, 401,
        "an assertion that expires more than 5 minutes ahead"
    );
    let (status, _) = send(pairs(&sign(now - 60, "jti-3"))).await;
    assert_eq!(status, 401, "an expired assertion");
}
smart!(private_key_jwt);

async fn patient_confinement(server: Server) {
    register(&server);
    let backend = backend_token(&server).await;
    for (id, patient) in [("o1", "p1"), ("o2", "p2")] {
        let observation = json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"text": "bp"}, "subject": {"reference": format!("Patient/{patient}")}});
        let (status, _) = with_token(
            &server,
            &backend,
            reqwest::Method::PUT,
            &format!("Observation/{id}"),
            Some(&observation),
        )
        .await;
        assert!(status == 201, "{status}");
    }
    let (status, _) = with_token(
        &server,
        &backend,
        reqwest::Method::PUT,
        "Patient/p2",
        Some(&json!({"resourceType": "Patient", "id": "p2"})),
    )
    .await;
    assert_eq!(status, 201);
    let token = patient_launch(&server).await;
    let access = token["access_token"].as_str().unwrap();
    let (status, body) = get(&server, access, "Patient/p1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get(&server, access, "Patient/p2").await.0,
        404,
        "another patient is not found"
    );
    assert_eq!(get(&server, access, "Observation/o2").await.0, 404);
    assert_eq!(
        get(&server, access, "Observation/o2/_history/1").await.0,
        404
    );
    let (_, bundle) = get(&server, access, "Observation").await;
    assert_eq!(resource_ids(&bundle), vec!["o1"]);
    let (_, bundle) = get(&server, access, "Patient").await;
    assert_eq!(resource_ids(&bundle), vec!["p1"]);
    let (_, bundle) = get(&server, access, "Patient?_revinclude=Observation:subject").await;
    assert_eq!(set(resource_ids(&bundle)), set(["p1", "o1"]));
    let (_, bundle) = get(&server, access, "Observation?_include=Observation:subject").await;
    assert_eq!(set(resource_ids(&bundle)), set(["p1", "o1"]));
    let (_, bundle) = get(&server, access, "Observation?subject:Patient._id=p2").await;
    assert!(
        entries(&bundle).is_empty(),
        "a chain does not reach past the compartment"
    );
    let (_, bundle) = get(
        &server,
        access,
        "Patient?_has:Observation:subject:status=final",
    )
    .await;
    assert_eq!(resource_ids(&bundle), vec!["p1"]);
    let (_, bundle) = get(&server, access, "Observation/_history").await;
    assert_eq!(set(resource_ids(&bundle)), set(["o1"]));
    let (_, bundle) = get(&server, access, "_history").await;
    assert!(
        !resource_ids(&bundle)
            .iter()
            .any(|id| id == "p2" || id == "o2")
    );
    assert_eq!(get(&server, access, "Patient/p2/$everything").await.0, 404);
    assert_eq!(get(&server, access, "Patient/p2/Observation").await.0, 404);
    let (status, _) = get(&server, access, "Patient/p1/$everything").await;
    assert_eq!(status, 200);
    assert_eq!(get(&server, access, "$export").await.0, 403);
    patient_export(&server, access, &backend).await;
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/p2"}},
        {"request": {"method": "GET", "url": "Patient/p1"}}]});
    let (status, answer) =
        with_token(&server, access, reqwest::Method::POST, "", Some(&batch)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["entry"][0]["response"]["status"], "404 Not Found");
    assert_eq!(answer["entry"][1]["response"]["status"], "200 OK");
    let foreign = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Communication", "status": "completed", "subject": {"reference": "Patient/p2"}},
         "request": {"method": "POST", "url": "Communication"}}]});
    let (status, _) = with_token(&server, access, reqwest::Method::POST, "", Some(&foreign)).await;
    assert_eq!(
        status, 403,
        "a transaction may not write into another compartment"
    );
    // A patient writes a message to the care team (its role writes Communication), about
    // itself only; an Observation its role does not write.
    let own = json!({"resourceType": "Communication", "status": "completed", "subject": {"reference": "Patient/p1"}});
    assert_eq!(
        with_token(
            &server,
            access,
            reqwest::Method::POST,
            "Communication",
            Some(&own)
        )
        .await
        .0,
        201
    );
    let mut other = own.clone();
    other["subject"]["reference"] = json!("Patient/p2");
    assert_eq!(
        with_token(
            &server,
            access,
            reqwest::Method::POST,
            "Communication",
            Some(&other)
        )
        .await
        .0,
        403
    );
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
    assert_eq!(
        with_token(
            &server,
            access,
            reqwest::Method::POST,
            "Observation",
            Some(&observation)
        )
        .await
        .0,
        403
    );
    // Refresh: rotated; the old refresh token again revokes the grant.
    let refresh = token["refresh_token"].as_str().unwrap();
    let (status, renewed) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "app"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let (status, wider) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", renewed["refresh_token"].as_str().unwrap()),
            ("client_id", "app"),
            ("scope", "user/*.rs"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (status, wider["error"].as_str()),
        (400, Some("invalid_scope")),
        "a refresh only narrows"
    );
    let (status, _) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "app"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 400, "a used refresh token");
    assert_eq!(
        get(
            &server,
            renewed["access_token"].as_str().unwrap(),
            "Patient/p1"
        )
        .await
        .0,
        401,
        "reuse revoked the grant"
    );
}
smart!(patient_confinement);

async fn login_rules(server: Server) {
    register(&server);
    let scope = "launch/patient patient/*.rs";
    // PKCE: a wrong verifier, and the challenge itself as verifier.
    let location = sign_in(&server, "pat", PASSWORD, scope, &[]).await.unwrap();
    let code = query_value(&location, "code").unwrap();
    let (status, refused) = exchange(
        &server,
        &code,
        "another-verifier-of-enough-length-0123456789ab",
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let location = sign_in(&server, "pat", PASSWORD, scope, &[]).await.unwrap();
    let code = query_value(&location, "code").unwrap();
    let (status, _) = exchange(&server, &code, &smart_auth::pkce::challenge_of(VERIFIER)).await;
    assert_eq!(status, 400, "the challenge is not the verifier");
    // A code is single-use: a second exchange fails and revokes what the first got.
    let location = sign_in(&server, "pat", PASSWORD, scope, &[]).await.unwrap();
    let code = query_value(&location, "code").unwrap();
    let (status, token) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 200);
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(get(&server, access, "Patient/p1").await.0, 200);
    let (again, refused) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(
        (again, refused["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        get(&server, access, "Patient/p1").await.0,
        401,
        "the reuse revoked the grant"
    );
    // The plain method and a missing challenge go back to the app as errors.
    let mut params = authorize_params(&server, scope, VERIFIER);
    params.retain(|(n, _)| n != "code_challenge_method");
    params.push(("code_challenge_method".into(), "plain".into()));
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let answer = Browser::new()
        .get(&format!("{}/auth/authorize?{query}", server.base))
        .await;
    assert_eq!(answer.status(), 302);
    assert_eq!(
        query_value(answer.headers()["location"].to_str().unwrap(), "error").as_deref(),
        Some("invalid_request")
    );
    // A redirect URI that is not registered is shown, never followed.
    let mut params = authorize_params(&server, scope, VERIFIER);
    params.retain(|(n, _)| n != "redirect_uri");
    params.push(("redirect_uri".into(), "https://evil.example/cb".into()));
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let answer = Browser::new()
        .get(&format!("{}/auth/authorize?{query}", server.base))
        .await;
    assert_eq!(answer.status(), 400);
    // A wrong aud.
    let mut params = authorize_params(&server, scope, VERIFIER);
    params.retain(|(n, _)| n != "aud");
    params.push(("aud".into(), "https://other.example/fhir".into()));
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let answer = Browser::new()
        .get(&format!("{}/auth/authorize?{query}", server.base))
        .await;
    assert_eq!(answer.status(), 302);
    // The consent form without its CSRF token.
    let refused = sign_in(&server, "pat", PASSWORD, scope, &[("csrf", "")])
        .await
        .unwrap_err();
    assert!(refused.starts_with("403"), "{refused}");
    // Six wrong passwords, then the right one: locked.
    for _ in 0..6 {
        let page = sign_in(&server, "pat", "wrong password!!", scope, &[])
            .await
            .unwrap_err();
        assert!(page.contains("wrong") || page.contains("locked"));
    }
    let locked = sign_in(&server, "pat", PASSWORD, scope, &[])
        .await
        .unwrap_err();
    assert!(locked.contains("locked"), "{locked}");
}
smart!(login_rules);

/// A front-desk user's user/ token: the role bounds the scope.
async fn roles_bound_user_scopes(server: Server) {
    register(&server);
    let location = sign_in(&server, "desk", PASSWORD, "user/*.rs", &[])
        .await
        .unwrap();
    let code = query_value(&location, "code").unwrap();
    let (status, token) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 200, "{token}");
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(get(&server, access, "Patient").await.0, 200);
    let (status, outcome) = get(&server, access, "Claim").await;
    assert_eq!(status, 403, "front desk reads no Claim");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    // Nor through what an answer adds: `_revinclude`, `$everything`.
    let backend = backend_token(&server).await;
    let claim = json!({"resourceType": "Claim", "id": "c1", "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "claim", "patient": {"reference": "Patient/p1"}, "created": "2026-03-02",
        "provider": {"reference": "Organization/o1"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/cov1"}}]});
    let (status, body) = with_token(
        &server,
        &backend,
        reqwest::Method::PUT,
        "Claim/c1",
        Some(&claim),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let types = |bundle: &Value| -> Vec<String> {
        let mut types: Vec<String> = entries(bundle)
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap().to_owned())
            .collect();
        types.sort();
        types.dedup();
        types
    };
    let revinclude = "Patient?_id=p1&_revinclude=Claim:patient";
    let (_, wide) = get(&server, &backend, revinclude).await;
    assert_eq!(
        types(&wide),
        ["Claim", "Patient"],
        "a wildcard backend sees both"
    );
    let (status, desk) = get(&server, access, revinclude).await;
    assert_eq!((status, types(&desk)), (200, vec!["Patient".to_owned()]));
    let (status, everything) = get(&server, access, "Patient/p1/$everything").await;
    assert_eq!(status, 200, "{everything}");
    assert!(
        !types(&everything).contains(&"Claim".to_owned()),
        "{everything}"
    );
    assert!(types(&everything).contains(&"Patient".to_owned()));
}
smart!(roles_bound_user_scopes);

/// A code and a token to refresh, for the rush tests.
async fn code_for_patient(server: &Server) -> String {
    let scope = "launch/patient patient/*.rs offline_access";
    let location = sign_in(server, "pat", PASSWORD, scope, &[]).await.unwrap();
    query_value(&location, "code").unwrap()
}

/// Fifty clients at once: one code exchanged, one refresh token used, one assertion sent,
/// and fifty wrong passwords. Exactly one of each single-use thing wins, and no more than
/// five password checks happen before the account locks.
async fn single_use_under_a_rush(server: Server) {
    register(&server);
    let code = code_for_patient(&server).await;
    let answers =
        futures::future::join_all((0..50).map(|_| exchange(&server, &code, VERIFIER))).await;
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(won.len(), 1, "one exchange of a code wins");
    // The others were reuses: the grant is revoked, its tokens refused and not renewed.
    let access = won[0]["access_token"].as_str().unwrap();
    assert_eq!(get(&server, access, "Patient/p1").await.0, 401);
    let again = [
        ("grant_type", "refresh_token"),
        ("refresh_token", won[0]["refresh_token"].as_str().unwrap()),
        ("client_id", "app"),
    ];
    assert_eq!(form(&server, "auth/token", &again, None).await.0, 400);
    assert!(
        answers
            .iter()
            .all(|(status, body)| *status == 200 || body["error"] == "invalid_grant")
    );

    let code = code_for_patient(&server).await;
    let (_, token) = exchange(&server, &code, VERIFIER).await;
    let refresh = token["refresh_token"].as_str().unwrap().to_owned();
    let pairs = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", "app"),
    ];
    let answers =
        futures::future::join_all((0..50).map(|_| form(&server, "auth/token", &pairs, None))).await;
    // Fifty uses of one refresh token are a reuse: at most one gets tokens, and the reuse
    // revokes the grant, so whatever was issued stops working.
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    assert!(
        won.len() <= 1,
        "{} uses of one refresh token won",
        won.len()
    );
    assert_eq!(
        get(
            &server,
            token["access_token"].as_str().unwrap(),
            "Patient/p1"
        )
        .await
        .0,
        401
    );
    for body in won {
        assert_eq!(
            get(
                &server,
                body["access_token"].as_str().unwrap(),
                "Patient/p1"
            )
            .await
            .0,
            401
        );
        let again = [
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ("client_id", "app"),
        ];
        assert_eq!(
            form(&server, "auth/token", &again, None).await.0,
            400,
            "the revoked grant is not renewed"
        );
    }

    let sign = asymmetric_client(&server);
    let assertion = sign(unix_now() + 240, "rush");
    let pairs = [
        ("grant_type", "client_credentials"),
        ("scope", "system/Patient.rs"),
        ("client_assertion_type", smart_auth::client_auth::JWT_BEARER),
        ("client_assertion", assertion.as_str()),
    ];
    let answers =
        futures::future::join_all((0..50).map(|_| form(&server, "auth/token", &pairs, None))).await;
    assert_eq!(
        answers.iter().filter(|(status, _)| *status == 200).count(),
        1,
        "one use of an assertion's jti wins"
    );

    let pages = futures::future::join_all(
        (0..50).map(|_| sign_in(&server, "desk", "wrong password!!", "user/*.rs", &[])),
    )
    .await;
    let checked = pages
        .iter()
        .filter(|page| page.as_ref().unwrap_err().contains("wrong"))
        .count();
    assert!(
        checked <= 5,
        "{checked} password checks in a rush; at most 5 before the lock"
    );
    let locked = sign_in(&server, "desk", PASSWORD, "user/*.rs", &[])
        .await
        .unwrap_err();
    assert!(locked.contains("locked"));
}
smart!(single_use_under_a_rush);

/// Two server processes on one database (the same public URL, as behind a load balancer):
/// a token issued by one works on the other, and revoked on one it stops on the other
/// within five seconds.
async fn revocation_reaches_every_process(backend: common::Backend) {
    let args = [
        "--auth",
        "smart",
        "--admin-token",
        "admin-secret",
        "--base-url",
        "http://fhir.test",
    ];
    let Some(first) = Server::start_with(backend, &args, &[]).await else {
        eprintln!("skipped: FHIR_TEST_POSTGRES_URL is not set");
        return;
    };
    let second = first.sibling().await;
    register(&first);
    let token = {
        let (status, body) = common::json(
            first
                .client
                .post(format!("{}/auth/token", first.base))
                .basic_auth("backend", Some("backend-secret-0123456789"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials&scope=system%2F*.cruds")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        get(&second, &token, "Patient").await.0,
        200,
        "the other process takes the token"
    );
    let (status, _) = form(
        &first,
        "auth/revoke",
        &[("token", &token)],
        Some(("backend", "backend-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        get(&first, &token, "Patient").await.0,
        401,
        "at once on the revoking process"
    );
    let started = std::time::Instant::now();
    while get(&second, &token, "Patient").await.0 != 401 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the other process still takes a revoked token after 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

on_both!(revocation_reaches_every_process);

/// A patient's `Patient/$export` holds its own compartment only; its status and files are
/// refused to another token (404, as an unknown export).
async fn patient_export(server: &Server, access: &str, other: &str) {
    let kick_off = server
        .client
        .get(format!("{}/Patient/$export", server.base))
        .bearer_auth(access)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(kick_off.status(), 202);
    let status_url = kick_off.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_owned();
    let manifest: Value = loop {
        let response = server
            .client
            .get(&status_url)
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            202 => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            200 => break response.json().await.unwrap(),
            status => panic!("export status {status}"),
        }
    };
    assert_eq!(manifest["requiresAccessToken"], true);
    let foreign = server
        .client
        .get(&status_url)
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(
        foreign.status(),
        404,
        "another token does not see the export"
    );
    let mut ids = Vec::new();
    for file in manifest["output"].as_array().unwrap() {
        let url = file["url"].as_str().unwrap();
        let foreign = server
            .client
            .get(url)
            .bearer_auth(other)
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), 404);
        let text = server
            .client
            .get(url)
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in text.lines() {
            let resource: Value = serde_json::from_str(line).unwrap();
            ids.push(format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            ));
        }
    }
    assert_eq!(set(ids), set(["Patient/p1", "Observation/o1"]));
}

/// A provider who must use a second factor signs in through chromium: password, TOTP
/// enrolment from the page's secret, then consent with one scope unticked; the code comes
/// back to the app's page, and the unticked scope is not granted.
async fn browser_login_totp_and_consent(server: Server) {
    let Some(browser) = WebDriver::start().await else {
        return;
    };
    let redirect = format!("{}/healthz", server.root);
    cli_ok(
        &server,
        &[
            "client",
            "create",
            "--id",
            "web",
            "--type",
            "public",
            "--redirect-uri",
            &redirect,
            "--scopes",
            "user/*.rs openid fhirUser",
        ],
    );
    cli_ok(
        &server,
        &[
            "user",
            "create",
            "--username",
            "doc",
            "--password",
            PASSWORD,
            "--role",
            "provider",
            "--fhir-user",
            "Practitioner/d7",
            "--create-patient",
            "--require-totp",
        ],
    );
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", redirect.as_str()),
            ("scope", "user/*.rs openid fhirUser"),
            ("state", "browser-state"),
            ("aud", server.base.as_str()),
            (
                "code_challenge",
                smart_auth::pkce::challenge_of(VERIFIER).as_str(),
            ),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    browser
        .go(&format!("{}/auth/authorize?{query}", server.base))
        .await;
    browser.type_into("input[name=username]", "doc").await;
    browser.type_into("input[name=password]", PASSWORD).await;
    browser.click("button[type=submit]").await;
    // The enrolment page: the secret the authenticator app would take.
    let secret = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        browser.value_of("input[name=totp_secret]").await,
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    browser
        .type_into(
            "input[name=code]",
            &smart_auth::totp::code_at(&secret, now).unwrap(),
        )
        .await;
    browser.click("button[type=submit]").await;
    // The consent page: untick fhirUser, allow the rest.
    browser.click("input[value=fhirUser]").await;
    browser.click("button[value=allow]").await;
    let mut landed = browser.url().await;
    for _ in 0..50 {
        if landed.starts_with(&redirect) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        landed = browser.url().await;
    }
    assert!(landed.starts_with(&redirect), "{landed}");
    assert_eq!(
        query_value(&landed, "state").as_deref(),
        Some("browser-state")
    );
    let code = query_value(&landed, "code").unwrap();
    let (status, token) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("client_id", "web"),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(
        token["scope"], "user/*.rs openid",
        "the unticked scope is not granted"
    );
    assert_eq!(
        get(
            &server,
            token["access_token"].as_str().unwrap(),
            "Practitioner/d7"
        )
        .await
        .0,
        200
    );
    // Enrolled now: the next sign-in needs the code (a later one: each code works once).
    let html = sign_in_page_without_code(&server, "doc").await;
    assert!(html.contains("wrong"), "{html}");
}
smart!(browser_login_totp_and_consent);

/// The login page's answer to the right password without a TOTP code.
async fn sign_in_page_without_code(server: &Server, username: &str) -> String {
    let redirect = format!("{}/healthz", server.root);
    let mut params = authorize_params(
        server,
        "user/*.rs",
        &smart_auth::pkce::challenge_of(VERIFIER),
    );
    for (name, value) in &mut params {
        match name.as_str() {
            "client_id" => *value = "web".into(),
            "redirect_uri" => value.clone_from(&redirect),
            _ => {}
        }
    }
    let mut browser = Browser::new();
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let html = browser
        .get(&format!("{}/auth/authorize?{query}", server.base))
        .await
        .text()
        .await
        .unwrap();
    let mut login = params.clone();
    login.push(("csrf".into(), field(&html, "csrf")));
    login.push(("username".into(), username.into()));
    login.push(("password".into(), PASSWORD.into()));
    browser
        .post(&format!("{}/auth/login", server.base), &login)
        .await
        .text()
        .await
        .unwrap()
}

/// `user reset-password` prints a one-time link; its page sets a new password (the
/// policy applies), the old one stops working, and the link works once.
async fn password_reset(server: Server) {
    register(&server);
    let printed = cli_ok(&server, &["user", "reset-password", "--username", "pat"]);
    let path = printed.lines().next().unwrap();
    let link = format!("{}{}", server.root, path);
    let mut browser = Browser::new();
    let page = browser.get(&link).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let token = field(&html, "token");
    let post = |password: &str, csrf: &str| {
        vec![
            ("token".to_owned(), token.clone()),
            ("csrf".to_owned(), csrf.to_owned()),
            ("password".to_owned(), password.to_owned()),
        ]
    };
    let reset_url = format!("{}/auth/reset", server.base);
    assert_eq!(
        browser
            .post(&reset_url, &post("a brand new passphrase", ""))
            .await
            .status(),
        403,
        "no CSRF token"
    );
    let csrf = field(&html, "csrf");
    assert_eq!(
        browser
            .post(&reset_url, &post("short", &csrf))
            .await
            .status(),
        400,
        "the policy applies"
    );
    assert_eq!(
        browser
            .post(&reset_url, &post("a brand new passphrase", &csrf))
            .await
            .status(),
        200
    );
    assert_eq!(
        browser
            .post(&reset_url, &post("another new passphrase", &csrf))
            .await
            .status(),
        404,
        "the link works once"
    );
    assert!(
        sign_in(&server, "pat", PASSWORD, "launch/patient patient/*.rs", &[])
            .await
            .is_err()
    );
    assert!(
        sign_in(
            &server,
            "pat",
            "a brand new passphrase",
            "launch/patient patient/*.rs",
            &[]
        )
        .await
        .is_ok()
    );
}
smart!(password_reset);

/// The PyPI `fhirclient` completes a standalone patient launch and reads its patient
/// (`tests/clients/smart_launch.py`). Needs `pip install -r tests/clients/requirements.txt`;
/// without it the test is skipped with a note, unless `FHIR_TEST_REQUIRE_CLIENTS=1`.
async fn fhirclient_standalone_launch(server: Server) {
    let ready = std::process::Command::new("python3")
        .args(["-c", "import fhirclient, requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        assert!(
            std::env::var("FHIR_TEST_REQUIRE_CLIENTS").is_err(),
            "fhirclient is not installed"
        );
        eprintln!("skipped: fhirclient is not installed (see tests/clients)");
        return;
    }
    register(&server);
    let backend = backend_token(&server).await;
    let someone = json!({"resourceType": "Patient", "id": "someone-else"});
    assert_eq!(
        with_token(
            &server,
            &backend,
            reqwest::Method::PUT,
            "Patient/someone-else",
            Some(&someone)
        )
        .await
        .0,
        201
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/smart_launch.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .args([
            server.base.as_str(),
            "app",
            APP_REDIRECT,
            "pat",
            PASSWORD,
            "p1",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "smart_launch.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
smart!(fhirclient_standalone_launch);

// --- The flows as an app written with the `oauth2` crate runs them -----------------------

/// The `oauth2` crate's HTTP client, over reqwest.
async fn oauth_http(request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()?;
    let mut builder = client.request(request.method().clone(), request.uri().to_string());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let response = builder.body(request.body().clone()).send().await?;
    let mut answer = oauth2::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    Ok(answer.body(response.bytes().await?.to_vec()).unwrap())
}

/// Every `name="..." value="..."` of a page's forms, in order.
fn page_fields(html: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(" name=\"") {
        rest = &rest[start + 7..];
        let name_end = rest.find('"').unwrap();
        let name = rest[..name_end].to_owned();
        rest = &rest[name_end..];
        if let Some(value) = rest.strip_prefix("\" value=\"") {
            let end = value.find('"').unwrap();
            let value = value[..end]
                .replace("&amp;", "&")
                .replace("&#39;", "'")
                .replace("&quot;", "\"");
            found.push((name, value));
        }
    }
    found
}

/// The user's part of an authorization: the login and consent pages of `authorize_url`,
/// every offered scope allowed; the redirect back to the app.
async fn user_part(server: &Server, authorize_url: &str, username: &str) -> String {
    let mut browser = Browser::new();
    let html = browser.get(authorize_url).await.text().await.unwrap();
    let mut login = page_fields(&html);
    login.push(("username".into(), username.into()));
    login.push(("password".into(), PASSWORD.into()));
    let html = browser
        .post(&format!("{}/auth/login", server.base), &login)
        .await
        .text()
        .await
        .unwrap();
    let mut consent: Vec<(String, String)> = page_fields(&html)
        .into_iter()
        .filter(|(name, _)| name != "decision")
        .collect();
    consent.push(("decision".into(), "allow".into()));
    let answer = browser
        .post(&format!("{}/auth/consent", server.base), &consent)
        .await;
    assert_eq!(answer.status(), 302, "{:?}", answer.text().await);
    answer.headers()["location"].to_str().unwrap().to_owned()
}

type SmartClient = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn oauth_client(server: &Server, id: &str, secret: Option<&str>) -> SmartClient {
    let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(id.into()))
        .set_auth_uri(oauth2::AuthUrl::new(format!("{}/auth/authorize", server.base)).unwrap())
        .set_token_uri(oauth2::TokenUrl::new(format!("{}/auth/token", server.base)).unwrap())
        .set_redirect_uri(oauth2::RedirectUrl::new(APP_REDIRECT.into()).unwrap());
    match secret {
        Some(secret) => client.set_client_secret(oauth2::ClientSecret::new(secret.into())),
        None => client,
    }
}

/// Standalone patient launch, EHR launch and Backend Services, each as the `oauth2` crate
/// runs it, with a refresh.
async fn oauth2_crate_flows(server: Server) {
    use oauth2::TokenResponse;
    register(&server);
    let http = oauth_http;
    // Backend Services (client_credentials, client_secret_basic).
    let backend = oauth_client(&server, "backend", Some("backend-secret-0123456789"));
    let token = backend
        .exchange_client_credentials()
        .add_scope(oauth2::Scope::new("system/*.cruds".into()))
        .request_async(&http)
        .await
        .unwrap();
    let backend_token = token.access_token().secret().clone();
    let encounter = json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"}});
    assert_eq!(
        with_token(
            &server,
            &backend_token,
            reqwest::Method::PUT,
            "Encounter/e1",
            Some(&encounter)
        )
        .await
        .0,
        201
    );

    // Standalone patient launch (public client, PKCE S256), then a refresh.
    let app = oauth_client(&server, "app", None);
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let (url, state) = app
        .authorize_url(oauth2::CsrfToken::new_random)
        .add_scopes(
            ["launch/patient", "patient/*.rs", "offline_access"]
                .map(|s| oauth2::Scope::new(s.into())),
        )
        .add_extra_param("aud", &server.base)
        .set_pkce_challenge(challenge)
        .url();
    let location = user_part(&server, url.as_str(), "pat").await;
    assert_eq!(
        query_value(&location, "state").as_deref(),
        Some(state.secret().as_str())
    );
    let token = app
        .exchange_code(oauth2::AuthorizationCode::new(
            query_value(&location, "code").unwrap(),
        ))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        get(&server, token.access_token().secret(), "Patient/p1")
            .await
            .0,
        200
    );
    let refreshed = app
        .exchange_refresh_token(token.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        get(&server, refreshed.access_token().secret(), "Encounter/e1")
            .await
            .0,
        200
    );
    assert!(
        app.exchange_refresh_token(token.refresh_token().unwrap())
            .request_async(&http)
            .await
            .is_err(),
        "a used refresh token"
    );

    // EHR launch: the EHR makes a launch id for patient p1 and encounter e1; a provider
    // opens the app with it.
    cli_ok(
        &server,
        &[
            "client",
            "create",
            "--id",
            "ehr",
            "--type",
            "confidential-symmetric",
            "--secret",
            "ehr-secret-0123456789",
            "--may-launch",
            "--scopes",
            "launch",
        ],
    );
    cli_ok(
        &server,
        &[
            "client",
            "create",
            "--id",
            "ehr-app",
            "--type",
            "confidential-symmetric",
            "--secret",
            "ehr-app-secret-0123456789",
            "--redirect-uri",
            APP_REDIRECT,
            "--scopes",
            "launch patient/*.rs user/*.rs openid fhirUser",
        ],
    );
    cli_ok(
        &server,
        &[
            "user",
            "create",
            "--username",
            "dr",
            "--password",
            PASSWORD,
            "--role",
            "provider",
            "--fhir-user",
            "Practitioner/dr1",
            "--create-patient",
        ],
    );
    let (status, launch) = form(
        &server,
        "auth/launch",
        &[("patient", "p1"), ("encounter", "e1")],
        Some(("ehr", "ehr-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 201, "{launch}");
    let (status, _) = form(
        &server,
        "auth/launch",
        &[("patient", "p1")],
        Some(("backend", "backend-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 403, "a client not allowed to launch");
    let ehr_app = oauth_client(&server, "ehr-app", Some("ehr-app-secret-0123456789"));
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let (url, _) = ehr_app
        .authorize_url(oauth2::CsrfToken::new_random)
        .add_scopes(
            ["launch", "patient/*.rs", "openid", "fhirUser"].map(|s| oauth2::Scope::new(s.into())),
        )
        .add_extra_param("aud", &server.base)
        .add_extra_param("launch", launch["launch"].as_str().unwrap())
        .set_pkce_challenge(challenge)
        .url();
    let location = user_part(&server, url.as_str(), "dr").await;
    let token = ehr_app
        .exchange_code(oauth2::AuthorizationCode::new(
            query_value(&location, "code").unwrap(),
        ))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let access = token.access_token().secret();
    let (_, introspected) = form(
        &server,
        "auth/introspect",
        &[("token", access)],
        Some(("ehr-app", "ehr-app-secret-0123456789")),
    )
    .await;
    assert_eq!(
        (
            introspected["active"].as_bool(),
            introspected["patient"].as_str(),
            introspected["encounter"].as_str()
        ),
        (Some(true), Some("p1"), Some("e1"))
    );
    assert_eq!(introspected["fhirUser"], "Practitioner/dr1");
    assert_eq!(get(&server, access, "Encounter/e1").await.0, 200);
    assert_eq!(
        get(&server, access, "Patient/p2").await.0,
        404,
        "the launch's patient only"
    );
    // The launch id is used up: a second authorization with it comes back as an error.
    let (again, _) = ehr_app
        .authorize_url(oauth2::CsrfToken::new_random)
        .add_scopes(["launch", "patient/*.rs"].map(|s| oauth2::Scope::new(s.into())))
        .add_extra_param("aud", &server.base)
        .add_extra_param("launch", launch["launch"].as_str().unwrap())
        .set_pkce_challenge(oauth2::PkceCodeChallenge::new_random_sha256().0)
        .url();
    let location = user_part(&server, again.as_str(), "dr").await;
    assert_eq!(
        query_value(&location, "error").as_deref(),
        Some("invalid_request"),
        "{location}"
    );
    assert!(query_value(&location, "code").is_none());
}
smart!(oauth2_crate_flows);

async fn admin_call(
    server: &Server,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server
        .client
        .request(method, format!("{}/auth/admin/{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    common::json(request.send().await.unwrap()).await
}

/// The admin API: a provisioning script's system token and an admin user may manage
/// clients and users; nobody else may.
async fn admin_api(server: Server) {
    register(&server);
    let backend = backend_token(&server).await;
    assert_eq!(
        admin_call(&server, None, reqwest::Method::GET, "clients", None)
            .await
            .0,
        401
    );
    let patient = patient_launch(&server).await;
    let (status, outcome) = admin_call(
        &server,
        patient["access_token"].as_str(),
        reqwest::Method::GET,
        "clients",
        None,
    )
    .await;
    assert_eq!(
        (status, outcome["resourceType"].as_str()),
        (403, Some("OperationOutcome"))
    );
    let (status, made) = admin_call(&server, Some(&backend), reqwest::Method::POST, "clients",
        Some(json!({"id": "portal", "type": "confidential-symmetric", "scopes": "user/*.rs", "redirect_uris": ["https://portal.example/cb"]}))).await;
    assert_eq!(status, 201, "{made}");
    assert!(
        made["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() >= 40)
    );
    let (_, listed) = admin_call(
        &server,
        Some(&backend),
        reqwest::Method::GET,
        "clients",
        None,
    )
    .await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "portal" && c.get("secret_sha256").is_none())
    );
    let again = admin_call(
        &server,
        Some(&backend),
        reqwest::Method::POST,
        "clients",
        Some(json!({"id": "portal", "type": "public", "scopes": "user/*.rs"})),
    )
    .await;
    assert_eq!(again.0, 409);
    let (status, outcome) = admin_call(&server, Some(&backend), reqwest::Method::POST, "users",
        Some(json!({"username": "boss", "password": "password", "role": "admin", "fhir_user": "Practitioner/b1", "create_resource": true}))).await;
    assert_eq!(status, 400);
    assert_eq!(common::issue_expressions(&outcome), vec!["password"]);
    let (status, _) = admin_call(&server, Some(&backend), reqwest::Method::POST, "users",
        Some(json!({"username": "boss", "password": PASSWORD, "role": "admin", "fhir_user": "Practitioner/b1", "create_resource": true}))).await;
    assert_eq!(status, 201);
    // The admin signs in (user/ scopes) and uses the admin API too.
    let location = sign_in(&server, "boss", PASSWORD, "user/*.rs", &[])
        .await
        .unwrap();
    let (_, token) = exchange(&server, &query_value(&location, "code").unwrap(), VERIFIER).await;
    let admin = token["access_token"].as_str().unwrap();
    let (status, users) =
        admin_call(&server, Some(admin), reqwest::Method::GET, "users", None).await;
    assert_eq!(status, 200);
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "pat" && u.get("password_hash").is_none())
    );
    let (status, reset) = admin_call(
        &server,
        Some(admin),
        reqwest::Method::POST,
        "users/pat/reset-password",
        None,
    )
    .await;
    assert_eq!(status, 201);
    let link = reset["reset_link"].as_str().unwrap();
    assert_eq!(server.client.get(link).send().await.unwrap().status(), 200);
    assert_eq!(
        admin_call(
            &server,
            Some(admin),
            reqwest::Method::POST,
            "users/nobody/reset-password",
            None
        )
        .await
        .0,
        404
    );
}
smart!(admin_api);

/// CORS: a registered client's redirect-URI origin may call the token endpoint and the
/// API from a browser (within seconds of its registration); another origin may not.
async fn cors_for_registered_origins(server: Server) {
    register(&server);
    let preflight = |origin: &'static str, path: &'static str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, format!("{}/{path}", server.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let started = std::time::Instant::now();
    loop {
        let answer = preflight("http://app.example", "auth/token").await.unwrap();
        if answer
            .headers()
            .get("access-control-allow-origin")
            .is_some_and(|v| v == "http://app.example")
        {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the registered origin was not let in"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let api = preflight("http://app.example", "Patient").await.unwrap();
    assert_eq!(
        api.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    let other = preflight("https://evil.example", "auth/token")
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
smart!(cors_for_registered_origins);

/// Tokens the API must refuse, each with 401: unsigned (`alg: none`), signed HS256 with the
/// server's public key as the secret, a changed signature, an unknown key id, one that
/// expired, and hostile forms of the header.
async fn forged_and_expired_tokens(backend: common::Backend) {
    let Some(server) = clocked_smart_server(backend).await else {
        return;
    };
    register(&server);
    // A token that may only read, to be tampered with.
    let (status, body) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
        ],
        Some(("backend", "backend-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get(&server, &token, "Patient").await.0, 200);
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = |value: &Value| {
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            value.to_string(),
        )
    };
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[0])
            .unwrap(),
    )
    .unwrap();
    // alg none, the claims as they were.
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    // HS256 with the server's public key (its JWK, as published) as the shared secret.
    let (_, jwks) = common::json(
        server
            .client
            .get(format!("{}/.well-known/jwks.json", server.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = header["kid"].as_str().map(str::to_owned);
    let hs = jsonwebtoken::encode(
        &hs_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(jwks["keys"][0].to_string().as_bytes()).unwrap(),
    )
    .unwrap();
    // The signature changed (one character), and the claims changed under the signature.
    let mut flipped = parts[2].to_owned();
    let first = if flipped.starts_with('A') { "B" } else { "A" };
    flipped.replace_range(0..1, first);
    let tampered_signature = format!("{}.{}.{flipped}", parts[0], parts[1]);
    let mut wider = claims.clone();
    wider["scope"] = json!("system/*.cruds");
    let tampered_claims = format!("{}.{}.{}", parts[0], b64(&wider), parts[2]);
    let mut unknown = header.clone();
    unknown["kid"] = json!("not-our-key");
    let unknown_kid = format!("{}.{}.{}", b64(&unknown), parts[1], parts[2]);
    for (name, forged) in [
        ("alg none", unsigned),
        ("HS256 with the public key", hs),
        ("changed signature", tampered_signature),
        ("unknown kid", unknown_kid),
        ("long garbage", "x".repeat(6000)),
    ] {
        let (status, outcome) = get(&server, &forged, "Patient").await;
        assert_eq!(status, 401, "{name}: {outcome}");
    }
    // Claims changed under a good signature: the cached principal of the real token at most
    // (the same rights), never the changed claims.
    let (status, _) = with_token(
        &server,
        &tampered_claims,
        reqwest::Method::PUT,
        "Patient/x1",
        Some(&json!({"resourceType": "Patient", "id": "x1"})),
    )
    .await;
    assert_ne!(status, 201, "changed claims gave write access");
    for header in ["Bearer", "Basic abc", "Bearer  ", "bearer\u{7f}x"] {
        let answer = server
            .client
            .get(server.url("Patient"))
            .header("authorization", header)
            .send()
            .await;
        if let Ok(answer) = answer {
            assert_eq!(answer.status(), 401, "{header:?}");
        }
    }
    // An hour and a minute later the token has expired.
    server.advance_clock(3660).await;
    assert_eq!(
        get(&server, &token, "Patient").await.0,
        401,
        "an expired token"
    );
}

on_both!(forged_and_expired_tokens);

/// The remaining refusals of the code flow: a code used after its 60 seconds, a missing or
/// blank verifier, a request without aud or without a PKCE challenge, and hostile forms.
async fn code_flow_refusals(backend: common::Backend) {
    let Some(server) = clocked_smart_server(backend).await else {
        return;
    };
    register(&server);
    let scope = "launch/patient patient/*.rs";
    for verifier in ["", "-"] {
        let location = sign_in(&server, "pat", PASSWORD, scope, &[]).await.unwrap();
        let code = query_value(&location, "code").unwrap();
        let pairs: Vec<(&str, &str)> = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", APP_REDIRECT),
            ("client_id", "app"),
        ]
        .into_iter()
        .chain((verifier != "-").then_some(("code_verifier", verifier)))
        .collect();
        let (status, refused) = form(&server, "auth/token", &pairs, None).await;
        assert_eq!(
            (status, refused["error"].as_str()),
            (400, Some("invalid_grant")),
            "verifier {verifier:?}"
        );
    }
    let location = sign_in(&server, "pat", PASSWORD, scope, &[]).await.unwrap();
    let code = query_value(&location, "code").unwrap();
    server.advance_clock(61).await;
    let (status, refused) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant")),
        "a code after 60 s"
    );
    for missing in ["aud", "code_challenge"] {
        let mut params =
            authorize_params(&server, scope, &smart_auth::pkce::challenge_of(VERIFIER));
        params.retain(|(name, _)| name != missing);
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let answer = Browser::new()
            .get(&format!("{}/auth/authorize?{query}", server.base))
            .await;
        assert_eq!(answer.status(), 302, "without {missing}");
        let location = answer.headers()["location"].to_str().unwrap();
        assert!(location.starts_with(APP_REDIRECT));
        assert_eq!(
            query_value(location, "error").as_deref(),
            Some("invalid_request"),
            "without {missing}"
        );
    }
    // Hostile forms: too large, thousands of fields, control characters.
    let huge = "a".repeat(200_000);
    let (status, refused) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", huge.as_str()),
        ],
        Some(("backend", "backend-secret-0123456789")),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let many: Vec<(String, String)> = (0..5000)
        .map(|n| (format!("f{n}"), "x".to_owned()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let (status, _) = form(&server, "auth/token", &many, None).await;
    assert!(status == 400 || status == 401, "{status}");
    let control = sign_in(&server, "pat\u{0}\u{1b}", "pass\u{7}word!!!!", scope, &[])
        .await
        .unwrap_err();
    assert!(control.contains("wrong"), "{control}");
}

on_both!(code_flow_refusals);

/// AuditEvent is outside every wildcard: a backend's `system/*.cruds` does not reach it, a
/// scope that names it does.
async fn audit_events_outside_wildcards(server: Server) {
    register(&server);
    let wildcard = backend_token(&server).await;
    let (status, outcome) = get(&server, &wildcard, "AuditEvent").await;
    assert_eq!(status, 403, "{outcome}");
    cli_ok(
        &server,
        &[
            "client",
            "create",
            "--id",
            "auditor",
            "--type",
            "confidential-symmetric",
            "--secret",
            "auditor-secret-0123456789",
            "--scopes",
            "system/AuditEvent.cruds system/Patient.rs",
        ],
    );
    let (status, body) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/AuditEvent.cruds system/Patient.rs"),
        ],
        Some(("auditor", "auditor-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let auditor = body["access_token"].as_str().unwrap();
    assert_eq!(get(&server, auditor, "AuditEvent").await.0, 200);
    // AuditEvents are the trail's, not resources anyone writes: even a token that names
    // them gets 405. The trail's events about p1 (the reads of p1 below) reach a token
    // that names AuditEvent, never the wildcard one by `_revinclude`, a system-level
    // history or `$everything`.
    let event = json!({"resourceType": "AuditEvent", "id": "ae1",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/d1"}, "requestor": true}],
        "source": {"observer": {"reference": "Organization/o1"}},
        "entity": [{"what": {"reference": "Patient/p1"}}]});
    let (status, body) = with_token(
        &server,
        auditor,
        reqwest::Method::PUT,
        "AuditEvent/ae1",
        Some(&event),
    )
    .await;
    assert_eq!(status, 405, "{body}");
    let has_event = |bundle: &Value| {
        entries(bundle)
            .iter()
            .any(|e| e["resource"]["resourceType"] == "AuditEvent")
    };
    let (status, _) = get(&server, &wildcard, "Patient/p1").await;
    assert!(status == 200 || status == 404);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, named) = get(&server, auditor, "AuditEvent?patient=p1").await;
    assert!(status == 200 && has_event(&named), "{named}");
    let revinclude = "Patient?_id=p1&_revinclude=AuditEvent:patient";
    for path in [revinclude, "_history", "Patient/p1/$everything"] {
        let (status, answer) = get(&server, &wildcard, path).await;
        assert!(status == 200 || status == 404, "{path}: {answer}");
        assert!(!has_event(&answer), "{path}: {answer}");
    }
}
smart!(audit_events_outside_wildcards);

/// A v2 scope with a query constraint (`system/Observation.rs?category=laboratory`): its
/// searches find only what meets it, a read of what does not meet it is 404.
async fn query_constrained_scopes(server: Server) {
    register(&server);
    let writer = backend_token(&server).await;
    for (id, category) in [("lab1", "laboratory"), ("vit1", "vital-signs")] {
        let observation = json!({"resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
            "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}});
        assert_eq!(
            with_token(
                &server,
                &writer,
                reqwest::Method::PUT,
                &format!("Observation/{id}"),
                Some(&observation)
            )
            .await
            .0,
            201
        );
    }
    // lab2 was a laboratory result once, and is a vital sign now.
    let lab2 = |category: &str| {
        json!({"resourceType": "Observation", "id": "lab2", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
            "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}})
    };
    for category in ["laboratory", "vital-signs"] {
        let (status, _) = with_token(
            &server,
            &writer,
            reqwest::Method::PUT,
            "Observation/lab2",
            Some(&lab2(category)),
        )
        .await;
        assert!(status == 200 || status == 201);
    }
    let scope = "system/Observation.cruds?category=laboratory";
    cli_ok(
        &server,
        &[
            "client",
            "create",
            "--id",
            "labs",
            "--type",
            "confidential-symmetric",
            "--secret",
            "labs-secret-0123456789",
            "--scopes",
            scope,
        ],
    );
    let (status, body) = form(
        &server,
        "auth/token",
        &[("grant_type", "client_credentials"), ("scope", scope)],
        Some(("labs", "labs-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let labs = body["access_token"].as_str().unwrap();
    let (_, bundle) = get(&server, labs, "Observation").await;
    assert_eq!(resource_ids(&bundle), vec!["lab1"]);
    assert_eq!(get(&server, labs, "Observation/lab1").await.0, 200);
    assert_eq!(get(&server, labs, "Observation/vit1").await.0, 404);
    assert_eq!(get(&server, labs, "Patient/p1").await.0, 403);

    // Versions: each one answered must meet the constraint.
    assert_eq!(
        get(&server, labs, "Observation/lab1/_history/1").await.0,
        200
    );
    assert_eq!(
        get(&server, labs, "Observation/vit1/_history/1").await.0,
        404
    );
    assert_eq!(
        get(&server, labs, "Observation/lab2/_history/1").await.0,
        200
    );
    assert_eq!(
        get(&server, labs, "Observation/lab2/_history/2").await.0,
        404
    );
    let (status, history) = get(&server, labs, "Observation/lab2/_history").await;
    assert_eq!(status, 200);
    let versions: Vec<String> = entries(&history)
        .iter()
        .map(|entry| {
            entry["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(versions, ["1"], "{history}");
    assert!(
        history.get("total").is_none(),
        "a total would count the hidden version"
    );
    let (_, history) = get(&server, labs, "Observation/_history").await;
    let mut seen: Vec<String> = entries(&history)
        .iter()
        .map(|entry| {
            let resource = &entry["resource"];
            format!(
                "{}/{}",
                resource["id"].as_str().unwrap(),
                resource["meta"]["versionId"].as_str().unwrap()
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ["lab1/1", "lab2/1"]);

    // Writes: what is written must meet it, and so must what it replaces or removes.
    let observation = |id: &str, category: &str| {
        let mut resource = lab2(category);
        resource["id"] = json!(id);
        resource
    };
    let server_ref = &server;
    let send = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let path = path.to_owned();
        async move {
            with_token(server_ref, labs, method, &path, body.as_ref())
                .await
                .0
        }
    };
    let mut new_lab = observation("x", "laboratory");
    new_lab.as_object_mut().unwrap().remove("id");
    assert_eq!(
        send(reqwest::Method::POST, "Observation", Some(new_lab)).await,
        201
    );
    let mut new_vital = observation("x", "vital-signs");
    new_vital.as_object_mut().unwrap().remove("id");
    assert_eq!(
        send(reqwest::Method::POST, "Observation", Some(new_vital)).await,
        403
    );
    let to_vital = observation("lab1", "vital-signs");
    assert_eq!(
        send(reqwest::Method::PUT, "Observation/lab1", Some(to_vital)).await,
        403
    );
    let over_vital = observation("vit1", "laboratory");
    assert_eq!(
        send(reqwest::Method::PUT, "Observation/vit1", Some(over_vital)).await,
        404
    );
    assert_eq!(
        send(reqwest::Method::DELETE, "Observation/vit1", None).await,
        404
    );
    assert_eq!(
        send(
            reqwest::Method::PUT,
            "Observation/lab1",
            Some(observation("lab1", "laboratory"))
        )
        .await,
        200
    );
    let patch = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
    let (status, _) = common::json(
        server
            .client
            .patch(format!("{}/Observation/lab1", server.base))
            .bearer_auth(labs)
            .header("content-type", "application/json-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "PATCH is not open to a constrained scope");
    // A transaction: one entry outside the constraint refuses it all.
    let transaction = |category: &str| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation("t1", "laboratory"), "request": {"method": "PUT", "url": "Observation/t1"}},
            {"resource": observation("t2", category), "request": {"method": "PUT", "url": "Observation/t2"}}]})
    };
    let (status, outcome) = with_token(
        &server,
        labs,
        reqwest::Method::POST,
        "",
        Some(&transaction("vital-signs")),
    )
    .await;
    assert_eq!(status, 403, "{outcome}");
    assert_eq!(
        get(&server, &writer, "Observation/t1").await.0,
        404,
        "nothing was written"
    );
    let (status, outcome) = with_token(
        &server,
        labs,
        reqwest::Method::POST,
        "",
        Some(&transaction("laboratory")),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(
        send(reqwest::Method::DELETE, "Observation/lab1", None).await,
        204
    );
}
smart!(query_constrained_scopes);

/// An outside party's keys served over HTTP as a JWKS (an identity provider, or a backend
/// client that publishes its keys): what it serves can change (key rotation), and it
/// counts the fetches. Each answer takes 50 ms, so fetches that should be one overlap.
struct KeyHost {
    url: String,
    jwks: std::sync::Arc<std::sync::Mutex<Value>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl KeyHost {
    async fn start(jwks: Value) -> KeyHost {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = std::sync::Arc::new(std::sync::Mutex::new(jwks));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let answer = {
            let (served, fetches) = (served.clone(), fetches.clone());
            move || {
                let (served, fetches) = (served.clone(), fetches.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    let body = served.lock().unwrap().to_string();
                    (
                        [
                            ("cache-control", "public, max-age=3600"),
                            ("content-type", "application/json"),
                        ],
                        body,
                    )
                }
            }
        };
        let app = axum::Router::new().route("/jwks", axum::routing::get(answer));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        KeyHost {
            url,
            jwks: served,
            fetches,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A tenant that trusts an outside identity provider (as a clinic on Keycloak or Entra ID
/// does): the provider's JWKS is fetched once for a rush of its tokens and kept as its
/// Cache-Control allows; its claims map to scopes (bounded by what it may grant here),
/// patient and role; every way a token can be wrong is refused; a rotated key is fetched;
/// a provider no longer trusted is refused. And a backend client whose keys are at a JWKS
/// URL gets a token with an assertion signed by one of them.
async fn outside_keys(backend: common::Backend) {
    let Some(server) = clocked_smart_server(backend).await else {
        return;
    };
    register(&server);
    let backend = backend_token(&server).await;
    let p2 = json!({"resourceType": "Patient", "id": "p2"});
    let (status, _) = with_token(
        &server,
        &backend,
        reqwest::Method::PUT,
        "Patient/p2",
        Some(&p2),
    )
    .await;
    assert_eq!(status, 201);
    let first = smart_auth::jwt::SigningKey::generate().unwrap();
    let idp = KeyHost::start(smart_auth::jwt::jwks([&first])).await;
    let iss = format!("{}/realms/clinic", idp.url);
    let jwks_url = format!("{}/jwks", idp.url);
    cli_ok(
        &server,
        &[
            "issuer",
            "add",
            "--issuer",
            &iss,
            "--jwks-url",
            &jwks_url,
            "--audience",
            &server.base,
            "--scopes",
            "openid patient/*.rs user/*.rs",
        ],
    );
    let claims = |extra: Value| {
        let mut claims = json!({"iss": iss, "aud": ["account", server.base], "exp": unix_now() + 600,
            "sub": "portal-user", "azp": "portal"});
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        claims
    };
    let patient_claims = |jti: &str| {
        claims(
            json!({"jti": jti, "scope": "openid patient/*.rs", "patient": "Patient/p1", "roles": ["patient"]}),
        )
    };

    // Thirty different tokens at once on a cold cache: the JWKS is fetched once.
    let tokens: Vec<String> = (0..30)
        .map(|i| first.sign(&patient_claims(&format!("t{i}"))).unwrap())
        .collect();
    let reads =
        futures::future::join_all(tokens.iter().map(|t| get(&server, t, "Patient/p1"))).await;
    assert!(reads.iter().all(|(status, _)| *status == 200), "{reads:?}");
    assert_eq!(idp.fetches(), 1, "one fetch for a rush of tokens");

    // The patient claim confines; the provider's scopes count only within its allowance.
    let patient = &tokens[0];
    assert_eq!(get(&server, patient, "Patient/p2").await.0, 404);
    let (status, found) = get(&server, patient, "Patient").await;
    assert_eq!((status, resource_ids(&found)), (200, vec!["p1".to_owned()]));
    let beyond = first
        .sign(&claims(
            json!({"scope": "patient/*.cruds", "patient": "p1", "roles": "patient"}),
        ))
        .unwrap();
    assert_eq!(
        get(&server, &beyond, "Patient/p1").await.0,
        403,
        "a scope beyond the allowance"
    );
    // The role claim bounds user/ scopes; without a role they permit nothing.
    let desk = first
        .sign(&claims(
            json!({"scope": "user/*.rs", "roles": ["staff", "front-desk"]}),
        ))
        .unwrap();
    assert_eq!(get(&server, &desk, "Patient/p2").await.0, 200);
    assert_eq!(
        get(&server, &desk, "Claim").await.0,
        403,
        "front desk reads no Claim"
    );
    let roleless = first.sign(&claims(json!({"scope": "user/*.rs"}))).unwrap();
    assert_eq!(get(&server, &roleless, "Patient/p2").await.0, 403);

    // Every way a token can be wrong: 401.
    let mut wrong_aud = patient_claims("w1");
    wrong_aud["aud"] = json!("https://other.example/fhir");
    let mut expired = patient_claims("w2");
    expired["exp"] = json!(unix_now() - 10);
    let mut untrusted = patient_claims("w3");
    untrusted["iss"] = json!("https://sso.elsewhere.example");
    let other = smart_auth::jwt::SigningKey::generate().unwrap();
    let mut same_kid = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    same_kid.kid = Some(first.kid.clone());
    let impostor = jsonwebtoken::encode(
        &same_kid,
        &patient_claims("w4"),
        &jsonwebtoken::EncodingKey::from_rsa_der(other.pkcs1_der()),
    )
    .unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(first.kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &patient_claims("w5"),
        &jsonwebtoken::EncodingKey::from_secret(
            smart_auth::jwt::jwks([&first]).to_string().as_bytes(),
        )
        .unwrap(),
    )
    .unwrap();
    let b64 = |value: &Value| {
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            value.to_string(),
        )
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none"})),
        b64(&patient_claims("w6"))
    );
    for (token, what) in [
        (first.sign(&wrong_aud).unwrap(), "another audience"),
        (first.sign(&expired).unwrap(), "expired"),
        (first.sign(&untrusted).unwrap(), "an issuer not trusted"),
        (impostor, "another key under the provider's kid"),
        (hs256, "HS256 with the provider's JWKS as secret"),
        (unsigned, "alg none"),
    ] {
        let (status, outcome) = get(&server, &token, "Patient/p1").await;
        assert_eq!(status, 401, "{what}: {outcome}");
    }

    // The provider rotates its key. A token of the new key is good once the set is fetched
    // again, which an unknown kid triggers no sooner than 30 s after the last fetch.
    let second = smart_auth::jwt::SigningKey::generate().unwrap();
    *idp.jwks.lock().unwrap() = smart_auth::jwt::jwks([&second]);
    let rotated = second.sign(&patient_claims("r1")).unwrap();
    assert_eq!(
        get(&server, &rotated, "Patient/p1").await.0,
        401,
        "fetched too recently"
    );
    server.advance_clock(31).await;
    assert_eq!(
        get(&server, &rotated, "Patient/p1").await.0,
        200,
        "after the refetch"
    );
    assert_eq!(idp.fetches(), 2);

    // The admin API: a bad provider is refused naming the field; removing one works once.
    let (server_ref, backend_ref) = (&server, &backend);
    let admin = |method, path: String, body| async move {
        admin_call(server_ref, Some(backend_ref), method, &path, body).await
    };
    let (status, outcome) = admin(
        reqwest::Method::POST,
        "issuers".into(),
        Some(
            json!({"issuer": "https://sso.example", "jwks_url": "http://sso.example/jwks",
            "audience": server.base, "scopes": "patient/*.rs"}),
        ),
    )
    .await;
    assert_eq!(
        (status, outcome["issue"][0]["expression"][0].as_str()),
        (400, Some("jwks_url")),
        "{outcome}"
    );
    let (status, listed) = admin(reqwest::Method::GET, "issuers".into(), None).await;
    assert_eq!(
        (status, listed[0]["issuer"].as_str()),
        (200, Some(iss.as_str()))
    );
    let removal = format!(
        "issuers?issuer={}",
        encode_form(&[("x", &iss)]).trim_start_matches("x=")
    );
    assert_eq!(
        admin(reqwest::Method::DELETE, removal.clone(), None)
            .await
            .0,
        200
    );
    assert_eq!(
        admin(reqwest::Method::DELETE, removal.clone(), None)
            .await
            .0,
        404
    );
    let after = second.sign(&patient_claims("r2")).unwrap();
    assert_eq!(
        get(&server, &after, "Patient/p1").await.0,
        401,
        "a provider no longer trusted"
    );

    // A backend client whose keys are at a JWKS URL (RS384, kid c1).
    let client_key = smart_auth::jwt::SigningKey::generate().unwrap();
    let mut jwk = serde_json::to_value(client_key.public_jwk()).unwrap();
    jwk["kid"] = json!("c1");
    jwk["alg"] = json!("RS384");
    let host = KeyHost::start(json!({"keys": [jwk]})).await;
    let refused = server.run_cli(&[
        "client",
        "create",
        "--id",
        "svc-far",
        "--type",
        "confidential-asymmetric",
        "--jwks-url",
        "http://keys.example/jwks",
        "--scopes",
        "system/Patient.rs",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--jwks-url"));
    let client_jwks = format!("{}/jwks", host.url);
    cli_ok(
        &server,
        &[
            "client",
            "create",
            "--id",
            "svc-url",
            "--type",
            "confidential-asymmetric",
            "--jwks-url",
            &client_jwks,
            "--scopes",
            "system/Patient.rs",
        ],
    );
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS384);
    header.kid = Some("c1".into());
    let assertion = jsonwebtoken::encode(
        &header,
        &json!({"iss": "svc-url", "sub": "svc-url", "aud": format!("{}/auth/token", server.base),
            "exp": unix_now() + 240, "jti": "a1"}),
        &jsonwebtoken::EncodingKey::from_rsa_der(client_key.pkcs1_der()),
    )
    .unwrap();
    let (status, token) = form(
        &server,
        "auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.rs"),
            ("client_assertion_type", smart_auth::client_auth::JWT_BEARER),
            ("client_assertion", &assertion),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(host.fetches(), 1);
    assert_eq!(
        get(
            &server,
            token["access_token"].as_str().unwrap(),
            "Patient/p2"
        )
        .await
        .0,
        200
    );
}
on_both!(outside_keys);

/// A patient's app looks for openings, holds and books for its own patient only: the
/// answer proposes visits for that patient; asking for another patient is refused.
async fn patient_finds_own_openings(server: Server) {
    register(&server);
    let backend = backend_token(&server).await;
    let schedule = json!({"resourceType": "Schedule", "id": "s-dr", "active": true,
        "actor": [{"reference": "Practitioner/d1"}],
        "extension": [{"url": "https://medplum.com/fhir/StructureDefinition/SchedulingParameters", "extension": [
            {"url": "availability", "valueTiming": {"repeat": {"dayOfWeek": ["mon"], "timeOfDay": ["09:00:00"], "duration": 1, "durationUnit": "h"}}},
            {"url": "duration", "valueDuration": {"value": 30, "unit": "min"}},
            {"url": "timezone", "valueCode": "Europe/Berlin"}]}]});
    let (status, body) = with_token(
        &server,
        &backend,
        reqwest::Method::PUT,
        "Schedule/s-dr",
        Some(&schedule),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = patient_launch(&server).await;
    let access = token["access_token"].as_str().unwrap();
    let range = "start=2027-03-15T00:00:00Z&end=2027-03-16T00:00:00Z";
    let (status, bundle) = get(
        &server,
        access,
        &format!("Appointment/$find?schedule=s-dr&{range}"),
    )
    .await;
    assert_eq!(status, 200, "{bundle}");
    let found = entries(&bundle);
    assert_eq!(found.len(), 2, "{bundle}");
    for entry in &found {
        let participants = entry["resource"]["participant"].as_array().unwrap();
        assert!(
            participants
                .iter()
                .any(|p| p["actor"]["reference"] == "Patient/p1"),
            "{entry}"
        );
    }
    assert_eq!(found[0]["resource"]["start"], "2027-03-15T09:00:00+01:00");
    let (status, outcome) = get(
        &server,
        access,
        &format!("Appointment/$find?schedule=s-dr&patient=Patient/p2&{range}"),
    )
    .await;
    assert_eq!(status, 403, "{outcome}");
    // It holds and books for its own patient only.
    let opening = found[0]["resource"].clone();
    let parameters = |opening: &Value| json!({"resourceType": "Parameters", "parameter": [{"name": "appointment", "resource": opening}]});
    let mut theirs = opening.clone();
    for participant in theirs["participant"].as_array_mut().unwrap() {
        if participant["actor"]["reference"] == "Patient/p1" {
            participant["actor"]["reference"] = json!("Patient/p2");
        }
    }
    let (status, outcome) = with_token(
        &server,
        access,
        reqwest::Method::POST,
        "Appointment/$book",
        Some(&parameters(&theirs)),
    )
    .await;
    assert_eq!(status, 403, "{outcome}");
    let (status, held) = with_token(
        &server,
        access,
        reqwest::Method::POST,
        "Appointment/$hold",
        Some(&parameters(&opening)),
    )
    .await;
    assert_eq!(status, 201, "{held}");
    let (status, booked) = with_token(
        &server,
        access,
        reqwest::Method::POST,
        &format!("Appointment/{}/$book", held["id"].as_str().unwrap()),
        Some(&json!({"resourceType": "Parameters"})),
    )
    .await;
    assert_eq!(
        (status, booked["status"].as_str()),
        (200, Some("booked")),
        "{booked}"
    );
    // Each change is attributed to the patient (the token's fhirUser) and its app.
    let (status, provenance) = get(
        &server,
        &backend,
        &format!(
            "Provenance?target=Appointment/{}",
            held["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(status, 200, "{provenance}");
    let agents: Vec<(String, String)> = entries(&provenance)
        .iter()
        .map(|e| {
            let who = &e["resource"]["agent"][0]["who"];
            (
                who["reference"].as_str().unwrap_or_default().to_owned(),
                who["display"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(agents.len(), 2, "{provenance}");
    assert!(
        agents
            .iter()
            .all(|a| a == &("Patient/p1".to_owned(), "app".to_owned())),
        "{agents:?}"
    );
}
smart!(patient_finds_own_openings);
