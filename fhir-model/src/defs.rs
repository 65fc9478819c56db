//! The FHIR R4 (4.0.1) element facts, loaded from `conformance/r4/elements.json`.
//!
//! The table is extracted from the official StructureDefinitions by
//! `conformance/extract.py`; it is data, so a new resource type or element costs no code.
//! Paths are relative to their type: `Patient.contact.name` is `contact.name` in `Patient`.

use std::collections::HashMap as StdHashMap;

/// The definitions' tables, keyed by the server's own strings: a fast hasher.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;
use std::sync::LazyLock;

use serde::Deserialize;

/// What a StructureDefinition describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Resource,
    ComplexType,
    PrimitiveType,
}

/// One element of a type, as the snapshot of its StructureDefinition gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct ElementDef {
    /// Path relative to the type, e.g. `contact.name` or `deceased[x]`.
    pub path: String,
    #[serde(default)]
    pub min: u32,
    /// `"1"`, `"*"`, or a number.
    #[serde(default = "one")]
    pub max: String,
    /// Type codes: primitive names (`date`), complex types (`HumanName`),
    /// `BackboneElement`/`Element` for inline children, `Resource` for contained resources.
    #[serde(default)]
    pub types: Vec<String>,
    /// For `contentReference` elements: the relative path whose children this element reuses.
    #[serde(default, rename = "contentRef")]
    pub content_ref: Option<String>,
    /// The codes of a required binding, when the value set can be enumerated.
    #[serde(default)]
    pub codes: Option<Vec<String>>,
    /// Target resource types of a `Reference` or `canonical` element.
    #[serde(default)]
    pub targets: Vec<String>,
    /// `isSummary`: the element is part of the summary view (`_summary=true`).
    #[serde(default)]
    pub summary: bool,
}

fn one() -> String {
    "1".to_owned()
}

impl ElementDef {
    /// The element's JSON name (last path segment), without any `[x]` suffix.
    pub fn name(&self) -> &str {
        let last = self.path.rsplit('.').next().unwrap_or(&self.path);
        last.strip_suffix("[x]").unwrap_or(last)
    }

    /// Whether this is a choice element (`value[x]`).
    pub fn is_choice(&self) -> bool {
        self.path.ends_with("[x]")
    }

    /// Whether the element repeats (max other than "1" and "0").
    pub fn is_array(&self) -> bool {
        self.max != "1" && self.max != "0"
    }

    /// The maximum count, `None` for unbounded.
    pub fn max_count(&self) -> Option<u32> {
        if self.max == "*" {
            None
        } else {
            self.max.parse().ok()
        }
    }
}

/// One type: a resource, a complex datatype or a primitive.
#[derive(Debug, Clone, Deserialize)]
pub struct TypeDef {
    pub name: String,
    pub kind: Kind,
    #[serde(default, rename = "abstract")]
    pub is_abstract: bool,
    #[serde(default)]
    pub base: Option<String>,
    /// For primitive types: the regular expression of the value, as the spec gives it.
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub elements: Vec<ElementDef>,
    /// Child lookup: (parent path, JSON key) -> (element index, type code for choice keys).
    #[serde(skip)]
    /// Nested (parent, then key) so that a lookup borrows its `&str`s and allocates nothing.
    children: HashMap<String, HashMap<String, (usize, Option<String>)>>,
    /// Parent path -> indexes of its direct children, in definition order.
    #[serde(skip)]
    child_list: HashMap<String, Vec<usize>>,
}

/// A child element resolved from a JSON key: the element and, for choice elements, the
/// type the key selects (`deceasedBoolean` selects `boolean`).
#[derive(Debug, Clone, Copy)]
pub struct Child<'a> {
    pub element: &'a ElementDef,
    /// The single type this key carries: the chosen type of a choice, or the element's
    /// only type. `None` for a content reference (children come from `content_ref`).
    pub type_code: Option<&'a str>,
}

impl TypeDef {
    fn build_lookup(&mut self) {
        for (index, element) in self.elements.iter().enumerate() {
            let (parent, _) = match element.path.rsplit_once('.') {
                Some((parent, name)) => (parent.to_owned(), name),
                None => (String::new(), element.path.as_str()),
            };
            self.child_list
                .entry(parent.clone())
                .or_default()
                .push(index);
            let name = element.name().to_owned();
            let siblings = self.children.entry(parent).or_default();
            if element.is_choice() {
                for code in &element.types {
                    let key = format!("{name}{}", upper_first(code));
                    siblings.insert(key, (index, Some(code.clone())));
                }
            } else {
                let code = match element.types.as_slice() {
                    [only] => Some(only.clone()),
                    _ => None,
                };
                siblings.insert(name, (index, code));
            }
        }
    }

    /// Resolves a JSON key under `parent` (a relative path, `""` for the root).
    pub fn child(&self, parent: &str, key: &str) -> Option<Child<'_>> {
        let (index, code) = self.children.get(parent)?.get(key)?;
        Some(Child {
            element: &self.elements[*index],
            type_code: code.as_deref(),
        })
    }

    /// The direct children of `parent` (a relative path, `""` for the root).
    pub fn children_of<'a>(&'a self, parent: &str) -> impl Iterator<Item = &'a ElementDef> + 'a {
        self.child_list
            .get(parent)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|&i| &self.elements[i])
    }

    /// The element at a relative path.
    pub fn element(&self, path: &str) -> Option<&ElementDef> {
        self.elements.iter().find(|e| e.path == path)
    }
}

/// `dateTime` -> `DateTime`, as choice element names spell their types.
pub fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[derive(Deserialize)]
struct Table {
    types: Vec<TypeDef>,
}

/// All R4 types by name.
#[derive(Debug)]
pub struct Definitions {
    types: HashMap<String, TypeDef>,
    resource_types: Vec<String>,
}

// The data is compiled in and checked by the crate's tests: it cannot fail at run time.
#[allow(clippy::expect_used)]
static R4: LazyLock<Definitions> = LazyLock::new(|| {
    Definitions::from_json(include_str!("../../conformance/r4/elements.json"))
        .expect("conformance/r4/elements.json is valid (checked by tests)")
});

impl Definitions {
    /// The R4 (4.0.1) definitions compiled into the binary.
    pub fn r4() -> &'static Definitions {
        &R4
    }

    /// Parses an element table in the `conformance/r4/elements.json` format.
    pub fn from_json(text: &str) -> Result<Definitions, serde_json::Error> {
        let table: Table = serde_json::from_str(text)?;
        let mut types = HashMap::default();
        let mut resource_types = Vec::new();
        for mut def in table.types {
            def.build_lookup();
            if def.kind == Kind::Resource && !def.is_abstract {
                resource_types.push(def.name.clone());
            }
            types.insert(def.name.clone(), def);
        }
        resource_types.sort();
        Ok(Definitions {
            types,
            resource_types,
        })
    }

    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// A concrete (non-abstract) resource type: what may appear in a URL or `resourceType`.
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.types
            .get(name)
            .is_some_and(|t| t.kind == Kind::Resource && !t.is_abstract)
    }

    /// Every concrete resource type, sorted by name.
    pub fn resource_types(&self) -> &[String] {
        &self.resource_types
    }

    /// Whether `name` is a primitive type (`date`, `boolean`, ...).
    pub fn is_primitive(&self, name: &str) -> bool {
        self.types
            .get(name)
            .is_some_and(|t| t.kind == Kind::PrimitiveType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r4() -> &'static Definitions {
        Definitions::r4()
    }

    fn element<'a>(type_name: &str, path: &str) -> &'a ElementDef {
        r4().type_def(type_name)
            .unwrap_or_else(|| panic!("type {type_name}"))
            .element(path)
            .unwrap_or_else(|| panic!("{type_name}.{path}"))
    }

    #[test]
    fn loads_r4() {
        let defs = r4();
        assert!(defs.is_resource_type("Patient"));
        assert!(!defs.is_resource_type("DomainResource"));
        assert!(!defs.is_resource_type("HumanName"));
        assert!(defs.is_primitive("date"));
        assert_eq!(defs.type_def("Patient").unwrap().kind, Kind::Resource);
        assert!(defs.type_def("Resource").unwrap().is_abstract);
    }

    #[test]
    fn resource_types_cover_r4() {
        let types = r4().resource_types();
        assert!(types.len() >= 145, "{} resource types", types.len());
        for name in [
            "Bundle",
            "Parameters",
            "Binary",
            "Questionnaire",
            "Observation",
        ] {
            assert!(types.iter().any(|t| t == name), "{name} missing");
        }
        // Not R4 (R4B), although the source package carries it.
        assert!(!r4().is_resource_type("SubscriptionStatus"));
    }

    #[test]
    fn required_binding_codes() {
        let gender = element("Patient", "gender");
        assert_eq!(gender.types, ["code"]);
        let mut codes = gender.codes.clone().expect("gender codes");
        codes.sort();
        assert_eq!(codes, ["female", "male", "other", "unknown"]);

        let status = element("Appointment", "status");
        assert!(status.codes.as_ref().unwrap().iter().any(|c| c == "booked"));
    }

    #[test]
    fn cardinality() {
        let participant = element("Appointment", "participant");
        assert_eq!(participant.min, 1);
        assert!(participant.is_array());
        assert_eq!(participant.max_count(), None);
        let gender = element("Patient", "gender");
        assert!(!gender.is_array());
        assert_eq!(gender.max_count(), Some(1));
    }

    #[test]
    fn choice_child() {
        let patient = r4().type_def("Patient").unwrap();
        let child = patient
            .child("", "deceasedBoolean")
            .expect("deceasedBoolean");
        assert_eq!(child.type_code, Some("boolean"));
        assert_eq!(child.element.path, "deceased[x]");
        assert_eq!(child.element.name(), "deceased");
        assert!(child.element.is_choice());
        assert!(patient.child("", "deceasedDateTime").is_some());
        assert!(patient.child("", "deceased").is_none());
        assert!(patient.child("", "deceasedString").is_none());
    }

    #[test]
    fn nested_child_and_targets() {
        let patient = r4().type_def("Patient").unwrap();
        let name = patient.child("contact", "name").expect("contact.name");
        assert_eq!(name.type_code, Some("HumanName"));
        let org = patient.child("", "managingOrganization").unwrap();
        assert_eq!(org.element.targets, ["Organization"]);
        assert_eq!(patient.child("", "id").unwrap().type_code, Some("id"));
        let children: Vec<&str> = patient.children_of("contact").map(|e| e.name()).collect();
        assert_eq!(&children[..3], ["id", "extension", "modifierExtension"]);
    }

    #[test]
    fn content_reference() {
        let item = element("Questionnaire", "item.item");
        assert_eq!(item.content_ref.as_deref(), Some("item"));
        assert!(item.types.is_empty());
        let questionnaire = r4().type_def("Questionnaire").unwrap();
        assert_eq!(questionnaire.child("item", "item").unwrap().type_code, None);
    }

    #[test]
    fn primitive_regex() {
        let date = r4().type_def("date").unwrap();
        assert_eq!(date.kind, Kind::PrimitiveType);
        assert!(date.regex.as_deref().is_some_and(|r| r.contains("[0-9]")));
        assert!(date.elements.is_empty());
    }

    #[test]
    fn datatype_ids_stay_strings() {
        assert_eq!(element("HumanName", "id").types, ["string"]);
        assert_eq!(element("Extension", "url").types, ["uri"]);
        assert_eq!(element("Resource", "id").types, ["id"]);
    }

    #[test]
    fn summary_flags() {
        assert!(element("Patient", "name").summary);
        assert!(element("Patient", "deceased[x]").summary);
        assert!(element("Patient", "id").summary);
        assert!(!element("Patient", "photo").summary);
        assert!(!element("Patient", "contact").summary);
        assert!(element("HumanName", "family").summary);
        assert!(!element("Observation", "note").summary);
    }

    #[test]
    fn package_additions_are_not_r4() {
        // Medplum grafts these onto its snapshots; they are not FHIR 4.0.1.
        let meta = r4().type_def("Meta").unwrap();
        assert!(meta.element("project").is_none());
        let study = r4().type_def("ResearchStudy").unwrap();
        assert!(study.element("label").is_none());
    }
}
