//! The server's outbound HTTP: hyper's client over rustls (ring), verified against the
//! system's roots, for fetching a JWKS (`auth::jwks`) and for the REST APIs of message
//! channels (`channels::twilio`). Only https leaves the machine; plain http goes to this
//! machine only (development, tests, a local gateway).

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use axum::http::{Request, StatusCode, Uri};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The longest a call may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read.
const MAX_ANSWER: usize = 1024 * 1024;

/// Whether `url` may be fetched: https, or http to this machine (for development and
/// tests). Checked when a client or provider is registered and again before each fetch.
pub fn is_fetchable(url: &str) -> bool {
    let Ok(uri) = url.parse::<Uri>() else {
        return false;
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) => {
            host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host == "::1"
        }
        _ => false,
    }
}

/// https verified against the system's roots (http too, for loopback URLs). A system with
/// no roots gets an empty store: https calls then fail, each with a clear reason.
pub fn connector() -> HttpsConnector<HttpConnector> {
    let builder = HttpsConnectorBuilder::new()
        .with_native_roots()
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "no trusted root certificates found: outbound https will fail");
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(config)
        });
    builder.https_or_http().enable_http1().build()
}

type FormClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Made at the first call: loading the system's roots costs milliseconds that a server
/// without channels should not pay at every start.
static FORM_CLIENT: OnceLock<FormClient> = OnceLock::new();

/// Why a call failed: `None` status when no answer came (connection, timeout).
#[derive(Debug)]
pub struct CallFailed {
    pub status: Option<StatusCode>,
    pub detail: String,
}

/// POSTs `form` (URL-encoded) to `url` with HTTP Basic `credentials` and extra
/// `headers`; the answer's body when its status is a success.
pub async fn post_form(
    url: &str,
    credentials: (&str, &str),
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> Result<Bytes, CallFailed> {
    let failed = |status, detail: String| CallFailed { status, detail };
    if !is_fetchable(url) {
        return Err(failed(
            None,
            "only https URLs (or http to this machine)".into(),
        ));
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.0, credentials.1));
    let mut request = Request::post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(USER_AGENT, "fhir-server")
        .header(AUTHORIZATION, format!("Basic {basic}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| failed(None, e.to_string()))?;
    let client =
        FORM_CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build(connector()));
    tokio::time::timeout(TIMEOUT, async {
        let response = client
            .request(request)
            .await
            .map_err(|e| failed(None, e.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| failed(Some(status), "the answer is unreadable or too large".into()))?
            .to_bytes();
        match status.is_success() {
            true => Ok(body),
            false => Err(failed(
                Some(status),
                String::from_utf8_lossy(&body).chars().take(300).collect(),
            )),
        }
    })
    .await
    .map_err(|_| failed(None, format!("no answer within {} s", TIMEOUT.as_secs())))?
}
