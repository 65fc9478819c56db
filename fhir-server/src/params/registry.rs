//! The search-parameter registry: every SearchParameter that FHIR R4 defines, from
//! `conformance/r4/search-parameters.json`. It drives both indexing (which values of a
//! resource are extracted, by its FHIRPath expression) and querying (which parameters a type
//! accepts, their type and reference targets), so adding a parameter is a line of data.

use std::collections::HashMap as StdHashMap;

/// The registry's tables, keyed by the server's own strings: a fast hasher (they are
/// looked up for every parameter of every resource indexed).
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;
use std::sync::{Arc, LazyLock};

use fhir_model::fhirpath::Expression;
use serde::Deserialize;

/// A SearchParameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }
}

/// One search parameter, as the server uses it.
#[derive(Debug)]
pub struct SearchParam {
    pub code: String,
    pub url: String,
    pub kind: ParamType,
    /// The parsed FHIRPath expression; `None` when there is none or it cannot be evaluated
    /// (the parameter is then not indexed and not offered).
    pub expression: Option<Expression>,
    /// Resource types a reference parameter may point to.
    pub targets: Vec<String>,
    /// The FHIRPath expression as written (for every base type of the parameter).
    pub expression_text: String,
}

impl SearchParam {
    /// Whether the server indexes values for it (and so can search on it).
    pub fn is_indexed(&self) -> bool {
        self.expression.is_some() && !matches!(self.kind, ParamType::Composite | ParamType::Special)
    }
}

#[derive(Deserialize)]
struct Definition {
    url: String,
    code: String,
    base: Vec<String>,
    #[serde(rename = "type")]
    kind: ParamType,
    #[serde(default)]
    expression: Option<String>,
    #[serde(default)]
    target: Vec<String>,
}

/// Parameters that the query planner answers from the head table (`_id`, `_lastUpdated`)
/// or handles itself: never indexed from the resource.
const BUILT_IN: &[&str] = &["_id", "_lastUpdated"];

/// Pairs of a reference and a date parameter of one type that the index also keeps
/// together (`idx_ref_date`): a row per (target, date range) of each resource, so "this
/// schedule's slots in this week" or "this patient's appointments this month" is one
/// range of one index instead of the intersection of two large ones (all the schedule's
/// slots, all the week's slots). These are the scheduling searches a practice runs
/// all day; any query with both parameters uses them.
/// Each pair costs a row per (target, date) of every resource of the type, so the list
/// is short: the scheduling searches a practice runs all day.
pub const REFERENCE_DATE_PAIRS: &[(&str, &str, &str)] = &[
    ("Slot", "schedule", "start"),
    ("Appointment", "patient", "date"),
    ("Appointment", "practitioner", "date"),
    ("Encounter", "patient", "date"),
];

/// The index key name of a reference and date pair (see `REFERENCE_DATE_PAIRS`).
pub fn pair_name(reference: &str, date: &str) -> String {
    format!("{reference}+{date}")
}

/// Whether `resource_type` keeps the pair of `reference` and `date` together.
pub fn is_pair(resource_type: &str, reference: &str, date: &str) -> bool {
    REFERENCE_DATE_PAIRS
        .iter()
        .any(|&(t, r, d)| t == resource_type && r == reference && d == date)
}

/// All parameters, by resource type.
pub struct Registry {
    by_type: HashMap<String, Vec<Arc<SearchParam>>>,
    /// String parameters answered from another parameter's index rows, by type and code.
    derived: HashMap<String, HashMap<String, Derived>>,
}

/// A string parameter whose values are a part of another's: `family` is the `family` part
/// of `name`'s HumanName values, `address-city` the `city` part of `address`'s Addresses,
/// and `phonetic` (on Patient, the same expression as `name`) all of them. The index keeps
/// each HumanName and Address string once, under the whole's parameter with the part it
/// came from (see `index::PARTS`), and a derived parameter reads those rows. That halves a
/// Patient's index rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// The parameter whose rows hold the values.
    pub base: String,
    /// The part (`index::part_number`), or `None` for every row of the base.
    pub part: Option<u8>,
}

/// The SearchParameter table the registry is built from (extracted from R4; see
/// `conformance/`).
pub const SOURCE: &str = include_str!("../../../conformance/r4/search-parameters.json");

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry::from_json(SOURCE));

impl Registry {
    /// The R4 registry compiled into the binary.
    pub fn r4() -> &'static Registry {
        &REGISTRY
    }

    fn from_json(text: &str) -> Registry {
        let definitions: Vec<Definition> = serde_json::from_str(text).unwrap_or_else(|error| {
            tracing::error!(%error, "the search-parameter table does not parse");
            Vec::new()
        });
        let resource_types = fhir_model::Definitions::r4().resource_types();
        let mut by_type: HashMap<String, Vec<Arc<SearchParam>>> = HashMap::default();
        for definition in definitions {
            let expression = match &definition.expression {
                Some(text) if !BUILT_IN.contains(&definition.code.as_str()) => {
                    Expression::parse(text).ok()
                }
                _ => None,
            };
            let param = Arc::new(SearchParam {
                code: definition.code,
                url: definition.url,
                kind: definition.kind,
                expression,
                targets: definition.target,
                expression_text: definition.expression.unwrap_or_default(),
            });
            // Parameters on Resource or DomainResource apply to every concrete type.
            let bases: Vec<&String> = if definition
                .base
                .iter()
                .any(|b| b == "Resource" || b == "DomainResource")
            {
                resource_types.iter().collect()
            } else {
                definition.base.iter().collect()
            };
            for base in bases {
                by_type.entry(base.clone()).or_default().push(param.clone());
            }
        }
        for params in by_type.values_mut() {
            params.sort_by(|a, b| a.code.cmp(&b.code));
            params.dedup_by(|a, b| a.code == b.code);
        }
        let derived = derive_string_parts(&by_type);
        Registry { by_type, derived }
    }

    /// Whether `code` of `resource_type` is answered from another parameter's rows.
    pub fn derived(&self, resource_type: &str, code: &str) -> Option<&Derived> {
        self.derived.get(resource_type)?.get(code)
    }

    /// Every parameter of a type (indexed or not), sorted by code.
    pub fn params(&self, resource_type: &str) -> &[Arc<SearchParam>] {
        self.by_type.get(resource_type).map_or(&[], Vec::as_slice)
    }

    /// A parameter of a type by its code.
    pub fn get(&self, resource_type: &str, code: &str) -> Option<&Arc<SearchParam>> {
        let params = self.params(resource_type);
        params
            .binary_search_by(|p| p.code.as_str().cmp(code))
            .ok()
            .map(|i| &params[i])
    }
}

/// The one branch of a parameter's expression that applies to `resource_type`
/// (`Patient.name.family` of `Patient.name.family | Practitioner.name.family`), when there is
/// exactly one.
fn single_branch<'a>(param: &'a SearchParam, resource_type: &str) -> Option<&'a str> {
    let mut branches = param
        .expression_text
        .split('|')
        .map(str::trim)
        .filter(|branch| {
            branch
                .strip_prefix(resource_type)
                .is_some_and(|rest| rest.starts_with('.'))
        });
    let branch = branches.next()?;
    branches.next().is_none().then_some(branch)
}

/// Finds the string parameters of each type that are parts of another's values (see
/// `Derived`): a parameter whose single branch is `T.path.part` when another one's is
/// `T.path` and `T.path` is a HumanName or an Address; or whose branch equals another's
/// (then the one with the smaller code keeps the rows).
fn derive_string_parts(
    by_type: &HashMap<String, Vec<Arc<SearchParam>>>,
) -> HashMap<String, HashMap<String, Derived>> {
    let definitions = fhir_model::Definitions::r4();
    let mut derived: HashMap<String, HashMap<String, Derived>> = HashMap::default();
    for (resource_type, params) in by_type {
        let strings: Vec<(&SearchParam, &str)> = params
            .iter()
            .filter(|p| p.kind == ParamType::String && p.is_indexed())
            .filter_map(|p| single_branch(p, resource_type).map(|b| (p.as_ref(), b)))
            .collect();
        // A twin of a parameter with a smaller code keeps no rows, so it is no base.
        let is_twin = |param: &SearchParam, branch: &str| {
            strings
                .iter()
                .any(|(other, b)| *b == branch && other.code < param.code)
        };
        for &(param, branch) in &strings {
            for &(base, base_branch) in &strings {
                if base.code == param.code || is_twin(base, base_branch) {
                    continue;
                }
                let found = if branch == base_branch && base.code < param.code {
                    Some(None)
                } else {
                    branch
                        .strip_prefix(base_branch)
                        .and_then(|rest| rest.strip_prefix('.'))
                        .filter(|part| {
                            let path = &base_branch[resource_type.len() + 1..];
                            definitions
                                .type_def(resource_type)
                                .and_then(|t| t.element(path))
                                .and_then(|e| e.types.first())
                                .is_some_and(|t| crate::params::parts::parts_of(t).contains(part))
                        })
                        .and_then(crate::params::parts::part_number)
                        .map(Some)
                };
                if let Some(part) = found {
                    derived.entry(resource_type.clone()).or_default().insert(
                        param.code.clone(),
                        Derived {
                            base: base.code.clone(),
                            part,
                        },
                    );
                }
            }
        }
    }
    derived
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listed_types_have_their_parameters() {
        let registry = Registry::r4();
        for (resource_type, code, kind) in [
            ("Patient", "name", ParamType::String),
            ("Patient", "birthdate", ParamType::Date),
            ("Patient", "identifier", ParamType::Token),
            ("Appointment", "patient", ParamType::Reference),
            ("Appointment", "date", ParamType::Date),
            ("Slot", "schedule", ParamType::Reference),
            ("Slot", "start", ParamType::Date),
            ("Claim", "patient", ParamType::Reference),
            ("Communication", "subject", ParamType::Reference),
            ("Patient", "_tag", ParamType::Token),
            ("Slot", "_profile", ParamType::Uri),
        ] {
            let param = registry
                .get(resource_type, code)
                .unwrap_or_else(|| panic!("{resource_type}.{code}"));
            assert_eq!(param.kind, kind, "{resource_type}.{code}");
            assert!(param.is_indexed(), "{resource_type}.{code} is indexed");
        }
        assert!(registry.get("Patient", "nope").is_none());
    }

    #[test]
    fn parts_of_names_and_addresses_come_from_the_whole() {
        let registry = Registry::r4();
        let derived = |t: &str, code: &str| registry.derived(t, code).cloned();
        let part = |base: &str, name: &str| {
            Some(Derived {
                base: base.to_owned(),
                part: crate::params::parts::part_number(name),
            })
        };
        assert_eq!(derived("Patient", "family"), part("name", "family"));
        assert_eq!(derived("Practitioner", "given"), part("name", "given"));
        assert_eq!(derived("Patient", "address-city"), part("address", "city"));
        assert_eq!(
            derived("Organization", "address-postalcode"),
            part("address", "postalCode")
        );
        assert_eq!(
            derived("InsurancePlan", "address-state"),
            part("address", "state")
        );
        assert_eq!(
            derived("Patient", "phonetic"),
            Some(Derived {
                base: "name".to_owned(),
                part: None
            })
        );
        // Not a part: Organization.name is a string, and its phonetic is not name's twin.
        assert_eq!(derived("Organization", "phonetic"), None);
        assert_eq!(derived("Patient", "name"), None);
        assert_eq!(derived("Patient", "address"), None);
    }

    #[test]
    fn every_listed_type_parameter_is_indexed() {
        let registry = Registry::r4();
        for resource_type in [
            "Patient",
            "Practitioner",
            "PractitionerRole",
            "Organization",
            "Location",
            "HealthcareService",
            "Appointment",
            "AppointmentResponse",
            "Schedule",
            "Slot",
            "Encounter",
            "Claim",
            "ClaimResponse",
            "ExplanationOfBenefit",
            "Coverage",
            "PaymentReconciliation",
            "Communication",
            "CommunicationRequest",
            "AuditEvent",
        ] {
            for param in registry.params(resource_type) {
                let skipped = matches!(param.kind, ParamType::Composite | ParamType::Special)
                    || BUILT_IN.contains(&param.code.as_str())
                    || param.code.starts_with("_text")
                    || param.code == "_content"
                    || param.code == "_list"
                    || param.code == "_query"
                    || param.code == "_has"
                    || param.code == "_type";
                if !skipped {
                    assert!(
                        param.expression.is_some(),
                        "{resource_type}.{} has an evaluable expression",
                        param.code
                    );
                }
            }
        }
    }
}
