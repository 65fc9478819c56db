//! The server-rendered pages of the authorization flow (login, consent with the patient
//! picker, errors): plain HTML forms with no script. Every answer carries a strict
//! Content-Security-Policy (forms may post only here, and on to the app's registered
//! redirect URI), `X-Frame-Options: DENY` (no clickjacking), and `no-store`.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// `&`, `<`, `>`, `"` and `'` escaped, for text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Hidden fields for `pairs`.
pub fn hidden(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect()
}

/// A whole page around `body`.
pub fn page(
    status: StatusCode,
    title: &str,
    body: &str,
    form_target: Option<&str>,
    cookie: Option<&str>,
) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}\
         label{{display:block;margin:.6rem 0}}input[type=text],input[type=password]{{width:100%;padding:.4rem}}\
         .error{{color:#a00}}button{{padding:.5rem 1rem;margin-right:.5rem}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>",
        title = escape(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    let form_action = match form_target {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let policy = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    let set = [
        (CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
        (CACHE_CONTROL, "no-store".to_owned()),
        (HeaderName::from_static("content-security-policy"), policy),
        (
            HeaderName::from_static("x-frame-options"),
            "DENY".to_owned(),
        ),
        (
            HeaderName::from_static("x-content-type-options"),
            "nosniff".to_owned(),
        ),
        (
            HeaderName::from_static("referrer-policy"),
            "no-referrer".to_owned(),
        ),
    ];
    for (name, value) in set {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}

/// An error shown to the user (never redirected: the redirect URI is in doubt).
pub fn error(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Authorization failed",
        &format!("<p class=\"error\">{}</p>", escape(message)),
        None,
        None,
    )
}
