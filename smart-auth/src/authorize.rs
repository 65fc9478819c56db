//! Checking an /authorize request (SMART App Launch 2.x, RFC 6749 4.1.1 and 4.1.2.1).
//!
//! The order matters for safety: the client and its redirect URI are checked first, and
//! while either is in doubt the error is shown to the user, never redirected (no open
//! redirect, ever). Only once the redirect URI is known to be registered exactly do the
//! other errors go back to the app, with its `state`.

use crate::pkce;
use crate::scope::{Launch, Scope, Scopes};

/// What the server knows of the client a request names.
pub struct Client<'a> {
    pub redirect_uris: &'a [String],
    /// The scopes it may be granted.
    pub allowed: &'a Scopes,
}

/// An /authorize request's parameters (from the query of a GET or a POSTed form).
#[derive(Debug, Default, Clone)]
pub struct Request {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub aud: Option<String>,
    pub launch: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

impl Request {
    /// The request from its parameters; the first of a repeated one counts (a repeated
    /// parameter is itself refused by [`check`]).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Request, String> {
        let mut request = Request::default();
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "response_type" => &mut request.response_type,
                "client_id" => &mut request.client_id,
                "redirect_uri" => &mut request.redirect_uri,
                "scope" => &mut request.scope,
                "state" => &mut request.state,
                // `resource` is accepted as a synonym of `aud`, as SMART allows.
                "aud" | "resource" => &mut request.aud,
                "launch" => &mut request.launch,
                "code_challenge" => &mut request.code_challenge,
                "code_challenge_method" => &mut request.code_challenge_method,
                _ => continue,
            };
            if slot.is_some() {
                return Err(format!("the parameter {name} is given more than once"));
            }
            *slot = Some(value.clone());
        }
        Ok(request)
    }
}

/// A request that may go on to login and consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    /// What was asked, within what the client may get (the user may untick some).
    pub scopes: Scopes,
    /// The EHR launch handle, for an EHR launch.
    pub launch: Option<String>,
    pub code_challenge: String,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Shown to the user, not redirected: the client or redirect URI is unknown or wrong.
    ToUser(String),
    /// Sent back to the app's (registered) redirect URI, with `error`, its description and
    /// the request's `state`.
    ToApp {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

/// Checks `request` against `client` (looked up by the caller from `client_id`; `None`
/// when there is no such client) and the tenant's FHIR base `base`.
pub fn check(
    request: &Request,
    client: Option<&Client<'_>>,
    base: &str,
) -> Result<Accepted, Refused> {
    let client_id = request
        .client_id
        .as_deref()
        .ok_or_else(|| Refused::ToUser("client_id is missing".into()))?;
    let client = client.ok_or_else(|| Refused::ToUser(format!("unknown client '{client_id}'")))?;
    let redirect_uri = match request.redirect_uri.as_deref() {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
        Some(_) => {
            return Err(Refused::ToUser(
                "redirect_uri is not registered for this client".into(),
            ));
        }
        None => return Err(Refused::ToUser("redirect_uri is missing".into())),
    };
    let to_app = |error: &'static str, description: String| Refused::ToApp {
        redirect_uri: redirect_uri.clone(),
        error,
        description,
        state: request.state.clone(),
    };
    if request.response_type.as_deref() != Some("code") {
        return Err(to_app(
            "unsupported_response_type",
            "response_type must be code".into(),
        ));
    }
    let aud = request.aud.as_deref().unwrap_or_default();
    if aud.trim_end_matches('/') != base.trim_end_matches('/') {
        return Err(to_app(
            "invalid_request",
            format!("aud must be this server's FHIR base, {base}"),
        ));
    }
    pkce::check_challenge(
        request.code_challenge.as_deref(),
        request.code_challenge_method.as_deref(),
    )
    .map_err(|error| to_app("invalid_request", error.0.to_owned()))?;
    let asked = Scopes::parse(request.scope.as_deref().unwrap_or_default())
        .map_err(|error| to_app("invalid_scope", error.to_string()))?;
    let scopes = asked.granted_within(client.allowed);
    if scopes.is_empty() {
        return Err(to_app(
            "invalid_scope",
            "none of the scopes asked for may be granted to this client".into(),
        ));
    }
    let ehr_launch = scopes.contains(&Scope::Launch(Launch::Ehr));
    if ehr_launch != request.launch.is_some() {
        return Err(to_app(
            "invalid_request",
            "an EHR launch asks for the launch scope and sends the launch parameter; a standalone launch does neither".into(),
        ));
    }
    Ok(Accepted {
        client_id: client_id.to_owned(),
        redirect_uri,
        state: request.state.clone(),
        scopes,
        launch: request.launch.clone(),
        code_challenge: request.code_challenge.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://ehr.example/fhir";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn pairs(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", "https://app.example/cb"),
            ("scope", "launch/patient patient/*.rs openid fhirUser"),
            ("state", "xyz"),
            ("aud", BASE),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        for (name, value) in extra {
            all.retain(|(n, _)| n != name);
            if !value.is_empty() {
                all.push((name, value));
            }
        }
        all.into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    fn run(extra: &[(&str, &str)]) -> Result<Accepted, Refused> {
        let allowed =
            Scopes::parse("launch launch/patient patient/*.rs openid fhirUser offline_access")
                .unwrap();
        let uris = vec!["https://app.example/cb".to_owned()];
        let client = Client {
            redirect_uris: &uris,
            allowed: &allowed,
        };
        let request = Request::from_pairs(&pairs(extra)).unwrap();
        let known = request.client_id.as_deref() == Some("app");
        check(&request, known.then_some(&client), BASE)
    }

    fn error_to_app(result: Result<Accepted, Refused>) -> &'static str {
        match result {
            Err(Refused::ToApp { error, state, .. }) => {
                assert_eq!(state.as_deref(), Some("xyz"), "state is echoed");
                error
            }
            other => panic!("expected an error for the app, got {other:?}"),
        }
    }

    #[test]
    fn a_standalone_patient_launch_is_accepted() {
        let accepted = run(&[]).unwrap();
        assert_eq!(
            accepted.scopes.to_string(),
            "launch/patient patient/*.rs openid fhirUser"
        );
        assert_eq!(accepted.state.as_deref(), Some("xyz"));
        assert!(run(&[("aud", "https://ehr.example/fhir/")]).is_ok());
        assert!(run(&[("scope", "launch patient/*.rs"), ("launch", "abc")]).is_ok());
    }

    #[test]
    fn unknown_clients_and_redirects_are_never_redirected_to() {
        for extra in [
            [("client_id", "nobody")],
            [("client_id", "")],
            [("redirect_uri", "https://evil.example/cb")],
            [("redirect_uri", "https://app.example/cb/")],
            [("redirect_uri", "")],
        ] {
            assert!(matches!(run(&extra), Err(Refused::ToUser(_))), "{extra:?}");
        }
    }

    #[test]
    fn other_errors_go_back_to_the_app_with_state() {
        assert_eq!(
            error_to_app(run(&[("response_type", "token")])),
            "unsupported_response_type"
        );
        assert_eq!(
            error_to_app(run(&[("aud", "https://other.example/fhir")])),
            "invalid_request"
        );
        assert_eq!(error_to_app(run(&[("aud", "")])), "invalid_request");
        assert_eq!(
            error_to_app(run(&[("code_challenge_method", "plain")])),
            "invalid_request"
        );
        assert_eq!(
            error_to_app(run(&[("code_challenge", "")])),
            "invalid_request"
        );
        assert_eq!(
            error_to_app(run(&[("scope", "system/*.rs")])),
            "invalid_scope"
        );
        assert_eq!(
            error_to_app(run(&[("scope", "patient/Patient.zz")])),
            "invalid_scope"
        );
        // An EHR launch needs both the launch scope and the launch parameter.
        assert_eq!(
            error_to_app(run(&[("scope", "launch patient/*.rs")])),
            "invalid_request"
        );
        assert_eq!(error_to_app(run(&[("launch", "abc")])), "invalid_request");
    }

    #[test]
    fn a_repeated_parameter_is_refused() {
        let mut twice = pairs(&[]);
        twice.push(("redirect_uri".into(), "https://evil.example/cb".into()));
        assert!(Request::from_pairs(&twice).is_err());
    }
}
