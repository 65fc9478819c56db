//! Signing in as a user would, for the tests of `--auth smart`: the authorize, login and
//! consent pages driven over HTTP (a browser-like session that keeps the flow cookie), and
//! the code exchanged for a token at the token endpoint.

use reqwest::redirect::Policy;
use serde_json::Value;

use super::Server;

pub const APP_REDIRECT: &str = "http://app.example/cb";
pub const PASSWORD: &str = "correct horse battery";
pub const VERIFIER: &str = "a-pkce-verifier-of-enough-length-0123456789abcdef";

pub fn encode_form<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish()
}

pub async fn form(
    server: &Server,
    path: &str,
    pairs: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut request = server
        .client
        .post(format!("{}/{path}", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(pairs));
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    if path == "auth/token" {
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    super::json(response).await
}

/// The value of a form field in a page.
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end]
        .replace("&amp;", "&")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
}

/// A browser-like session: no automatic redirects, the flow cookie kept.
pub struct Browser {
    pub client: reqwest::Client,
    pub cookie: String,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookie: String::new(),
        }
    }

    pub async fn post(&mut self, url: &str, pairs: &[(String, String)]) -> reqwest::Response {
        let response = self
            .client
            .post(url)
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_form(pairs))
            .send()
            .await
            .unwrap();
        self.keep_cookie(&response);
        response
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let response = self.client.get(url).send().await.unwrap();
        self.keep_cookie(&response);
        response
    }

    pub fn keep_cookie(&mut self, response: &reqwest::Response) {
        if let Some(cookie) = response.headers().get("set-cookie") {
            let cookie = cookie.to_str().unwrap();
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
                "{cookie}"
            );
            self.cookie = cookie.split(';').next().unwrap().to_owned();
        }
    }
}

pub fn authorize_params(server: &Server, scope: &str, challenge: &str) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", "app"),
        ("redirect_uri", APP_REDIRECT),
        ("scope", scope),
        ("state", "st-123"),
        ("aud", server.base.as_str()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect()
}

/// Drives the authorize, login and consent pages as a user would; the login page's
/// answer when the login fails, else the redirect back to the app.
pub async fn sign_in(
    server: &Server,
    username: &str,
    password: &str,
    scope: &str,
    extra_consent: &[(&str, &str)],
) -> Result<String, String> {
    let mut browser = Browser::new();
    let params = authorize_params(server, scope, &smart_auth::pkce::challenge_of(VERIFIER));
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let login_page = browser
        .get(&format!("{}/auth/authorize?{query}", server.base))
        .await;
    assert_eq!(login_page.status(), 200);
    assert_eq!(login_page.headers()["x-frame-options"], "DENY");
    assert!(
        login_page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let html = login_page.text().await.unwrap();
    let mut login = params.clone();
    login.push(("csrf".into(), field(&html, "csrf")));
    login.push(("username".into(), username.into()));
    login.push(("password".into(), password.into()));
    let consent_page = browser
        .post(&format!("{}/auth/login", server.base), &login)
        .await;
    let html = consent_page.text().await.unwrap();
    if !html.contains("name=\"ticket\"") {
        return Err(html);
    }
    let mut consent = params.clone();
    for name in ["csrf", "username", "expires", "ticket"] {
        consent.push((name.into(), field(&html, name)));
    }
    for word in scope.split(' ') {
        consent.push(("grant".into(), word.into()));
    }
    consent.push(("decision".into(), "allow".into()));
    for (name, value) in extra_consent {
        consent.retain(|(n, _)| n != name);
        if !value.is_empty() {
            consent.push(((*name).into(), (*value).into()));
        }
    }
    let redirect = browser
        .post(&format!("{}/auth/consent", server.base), &consent)
        .await;
    if redirect.status() != 302 {
        return Err(format!(
            "{}: {}",
            redirect.status(),
            redirect.text().await.unwrap()
        ));
    }
    Ok(redirect.headers()["location"].to_str().unwrap().to_owned())
}

pub fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

pub async fn exchange(server: &Server, code: &str, verifier: &str) -> (u16, Value) {
    form(
        server,
        "auth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", APP_REDIRECT),
            ("client_id", "app"),
            ("code_verifier", verifier),
        ],
        None,
    )
    .await
}

/// PUTs each resource at its `Type/id` with `token`; each must be created or updated.
pub async fn put_all(server: &Server, token: &str, resources: &[Value]) {
    for resource in resources {
        put(server, token, resource).await;
    }
}

/// PUTs the resource at its `Type/id` with `token`; it must be created or updated.
pub async fn put(server: &Server, token: &str, resource: &Value) {
    let path = format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    let (status, body) =
        with_token(server, token, reqwest::Method::PUT, &path, Some(resource)).await;
    assert!(status == 200 || status == 201, "{path}: {status} {body}");
}

/// `method` on `path` below the base with `token`, and `body` as FHIR JSON.
pub async fn with_token(
    server: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = server
        .client
        .request(method, format!("{}/{path}", server.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
    }
    super::json(request.send().await.unwrap()).await
}

/// Registers a confidential client by the command line (`client create`) and returns a
/// client-credentials token of `scopes`.
pub async fn backend_client(server: &Server, id: &str, secret: &str, scopes: &str) -> String {
    let output = server.run_cli(&[
        "client",
        "create",
        "--id",
        id,
        "--type",
        "confidential-symmetric",
        "--secret",
        secret,
        "--scopes",
        scopes,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    client_token(server, id, secret, scopes).await
}

/// A client-credentials token of `scopes` for a registered confidential client.
pub async fn client_token(server: &Server, id: &str, secret: &str, scopes: &str) -> String {
    let pairs = [("grant_type", "client_credentials"), ("scope", scopes)];
    let (status, token) = form(server, "auth/token", &pairs, Some((id, secret))).await;
    assert_eq!(status, 200, "{token}");
    token["access_token"].as_str().unwrap().to_owned()
}

/// Registers the public app `app` (redirect [`APP_REDIRECT`]) with `scopes`.
pub fn public_app(server: &Server, scopes: &str) {
    let output = server.run_cli(&[
        "client",
        "create",
        "--id",
        "app",
        "--type",
        "public",
        "--redirect-uri",
        APP_REDIRECT,
        "--scopes",
        scopes,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Adds a user by the command line (`user create`, password [`PASSWORD`]), signs them in
/// through the pages with `scope` and returns their access token.
pub async fn user_token(
    server: &Server,
    (username, role, fhir_user): (&str, &str, &str),
    scope: &str,
) -> String {
    let output = server.run_cli(&[
        "user",
        "create",
        "--username",
        username,
        "--password",
        PASSWORD,
        "--role",
        role,
        "--fhir-user",
        fhir_user,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let location = sign_in(server, username, PASSWORD, scope, &[])
        .await
        .unwrap();
    let code = query_value(&location, "code").unwrap();
    let (status, token) = exchange(server, &code, VERIFIER).await;
    assert_eq!(status, 200, "{token}");
    token["access_token"].as_str().unwrap().to_owned()
}
