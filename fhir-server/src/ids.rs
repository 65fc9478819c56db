//! The small types a request's path is parsed into once, at the edge, so that the layers
//! below take them as checked: the tenant, the resource type and the logical id.
//!
//! A `ResourceType` or an `Id` can only be made by parsing, so a function that takes one
//! needs no check of its own; both read as `&str` (`Deref`) where text is wanted.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::error::FhirError;

/// A tenant as the store knows it: the small integer (`tenants.tid`) that every row below
/// the tenants table carries in place of the tenant's name. Only the store makes one, from
/// a tenant it found or created, so it cannot be mixed up with a row's other integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(i64);

impl TenantId {
    /// The tenant whose `tid` the store read from its own rows.
    pub fn from_stored(tid: i64) -> TenantId {
        TenantId(tid)
    }

    /// The `tid` the rows carry.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A concrete resource type of R4 (`Patient`, `Slot`, ...), as the definitions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(&'static str);

impl ResourceType {
    /// The type named `name`, if R4 has such a concrete resource type.
    pub fn parse(name: &str) -> Option<ResourceType> {
        let types = fhir_model::Definitions::r4().resource_types();
        types
            .binary_search_by(|known| known.as_str().cmp(name))
            .ok()
            .map(|at| ResourceType(types[at].as_str()))
    }

    /// The type named in a request's path: 404 when there is none of that name.
    pub fn from_path(name: &str) -> Result<ResourceType, FhirError> {
        ResourceType::parse(name)
            .ok_or_else(|| FhirError::not_found(format!("Unknown resource type '{name}'")))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl Deref for ResourceType {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<&str> for ResourceType {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Whether `id` is a valid FHIR id: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A logical id (https://hl7.org/fhir/R4/datatypes.html#id), borrowed from where it was
/// parsed (a path, a reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id<'a>(&'a str);

impl<'a> Id<'a> {
    /// `text` as an id, or 400 naming the rule it breaks.
    pub fn parse(text: &'a str) -> Result<Id<'a>, FhirError> {
        if is_valid_id(text) {
            Ok(Id(text))
        } else {
            Err(FhirError::bad_request(format!(
                "Invalid resource id '{text}': ids are 1 to 64 letters, digits, '-' or '.'"
            )))
        }
    }

    pub fn as_str(self) -> &'a str {
        self.0
    }
}

impl Deref for Id<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
    }
}

impl fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_are_the_concrete_types_of_r4() {
        assert_eq!(ResourceType::parse("Patient").unwrap().as_str(), "Patient");
        assert!(ResourceType::parse("patient").is_none());
        assert!(ResourceType::parse("DomainResource").is_none());
        assert!(ResourceType::parse("HumanName").is_none());
        assert_eq!(ResourceType::from_path("Nope").unwrap_err().status, 404);
    }

    #[test]
    fn ids_follow_the_fhir_id_rule() {
        assert!(is_valid_id("a-B.9"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert_eq!(Id::parse("a b").unwrap_err().status, 400);
        assert_eq!(Id::parse("x.1").unwrap().as_str(), "x.1");
    }
}
