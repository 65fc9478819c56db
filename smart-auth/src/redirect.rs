//! The redirects back to an app (RFC 6749 4.1.2 and 4.1.2.1): the registered redirect URI
//! with the code and `state`, or with the error and `state`, added to its own query. Only
//! a URI that `authorize::check` found registered for the client is ever redirected to.

/// The redirect with a code.
pub fn with_code(redirect_uri: &str, code: &str, state: Option<&str>) -> String {
    with_params(redirect_uri, &[("code", Some(code)), ("state", state)])
}

/// The redirect with an error.
pub fn with_error(
    redirect_uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
) -> String {
    with_params(
        redirect_uri,
        &[
            ("error", Some(error)),
            ("error_description", Some(description)),
            ("state", state),
        ],
    )
}

/// `uri` with the given parameters appended to its query (before any fragment, which a
/// registered redirect URI must not have, but is kept last if it does).
fn with_params(uri: &str, params: &[(&str, Option<&str>)]) -> String {
    let (base, fragment) = match uri.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (uri, None),
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    let query = query.finish();
    let separator = match base.find('?') {
        None => "?",
        Some(at) if at + 1 == base.len() || base.ends_with('&') => "",
        Some(_) => "&",
    };
    let mut out = format!("{base}{separator}{query}");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_and_state_are_added_to_the_query() {
        assert_eq!(
            with_code("https://app.example/cb", "c1", Some("a b&c")),
            "https://app.example/cb?code=c1&state=a+b%26c"
        );
        assert_eq!(
            with_code("https://app.example/cb?x=1", "c1", None),
            "https://app.example/cb?x=1&code=c1"
        );
        assert_eq!(
            with_code("https://app.example/cb?", "c1", None),
            "https://app.example/cb?code=c1"
        );
    }

    #[test]
    fn errors_carry_their_description_and_state() {
        assert_eq!(
            with_error(
                "https://app.example/cb",
                "invalid_scope",
                "no scope",
                Some("s")
            ),
            "https://app.example/cb?error=invalid_scope&error_description=no+scope&state=s"
        );
    }
}
