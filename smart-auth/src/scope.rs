//! SMART scopes (https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html):
//! parsing both syntaxes, what a resource scope permits, and granting a request within
//! what a client (or a user's role) is allowed.
//!
//! A resource scope is `(patient|user|system)/(Type|*).<permissions>[?query]`:
//! - v2 permissions are letters of `cruds` in that order (`rs`, `cud`, `cruds`), and may
//!   carry a query that constrains what they permit (`patient/Observation.rs?category=...`);
//! - v1 permissions are `read` (= `rs`), `write` (= `cud`) and `*` (= `cruds`), without a
//!   query. A scope keeps its syntax, so a v1 client is answered in v1.
//!
//! Scopes may also be written as URIs (`http://smarthealthit.org/fhir/scopes/<scope>`).

use std::fmt;

/// Why a word is not a scope at all (then a scope string skips it, as servers skip the
/// scopes they do not know), as opposed to a known kind of scope written wrong.
const NOT_A_SCOPE: &str = "not a known scope";

/// The URI form's prefix of a scope.
const URI_PREFIX: &str = "http://smarthealthit.org/fhir/scopes/";

/// Whose data a resource scope is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    /// The patient in the launch context: only that patient's compartment.
    Patient,
    /// What the signed-in user may see (bounded by the user's role).
    User,
    /// A backend service's own access (bounded by what the client is allowed).
    System,
}

impl Context {
    fn parse(text: &str) -> Option<Context> {
        match text {
            "patient" => Some(Context::Patient),
            "user" => Some(Context::User),
            "system" => Some(Context::System),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// What a request does, as the permission letters see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `c`: create.
    Create,
    /// `r`: read, vread, instance history.
    Read,
    /// `u`: update (also an update that creates), patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search and history at the type and system levels.
    Search,
}

impl Permission {
    const ORDER: [(Permission, char); 5] = [
        (Permission::Create, 'c'),
        (Permission::Read, 'r'),
        (Permission::Update, 'u'),
        (Permission::Delete, 'd'),
        (Permission::Search, 's'),
    ];

    fn bit(self) -> u8 {
        match self {
            Permission::Create => 1,
            Permission::Read => 2,
            Permission::Update => 4,
            Permission::Delete => 8,
            Permission::Search => 16,
        }
    }
}

/// A set of permission letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const ALL: Permissions = Permissions(31);
    /// v1 `read`.
    pub const READ: Permissions = Permissions(2 | 16);
    /// v1 `write`.
    pub const WRITE: Permissions = Permissions(1 | 4 | 8);

    pub fn allows(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// v2 letters, each at most once and in `cruds` order.
    fn parse_v2(text: &str) -> Option<Permissions> {
        let mut bits = 0;
        let mut next = 0;
        for letter in text.chars() {
            let at = Permission::ORDER[next..]
                .iter()
                .position(|(_, l)| *l == letter)?;
            bits |= Permission::ORDER[next + at].0.bit();
            next += at + 1;
        }
        (bits != 0).then_some(Permissions(bits))
    }

    fn letters(self) -> String {
        Permission::ORDER
            .iter()
            .filter(|(p, _)| self.allows(*p))
            .map(|(_, letter)| letter)
            .collect()
    }
}

/// Which syntax a scope was written in; it is answered in the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Syntax {
    V1,
    V2,
}

/// A scope on resources: `patient/Observation.rs?category=laboratory`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    pub context: Context,
    /// `None` for `*` (every type).
    pub resource_type: Option<String>,
    pub permissions: Permissions,
    /// Search parameters every permitted request is limited to (v2 only), in order.
    pub constraint: Vec<(String, String)>,
    pub syntax: Syntax,
}

impl ResourceScope {
    /// Whether this scope permits `permission` on `resource_type` in `context`. A scope
    /// with a constraint permits it only within the constraint ([`ResourceScope::constraint`]).
    pub fn permits(&self, context: Context, resource_type: &str, permission: Permission) -> bool {
        self.context == context
            && self
                .resource_type
                .as_deref()
                .is_none_or(|own| own == resource_type)
            && self.permissions.allows(permission)
    }

    /// Whether granting `self` gives nothing beyond `allowed`: same context, a type
    /// `allowed` covers, no more letters, and at least `allowed`'s constraint.
    pub fn within(&self, allowed: &ResourceScope) -> bool {
        self.context == allowed.context
            && (allowed.resource_type.is_none() || allowed.resource_type == self.resource_type)
            && allowed.permissions.contains(self.permissions)
            && allowed
                .constraint
                .iter()
                .all(|pair| self.constraint.contains(pair))
    }
}

/// The launch context an app asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Launch {
    /// `launch`: an EHR launch, with the `launch` parameter.
    Ehr,
    /// `launch/patient`: a standalone launch that needs a patient chosen.
    Patient,
    /// `launch/encounter`.
    Encounter,
    /// `launch/<type>` for another type (lower case), as written.
    Other(String),
}

/// One scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Resource(ResourceScope),
    Launch(Launch),
    /// `openid`: an id_token is asked for.
    OpenId,
    /// `fhirUser`: the id_token names the user's FHIR resource.
    FhirUser,
    /// `offline_access`: a refresh token that outlives the session.
    OfflineAccess,
    /// `online_access`: a refresh token while the user is online.
    OnlineAccess,
}

/// Why a scope was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError {
    pub scope: String,
    pub reason: &'static str,
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scope '{}': {}", self.scope, self.reason)
    }
}

impl Scope {
    /// One scope, in either syntax or in its URI form.
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        let scope = text.strip_prefix(URI_PREFIX).unwrap_or(text);
        let error = |reason| ScopeError {
            scope: text.to_owned(),
            reason,
        };
        match scope {
            "openid" => return Ok(Scope::OpenId),
            "fhirUser" => return Ok(Scope::FhirUser),
            "offline_access" => return Ok(Scope::OfflineAccess),
            "online_access" => return Ok(Scope::OnlineAccess),
            "launch" => return Ok(Scope::Launch(Launch::Ehr)),
            _ => {}
        }
        if let Some(what) = scope.strip_prefix("launch/") {
            return match what {
                "patient" => Ok(Scope::Launch(Launch::Patient)),
                "encounter" => Ok(Scope::Launch(Launch::Encounter)),
                other if !other.is_empty() => Ok(Scope::Launch(Launch::Other(other.to_owned()))),
                _ => Err(error("launch/ names no context")),
            };
        }
        parse_resource_scope(scope)
            .map(Scope::Resource)
            .map_err(error)
    }
}

/// `(patient|user|system)/(Type|*).<permissions>[?query]`.
fn parse_resource_scope(scope: &str) -> Result<ResourceScope, &'static str> {
    let (context, rest) = scope.split_once('/').ok_or(NOT_A_SCOPE)?;
    let context = Context::parse(context).ok_or(NOT_A_SCOPE)?;
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let (resource_type, letters) = path
        .rsplit_once('.')
        .ok_or("expected Type.permissions, e.g. Patient.rs")?;
    let resource_type = match resource_type {
        "*" => None,
        name if is_type_name(name) => Some(name.to_owned()),
        _ => return Err("the resource type is not a type name or *"),
    };
    let (permissions, syntax) = match letters {
        "read" => (Permissions::READ, Syntax::V1),
        "write" => (Permissions::WRITE, Syntax::V1),
        "*" => (Permissions::ALL, Syntax::V1),
        letters => (
            Permissions::parse_v2(letters)
                .ok_or("permissions are letters of cruds, in that order, or read, write, *")?,
            Syntax::V2,
        ),
    };
    let constraint = match query {
        None => Vec::new(),
        Some(_) if syntax == Syntax::V1 => return Err("a v1 scope takes no query"),
        Some(query) => parse_constraint(query)?,
    };
    Ok(ResourceScope {
        context,
        resource_type,
        permissions,
        constraint,
        syntax,
    })
}

/// A resource type's name: a capital letter, then letters.
fn is_type_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphabetic())
}

/// The `name=value&...` of a scope's query. Values stay as written (the server parses
/// them as search parameters); modifiers and chains are experimental and refused.
fn parse_constraint(query: &str) -> Result<Vec<(String, String)>, &'static str> {
    let mut pairs = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair
            .split_once('=')
            .ok_or("a scope's query is name=value pairs")?;
        if name.is_empty() || value.is_empty() {
            return Err("a scope's query is name=value pairs");
        }
        if name.contains([':', '.']) || name == "_filter" {
            return Err("modifiers, chains and _filter are not supported in a scope's query");
        }
        pairs.push((name.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::OpenId => f.write_str("openid"),
            Scope::FhirUser => f.write_str("fhirUser"),
            Scope::OfflineAccess => f.write_str("offline_access"),
            Scope::OnlineAccess => f.write_str("online_access"),
            Scope::Launch(Launch::Ehr) => f.write_str("launch"),
            Scope::Launch(Launch::Patient) => f.write_str("launch/patient"),
            Scope::Launch(Launch::Encounter) => f.write_str("launch/encounter"),
            Scope::Launch(Launch::Other(what)) => write!(f, "launch/{what}"),
            Scope::Resource(scope) => scope.fmt(f),
        }
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource_type = self.resource_type.as_deref().unwrap_or("*");
        let letters = match (self.syntax, self.permissions) {
            (Syntax::V1, Permissions::READ) => "read".to_owned(),
            (Syntax::V1, Permissions::WRITE) => "write".to_owned(),
            (Syntax::V1, Permissions::ALL) => "*".to_owned(),
            (_, permissions) => permissions.letters(),
        };
        write!(f, "{}/{resource_type}.{letters}", self.context.as_str())?;
        for (i, (name, value)) in self.constraint.iter().enumerate() {
            write!(f, "{}{name}={value}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// The scopes of a request or a grant, in the order given, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// A space-separated scope string. Scopes this server does not know are left out (a
    /// server grants what it can); those it knows but finds malformed are errors.
    pub fn parse(text: &str) -> Result<Scopes, ScopeError> {
        let mut scopes = Vec::new();
        for word in text.split_ascii_whitespace() {
            match Scope::parse(word) {
                Ok(scope) if !scopes.contains(&scope) => scopes.push(scope),
                Ok(_) => {}
                Err(error) if error.reason == NOT_A_SCOPE => {}
                Err(error) => return Err(error),
            }
        }
        Ok(Scopes(scopes))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The resource scopes.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceScope> {
        self.0.iter().filter_map(|scope| match scope {
            Scope::Resource(resource) => Some(resource),
            _ => None,
        })
    }

    /// Whether any resource scope is a patient/ one (then a patient must be in context).
    pub fn needs_patient(&self) -> bool {
        self.resources()
            .any(|scope| scope.context == Context::Patient)
    }

    /// What these scopes permit for `permission` on `resource_type` in `context`: `None`
    /// when nothing does; else the constraints, one per permitting scope, of which a
    /// request must meet at least one (an empty one: no constraint).
    pub fn permits(
        &self,
        context: Context,
        resource_type: &str,
        permission: Permission,
    ) -> Option<Vec<&[(String, String)]>> {
        let constraints: Vec<&[(String, String)]> = self
            .resources()
            .filter(|scope| scope.permits(context, resource_type, permission))
            .map(|scope| scope.constraint.as_slice())
            .collect();
        (!constraints.is_empty()).then_some(constraints)
    }

    /// The part of `self` (what was asked) that `allowed` covers: each resource scope that
    /// is within one of `allowed`'s, and each other scope that `allowed` lists. What is
    /// granted is never more than what was asked, nor than what is allowed.
    pub fn granted_within(&self, allowed: &Scopes) -> Scopes {
        let kept = self
            .0
            .iter()
            .filter(|scope| match scope {
                Scope::Resource(asked) => allowed.resources().any(|a| asked.within(a)),
                other => allowed.contains(other),
            })
            .cloned()
            .collect();
        Scopes(kept)
    }

    /// Whether every scope of `self` is also granted by `granted` (a refresh may ask for
    /// less than the grant, never for more).
    pub fn is_within(&self, granted: &Scopes) -> bool {
        self.granted_within(granted).0.len() == self.0.len()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            scope.fmt(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(text: &str) -> ResourceScope {
        match Scope::parse(text).unwrap() {
            Scope::Resource(scope) => scope,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn v1_scopes_mean_their_v2_letters() {
        let read = resource("patient/*.read");
        assert_eq!(read.permissions, Permissions::READ);
        assert_eq!(read.resource_type, None);
        assert_eq!(
            resource("user/Appointment.write").permissions,
            Permissions::WRITE
        );
        assert_eq!(resource("system/Slot.*").permissions, Permissions::ALL);
        assert_eq!(resource("patient/*.read").to_string(), "patient/*.read");
        assert_eq!(
            resource("user/Appointment.write").to_string(),
            "user/Appointment.write"
        );
    }

    #[test]
    fn v2_letters_are_cruds_in_order() {
        let scope = resource("patient/Appointment.rs");
        assert!(scope.permits(Context::Patient, "Appointment", Permission::Read));
        assert!(scope.permits(Context::Patient, "Appointment", Permission::Search));
        assert!(!scope.permits(Context::Patient, "Appointment", Permission::Create));
        assert!(!scope.permits(Context::User, "Appointment", Permission::Read));
        assert!(!scope.permits(Context::Patient, "Slot", Permission::Read));
        assert_eq!(resource("user/*.cruds").permissions, Permissions::ALL);
        for bad in [
            "patient/Patient.dus",
            "patient/Patient.rr",
            "patient/Patient.x",
            "patient/Patient.",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn v2_queries_constrain_and_v1_takes_none() {
        let scope = resource(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        );
        assert_eq!(scope.constraint.len(), 1);
        assert_eq!(scope.constraint[0].0, "category");
        assert!(scope.to_string().ends_with(
            "?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
        ));
        assert!(Scope::parse("patient/Observation.read?category=x").is_err());
        assert!(Scope::parse("patient/Observation.rs?category:not=x").is_err());
        assert!(Scope::parse("patient/Observation.rs?subject.name=x").is_err());
        assert!(Scope::parse("patient/Observation.rs?category").is_err());
    }

    #[test]
    fn context_identity_and_uri_scopes() {
        assert_eq!(Scope::parse("launch").unwrap(), Scope::Launch(Launch::Ehr));
        assert_eq!(
            Scope::parse("launch/patient").unwrap(),
            Scope::Launch(Launch::Patient)
        );
        assert_eq!(Scope::parse("openid").unwrap(), Scope::OpenId);
        assert_eq!(Scope::parse("fhirUser").unwrap(), Scope::FhirUser);
        assert_eq!(
            Scope::parse("offline_access").unwrap(),
            Scope::OfflineAccess
        );
        assert_eq!(
            Scope::parse("http://smarthealthit.org/fhir/scopes/patient/Patient.r").unwrap(),
            Scope::parse("patient/Patient.r").unwrap()
        );
    }

    #[test]
    fn a_request_is_granted_within_what_is_allowed() {
        let allowed = Scopes::parse("patient/*.rs launch/patient openid fhirUser").unwrap();
        let asked = Scopes::parse(
            "patient/Observation.rs?category=laboratory patient/Patient.cruds launch/patient offline_access openid unknown-scope",
        )
        .unwrap();
        let granted = asked.granted_within(&allowed);
        assert_eq!(
            granted.to_string(),
            "patient/Observation.rs?category=laboratory launch/patient openid"
        );
        assert!(granted.is_within(&allowed));
        assert!(!asked.is_within(&allowed));
        assert!(granted.needs_patient());
    }

    #[test]
    fn a_constrained_allowance_grants_only_as_constrained() {
        let allowed = Scopes::parse("user/Observation.rs?category=laboratory").unwrap();
        let plain = Scopes::parse("user/Observation.rs").unwrap();
        assert!(plain.granted_within(&allowed).is_empty());
        let narrower =
            Scopes::parse("user/Observation.r?category=laboratory&status=final").unwrap();
        assert!(narrower.is_within(&allowed));
    }

    #[test]
    fn permits_gives_the_constraints_to_meet() {
        let scopes =
            Scopes::parse("patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs")
                .unwrap();
        let constraints = scopes
            .permits(Context::Patient, "Observation", Permission::Search)
            .unwrap();
        assert_eq!(constraints.len(), 2);
        assert!(
            scopes
                .permits(Context::Patient, "Observation", Permission::Delete)
                .is_none()
        );
        let open = Scopes::parse("patient/*.rs").unwrap();
        let constraints = open
            .permits(Context::Patient, "Claim", Permission::Read)
            .unwrap();
        assert!(constraints[0].is_empty());
    }

    #[test]
    fn malformed_known_scopes_are_errors_and_unknown_ones_are_ignored() {
        assert!(Scopes::parse("patient/Patient.zz").is_err());
        assert!(Scopes::parse("launch/").is_err());
        assert!(Scopes::parse("profile email").unwrap().is_empty());
        assert!(Scopes::parse("patient/patient.rs").is_err());
    }
}
