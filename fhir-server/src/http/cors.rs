//! CORS (https://fetch.spec.whatwg.org/#http-cors-protocol), so that browser apps (SMART
//! apps above all) on the configured origins can call the API: preflight `OPTIONS`
//! answered, and the headers a FHIR client needs to read (Location, ETag, ...) exposed.
//! Without configured origins no CORS header is sent and browsers keep other origins out.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::origins::RegisteredOrigins;

/// The request headers a FHIR client sends.
const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "if-match",
    "if-none-match",
    "if-none-exist",
    "if-modified-since",
    "prefer",
    "x-request-id",
];

/// The answer headers a FHIR client reads.
const EXPOSED_HEADERS: &[&str] = &[
    "location",
    "etag",
    "content-location",
    "last-modified",
    "x-progress",
    "x-request-id",
    "www-authenticate",
    "retry-after",
];

/// The CORS layer for `origins` (`*` for any) and, under SMART, the origins of the
/// registered clients' redirect URIs (`registered`); `None` when there are neither, or
/// when a configured origin is not valid (the error names it).
pub fn layer(
    origins: &[String],
    registered: Option<Arc<RegisteredOrigins>>,
) -> Result<Option<CorsLayer>, String> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() && registered.is_none() {
        return Ok(None);
    }
    let allow_origin = if origins.contains(&"*") {
        tracing::warn!(
            "CORS allows any origin (--cors-origins '*'): any web page a user opens can call this server's FHIR API from the user's browser"
        );
        AllowOrigin::any()
    } else {
        let mut values = Vec::with_capacity(origins.len());
        for origin in origins {
            values.push(origin_value(origin).ok_or_else(|| {
                format!("'{origin}' is not an origin (scheme://host[:port], e.g. https://app.example.org)")
            })?);
        }
        match registered {
            None => AllowOrigin::list(values),
            Some(registered) => AllowOrigin::predicate(move |origin: &HeaderValue, _| {
                values.contains(origin)
                    || origin
                        .to_str()
                        .is_ok_and(|origin| registered.contains(origin))
            }),
        }
    };
    let names = |names: &[&'static str]| -> Vec<HeaderName> {
        names
            .iter()
            .map(|name| HeaderName::from_static(name))
            .collect()
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::HEAD,
            ])
            .allow_headers(names(ALLOWED_HEADERS))
            .expose_headers(names(EXPOSED_HEADERS))
            .max_age(Duration::from_secs(600)),
    ))
}

/// The CORS layer, applied only to requests that carry an `Origin` (those a browser sends
/// across origins, and preflights). Other requests (server-to-server clients, the great
/// majority) skip it, and with it the `Vary` headers it would add to every answer; the
/// layer, whose lists of headers and methods are costly to copy, is shared rather than
/// cloned with the service for every request.
#[derive(Clone)]
pub struct WhenOrigin(pub Arc<CorsLayer>);

impl<S> tower::Layer<S> for WhenOrigin {
    type Service = OriginSplit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginSplit {
            cors: self.0.clone(),
            inner,
        }
    }
}

/// The service of [`WhenOrigin`]: the inner service, wrapped in CORS when asked.
#[derive(Clone)]
pub struct OriginSplit<S> {
    cors: Arc<CorsLayer>,
    inner: S,
}

impl<S, B, R> tower::Service<axum::http::Request<B>> for OriginSplit<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>> + Clone,
    R: Default,
{
    type Response = axum::http::Response<R>;
    type Error = S::Error;
    type Future = futures::future::Either<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        if request.headers().contains_key(axum::http::header::ORIGIN) {
            // The inner service was made ready by `poll_ready`: it moves into the CORS
            // wrapper, and a clone stays behind for the next request (tower's rule).
            let fresh = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, fresh);
            let mut with_cors = tower::Layer::layer(&*self.cors, ready);
            futures::future::Either::Left(with_cors.call(request))
        } else {
            futures::future::Either::Right(self.inner.call(request))
        }
    }
}

/// An origin as browsers send it: `http` or `https`, a host, perhaps a port, and nothing
/// else (no path, query, fragment or user).
fn origin_value(origin: &str) -> Option<HeaderValue> {
    let uri: axum::http::Uri = origin.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let authority = uri.authority()?;
    let plain = !authority.host().is_empty()
        && !authority.as_str().contains('@')
        && uri
            .path_and_query()
            .is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
        && !origin.ends_with('/');
    (scheme_ok && plain).then(|| HeaderValue::from_str(origin).ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        assert!(layer(&[], None).unwrap().is_none());
        assert!(
            layer(&["https://app.example.org".into()], None)
                .unwrap()
                .is_some()
        );
        assert!(
            layer(&["http://localhost:3000/".into(), "*".into()], None)
                .unwrap()
                .is_some()
        );
        assert!(layer(&["app.example.org".into()], None).is_err());
        assert!(layer(&["https://app.example.org/path".into()], None).is_err());
        assert!(layer(&["https://".into()], None).is_err());
        assert!(layer(&["https://a.org?x=1".into()], None).is_err());
        assert!(layer(&["https://user@a.org".into()], None).is_err());
        assert!(layer(&["ftp://a.org".into()], None).is_err());
        assert!(layer(&["https://é.example".into()], None).is_err());
        assert!(
            layer(&["http://localhost:3000".into()], None)
                .unwrap()
                .is_some()
        );
    }
}
