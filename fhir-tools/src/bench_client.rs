//! The load generator's HTTP client: one HTTP/1.1 keep-alive connection per simulated
//! client, on hyper's connection API.
//!
//! The benchmark shares the machine with the server, so its own cost is taken from the
//! server's. A general client (reqwest: URL parsing, a shared connection pool, redirect
//! and header policies per request) used about as much CPU per request as the server
//! itself, and reported a third fewer reads per second than `wrk` did against the same
//! server. A connection that only sends a request and reads its answer costs little, as
//! `wrk`'s does.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// The `Authorization` header every request carries, once set (`bench --token`).
static AUTHORIZATION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes every request carry `token` as its bearer token (the first call wins).
pub fn use_token(token: &str) {
    let _ = AUTHORIZATION.set(format!("Bearer {token}"));
}

/// The parts of an answer the benchmark looks at.
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
}

/// One keep-alive connection to the server.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// `host:port`, for the Host header.
    authority: String,
}

impl Connection {
    /// Connects to the server of `base` (`http://host:port/...`).
    pub async fn open(base: &str) -> Result<Connection, String> {
        let authority = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base}: the benchmark speaks plain http:// only"))?
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {authority} failed: {e}"))?;
        tokio::spawn(connection);
        Ok(Connection { sender, authority })
    }

    /// Like `send`, with the answer's body: its status and bytes.
    pub async fn send_for_body(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        let response = self.request(method, path, headers, body).await?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        if let Some(authorization) = AUTHORIZATION.get() {
            request = request.header("authorization", authorization.as_str());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        self.sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends a request to `path` (absolute path on the server) and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let response = self.request(method, path, headers, body).await?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Answer { status, location })
    }
}
