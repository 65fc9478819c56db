//! `POST {base}/auth/launch`: an EHR (a client allowed to) makes an opaque launch id for
//! the patient and encounter it has open, and starts the app with it (`launch=...`). The
//! id is good for one authorization within five minutes.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use smart_auth::client_auth;
use smart_auth::token::TokenError;

use super::grants::server_error;
use super::{field, form, no_store, split, tenant_of};
use crate::app::SharedApp;
use crate::clock::now_seconds;
use crate::store::auth::RecordKind;

/// How long a launch id may be used, in seconds.
pub const LAUNCH_LIFETIME: i64 = 300;

/// The context a launch id stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchContext {
    pub patient: Option<String>,
    pub encounter: Option<String>,
}

pub async fn create(State(app): State<SharedApp>, request: Request) -> Response {
    let fail = |status: StatusCode, error: TokenError| no_store(status, &error.body());
    let (path, headers, body, _) = split(request);
    let Ok(tenant) = tenant_of(&app, &headers, &path).await else {
        return fail(
            StatusCode::NOT_FOUND,
            TokenError::new("invalid_request", "unknown tenant"),
        );
    };
    let pairs = match form(body).await {
        Ok(pairs) => pairs,
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                TokenError::new("invalid_request", e),
            );
        }
    };
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let client = match client_auth::presented(authorization, &pairs) {
        Ok(presented) => super::token::authenticate(&app, &tenant, presented).await,
        Err(e) => Err(TokenError::new("invalid_client", e)),
    };
    let client = match client {
        Ok(client) => client,
        Err(error) => return fail(StatusCode::UNAUTHORIZED, error),
    };
    if !client.may_launch {
        return fail(
            StatusCode::FORBIDDEN,
            TokenError::new(
                "unauthorized_client",
                "this client may not make launch contexts",
            ),
        );
    }
    let context = LaunchContext {
        patient: field(&pairs, "patient").map(str::to_owned),
        encounter: field(&pairs, "encounter").map(str::to_owned),
    };
    if context.patient.is_none() {
        return fail(
            StatusCode::BAD_REQUEST,
            TokenError::new("invalid_request", "patient is missing"),
        );
    }
    let stored = async {
        let id = super::grants::new_token()?;
        let body = serde_json::to_string(&context).map_err(server_error)?;
        app.store
            .auth_put(
                tenant.id,
                RecordKind::Launch,
                &id,
                &body,
                Some(now_seconds() + LAUNCH_LIFETIME),
            )
            .await
            .map_err(server_error)?;
        Ok::<_, TokenError>(id)
    }
    .await;
    match stored {
        Ok(id) => no_store(
            StatusCode::CREATED,
            &json!({"launch": id, "expires_in": LAUNCH_LIFETIME}),
        ),
        Err(error) => fail(StatusCode::SERVICE_UNAVAILABLE, error),
    }
}
