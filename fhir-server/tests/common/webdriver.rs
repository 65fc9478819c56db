//! A real browser for the tests of pages: Debian's chromium, headless, driven through
//! chromedriver's WebDriver API.
#![allow(dead_code)]

use serde_json::{Value, json};

/// A real browser: Debian's chromium, headless, driven through chromedriver's WebDriver
/// API. Without them the test fails when `FHIR_TEST_REQUIRE_BROWSER=1` (as `.ci/run` sets)
/// and is skipped with a note otherwise.
pub struct WebDriver {
    process: std::process::Child,
    http: reqwest::Client,
    session: String,
    root: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl WebDriver {
    pub async fn start() -> Option<WebDriver> {
        if !std::path::Path::new("/usr/bin/chromedriver").exists() {
            assert!(
                std::env::var("FHIR_TEST_REQUIRE_BROWSER").is_err(),
                "FHIR_TEST_REQUIRE_BROWSER=1 but /usr/bin/chromedriver is missing (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipped: chromium and chromedriver are not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that dropping the driver also ends the browsers it
        // started (even when the test failed before closing its session).
        let process = std::os::unix::process::CommandExt::process_group(
            &mut std::process::Command::new("/usr/bin/chromedriver"),
            0,
        )
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        let root = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{root}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]}}}});
        let answer: Value = http
            .post(format!("{root}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        let driver = WebDriver {
            process,
            http,
            session,
            root,
        };
        // Finding an element waits for it (pages load after a click in their own time).
        driver
            .call(
                reqwest::Method::POST,
                "timeouts",
                json!({"implicit": 10_000}),
            )
            .await;
        Some(driver)
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.root, self.session);
        let answer: Value = self
            .http
            .request(method, url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"].clone()
    }

    pub async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "url", json!({"url": url}))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "url", json!({}))
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("element/{element}/value"),
            json!({"text": text}),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("element/{element}/click"),
            json!({}),
        )
        .await;
    }

    /// The visible text of the element `css` selects.
    pub async fn text_of(&self, css: &str) -> String {
        self.element_get(css, "text").await
    }

    /// The value of the field `css` selects.
    pub async fn value_of(&self, css: &str) -> String {
        self.element_get(css, "property/value").await
    }

    /// `GET element/{id}/{what}` of the element `css` selects, as text.
    async fn element_get(&self, css: &str, what: &str) -> String {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("element/{element}/{what}"),
            json!({}),
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        let group = format!("-{}", self.process.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .status();
        let _ = self.process.wait();
    }
}
