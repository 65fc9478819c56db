//! Validation of a FHIR R4 resource, in its JSON form, against the R4 definitions.
//!
//! What is checked (<https://hl7.org/fhir/R4/json.html> and the element table of
//! [`Definitions`]):
//!
//! - the root is an object whose `resourceType` names a concrete resource type;
//! - every key is an element of its parent (`resourceType` only at a resource root,
//!   `_x` only beside a primitive element `x`, no R3 `fhir_comments`);
//! - JSON types: `boolean` is a JSON boolean, `integer`/`positiveInt`/`unsignedInt`/`decimal`
//!   are JSON numbers, every other primitive is a JSON string, complex types and backbone
//!   elements are objects, repeating elements (max other than `1`) are arrays and the
//!   others single values;
//! - no `null` except inside a primitive array aligned with its `_x` array, no empty
//!   object, array or string;
//! - the lexical form of every primitive ([`check_primitive`]);
//! - cardinality: every element with `min >= 1` is present (a primitive counts as present
//!   when `x` or `_x` is), and no array is longer than a numeric `max`;
//! - at most one type of a choice element (`deceasedBoolean` or `deceasedDateTime`);
//! - the codes of required bindings, when the table can enumerate them;
//! - the invariants ext-1 (an extension has a value or nested extensions, not both) and
//!   dom-2 (a contained resource contains no resources);
//! - the same, recursively, in complex types, backbone elements, content references
//!   (`Questionnaire.item.item`), contained resources and `Bundle.entry.resource`.
//!
//! Every problem found is reported (up to [`MAX_ISSUES`]), each as an [`Issue`] whose
//! [`Category`] tells the server to answer 400 (the JSON is not an R4 resource) or 422 (a
//! resource that breaks a rule). Paths are kept as a stack of borrowed segments and only
//! formatted into an expression when an issue is raised, so a valid resource costs no
//! allocation for them.

use std::fmt::Write as _;
use std::ptr;

use serde_json::{Map, Value};

use crate::defs::{Child, Definitions, ElementDef, Kind, TypeDef};

/// How bad an issue is, as OperationOutcome.issue.severity spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
}

/// Why a resource was rejected: `Structure` (the JSON is not an R4 resource: unknown
/// element, wrong JSON type, bad `resourceType`, empty object/array/string, null) -> the
/// server answers 400; `Content` (well-formed but invalid: bad primitive format, missing
/// required element, too many values, code outside a required binding) -> 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Structure,
    Content,
}

/// One problem found in a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub category: Category,
    /// FHIR IssueType code: "structure", "required", "value", "code-invalid", "invariant",
    /// "too-long", "too-costly"...
    pub code: &'static str,
    /// FHIRPath to the element, e.g. `Patient.name[0].given[1]`, `Patient.foo`,
    /// `Appointment.participant`. Never empty: a root that is not a resource at all is
    /// `Resource`, a bad `resourceType` is `Resource.resourceType`.
    pub expression: String,
    /// Human message, e.g. "Unknown element 'foo'", "Invalid date '25/12/1974' (...)".
    pub message: String,
}

impl Issue {
    /// Every issue the validator raises rejects the resource: severity `error`.
    pub fn severity(&self) -> Severity {
        Severity::Error
    }
}

/// The validator stops collecting issues (and walking the resource) after this many.
pub const MAX_ISSUES: usize = 100;
/// Objects nested deeper than this are not walked (a Structure issue instead).
pub const MAX_DEPTH: usize = 64;
/// The size limit of `string` and `markdown` values (and of any other string), in bytes.
pub const MAX_STRING_BYTES: usize = 1024 * 1024;

/// Validates a resource against the R4 definitions: `Ok(())` or every problem found (not
/// just the first), at most [`MAX_ISSUES`].
pub fn validate_resource(resource: &Value) -> Result<(), Vec<Issue>> {
    validate_with(Definitions::r4(), resource)
}

/// [`validate_resource`] with explicit definitions (for tests).
pub fn validate_with(defs: &Definitions, resource: &Value) -> Result<(), Vec<Issue>> {
    let mut validator = Validator {
        defs,
        issues: Vec::new(),
        path: Vec::with_capacity(16),
        seen: Vec::with_capacity(32),
        depth: 0,
    };
    validator.resource(resource, Frame::Root);
    if validator.issues.is_empty() {
        Ok(())
    } else {
        Err(validator.issues)
    }
}

/// Checks one primitive value's lexical form, as it would appear in XML or a search
/// parameter (`"true"`, `"42"`, `"2020-02-29"`): `check_primitive("date", "2020-02-30")` is
/// an `Err` with a message. Unknown (non-primitive) type codes are accepted.
pub fn check_primitive(type_code: &str, value: &str) -> Result<(), String> {
    check_lexical(type_code, value).map_err(|problem| problem.message)
}

// ---------------------------------------------------------------------------------------
// The walk

/// One step of the path to the current value: an element name or an array index.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Name(&'a str),
    Index(usize),
}

struct Validator<'a> {
    defs: &'a Definitions,
    issues: Vec<Issue>,
    /// The path to the value being checked; formatted only when an issue is raised.
    path: Vec<Seg<'a>>,
    /// The elements met in the objects being walked (a frame per open object), with the
    /// JSON key (without `_`) that selected each: for cardinality and choice checks.
    seen: Vec<(&'a ElementDef, &'a str)>,
    depth: usize,
}

impl<'a> Validator<'a> {
    fn full(&self) -> bool {
        self.issues.len() >= MAX_ISSUES
    }

    fn expression(&self) -> String {
        let mut out = String::with_capacity(64);
        for seg in &self.path {
            match seg {
                Seg::Name(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Seg::Index(index) => {
                    let _ = write!(out, "[{index}]");
                }
            }
        }
        if out.is_empty() {
            out.push_str("Resource");
        }
        out
    }

    fn issue(&mut self, category: Category, code: &'static str, message: String) {
        if self.full() {
            return;
        }
        let expression = self.expression();
        self.issues.push(Issue {
            category,
            code,
            expression,
            message,
        });
    }

    fn structure(&mut self, message: String) {
        self.issue(Category::Structure, "structure", message);
    }

    /// An issue about the child `name` of the current path.
    fn issue_at(&mut self, name: &'a str, category: Category, code: &'static str, message: String) {
        self.path.push(Seg::Name(name));
        self.issue(category, code, message);
        self.path.pop();
    }

    /// A resource: at the root (`top`), in `contained`, `Bundle.entry.resource`...
    fn resource(&mut self, value: &'a Value, frame: Frame) {
        let top = frame == Frame::Root;
        let Value::Object(obj) = value else {
            let message = format!("Expected a resource (a JSON object), found {}", kind(value));
            self.structure(message);
            return;
        };
        let resource_type = match obj.get("resourceType") {
            Some(Value::String(name)) => name.as_str(),
            other => {
                let message = match other {
                    None => "Missing 'resourceType'".to_owned(),
                    Some(v) => format!("'resourceType' must be a string, found {}", kind(v)),
                };
                self.resource_type_issue(top, message);
                return;
            }
        };
        let Some(def) = self
            .defs
            .type_def(resource_type)
            .filter(|_| self.defs.is_resource_type(resource_type))
        else {
            let message = format!("Unknown resource type '{}'", shown(resource_type));
            self.resource_type_issue(top, message);
            return;
        };
        if top {
            self.path.push(Seg::Name(resource_type));
        }
        self.object(def, "", obj, frame);
        if top {
            self.path.pop();
        }
    }

    fn resource_type_issue(&mut self, top: bool, message: String) {
        if top {
            self.path.push(Seg::Name("Resource"));
        }
        self.issue_at("resourceType", Category::Structure, "structure", message);
        if top {
            self.path.pop();
        }
    }

    /// The elements of one object: a resource, a complex type instance (`parent == ""`) or a
    /// backbone element (`parent` is its relative path in `def`).
    fn object(
        &mut self,
        def: &'a TypeDef,
        parent: &'a str,
        obj: &'a Map<String, Value>,
        frame: Frame,
    ) {
        if obj.is_empty() {
            self.structure("Empty object is not allowed".to_owned());
            return;
        }
        if self.depth >= MAX_DEPTH {
            self.issue(
                Category::Structure,
                "too-costly",
                format!("Nested deeper than {MAX_DEPTH} levels"),
            );
            return;
        }
        self.depth += 1;
        let start = self.seen.len();
        for (key, value) in obj {
            if self.full() {
                break;
            }
            let key = key.as_str();
            if key == "resourceType" && frame != Frame::Element {
                continue;
            }
            let (is_ext, name) = match key.strip_prefix('_') {
                Some(name) if !name.is_empty() => (true, name),
                _ => (false, key),
            };
            let child = def.child(parent, name).filter(|child| {
                !is_ext || child.type_code.is_some_and(|code| self.is_primitive(code))
            });
            let Some(child) = child else {
                self.issue_at(
                    key,
                    Category::Structure,
                    "structure",
                    format!("Unknown element '{}'", shown(key)),
                );
                continue;
            };
            let element = child.element;
            if element.is_choice()
                && let Some(&(_, other)) = self.seen[start..]
                    .iter()
                    .find(|(seen, seen_name)| ptr::eq(*seen, element) && *seen_name != name)
            {
                let message = format!(
                    "Only one of '{other}' and '{name}' may be present ({})",
                    last_segment(&element.path)
                );
                self.issue_at(key, Category::Structure, "structure", message);
            }
            if frame == Frame::Contained && name == "contained" && !is_ext {
                self.issue_at(
                    name,
                    Category::Content,
                    "invariant",
                    "A contained resource must not contain resources (dom-2)".to_owned(),
                );
            }
            self.seen.push((element, name));
            self.path.push(Seg::Name(name));
            if is_ext {
                self.primitive_extension(child, key, name, value, obj);
            } else {
                self.element(def, child, name, value, obj);
            }
            self.path.pop();
        }
        if !self.full() {
            self.required(def, parent, start);
        }
        self.seen.truncate(start);
        self.depth -= 1;
    }

    /// Cardinality: every child of `parent` with `min >= 1` was met in this object.
    fn required(&mut self, def: &'a TypeDef, parent: &str, start: usize) {
        for element in def.children_of(parent) {
            if element.min == 0 {
                continue;
            }
            let present = self.seen[start..]
                .iter()
                .any(|(seen, _)| ptr::eq(*seen, element));
            if !present {
                let message = format!(
                    "Missing required element '{}' (min {})",
                    last_segment(&element.path),
                    element.min
                );
                self.issue_at(element.name(), Category::Content, "required", message);
            }
        }
    }

    /// The value of element `name` (already on the path): an array or a single value.
    fn element(
        &mut self,
        def: &'a TypeDef,
        child: Child<'a>,
        name: &'a str,
        value: &'a Value,
        obj: &'a Map<String, Value>,
    ) {
        let element = child.element;
        if !element.is_array() {
            if let Value::Array(_) = value {
                self.structure(format!(
                    "Expected a single value for '{name}' (max 1), found an array"
                ));
            } else {
                self.single(def, child, name, value);
            }
            return;
        }
        let items = match value {
            Value::Array(items) => items,
            Value::Null => {
                self.structure("Null value is not allowed".to_owned());
                return;
            }
            other => {
                self.structure(format!(
                    "Expected an array for '{name}' (max {}), found {}",
                    element.max,
                    kind(other)
                ));
                return;
            }
        };
        if items.is_empty() {
            self.structure("Empty array is not allowed".to_owned());
            return;
        }
        self.count(element, name, items.len());
        let primitive = child.type_code.is_some_and(|code| self.is_primitive(code));
        // The `_name` array, looked up only if a null needs it.
        let mut extensions: Option<Option<&'a Vec<Value>>> = None;
        for (index, item) in items.iter().enumerate() {
            if self.full() {
                break;
            }
            self.path.push(Seg::Index(index));
            if item.is_null() && primitive {
                let extensions = *extensions
                    .get_or_insert_with(|| obj.get(&format!("_{name}")).and_then(Value::as_array));
                let aligned = extensions
                    .and_then(|ext| ext.get(index))
                    .is_some_and(|ext| !ext.is_null());
                if !aligned {
                    self.structure(format!(
                        "Null value is not allowed (only in a primitive array whose '_{name}' \
                         array has an extension at the same index)"
                    ));
                }
            } else {
                self.single(def, child, name, item);
            }
            self.path.pop();
        }
    }

    /// The array bounds of `element`: at most a numeric `max`, at least a `min` above 1.
    fn count(&mut self, element: &ElementDef, name: &str, len: usize) {
        if let Some(max) = element.max_count()
            && len > max as usize
        {
            self.issue(
                Category::Content,
                "structure",
                format!("Too many values for '{name}': {len} (max {max})"),
            );
        }
        if element.min > 1 && len < element.min as usize {
            self.issue(
                Category::Content,
                "required",
                format!("Too few values for '{name}': {len} (min {})", element.min),
            );
        }
    }

    /// One value of element `name` (the path ends at it, index included).
    fn single(&mut self, def: &'a TypeDef, child: Child<'a>, name: &'a str, value: &'a Value) {
        if value.is_null() {
            self.structure("Null value is not allowed".to_owned());
            return;
        }
        let element = child.element;
        let Some(code) = child.type_code else {
            if let Some(reference) = &element.content_ref {
                let reference = content_path(def, reference);
                self.object_value(
                    def,
                    reference,
                    name,
                    "BackboneElement",
                    value,
                    Frame::Element,
                );
            }
            return;
        };
        let code = fhir_type(code);
        if self.is_primitive(code) {
            self.primitive(code, element, name, value);
        } else if code == "Resource" {
            let contained = def.kind == Kind::Resource && element.path == "contained";
            self.resource(
                value,
                if contained {
                    Frame::Contained
                } else {
                    Frame::Nested
                },
            );
        } else if (code == "BackboneElement" || code == "Element")
            && def.children_of(&element.path).next().is_some()
        {
            self.object_value(def, &element.path, name, code, value, Frame::Element);
        } else if let Some(type_def) = self.defs.type_def(code) {
            self.object_value(type_def, "", name, code, value, Frame::Element);
            if code == "Extension" {
                self.extension_invariant(value);
            }
        }
    }

    fn object_value(
        &mut self,
        def: &'a TypeDef,
        parent: &'a str,
        name: &str,
        type_name: &str,
        value: &'a Value,
        frame: Frame,
    ) {
        match value {
            Value::Object(obj) => self.object(def, parent, obj, frame),
            other => self.structure(format!(
                "Expected an object for '{name}' ({type_name}), found {}",
                kind(other)
            )),
        }
    }

    /// ext-1: an extension has nested extensions or a value, not both and not neither.
    fn extension_invariant(&mut self, value: &Value) {
        let Value::Object(obj) = value else { return };
        if obj.is_empty() {
            return;
        }
        let nested = obj.contains_key("extension");
        let valued = obj
            .keys()
            .any(|k| k.starts_with("value") || k.starts_with("_value"));
        if nested == valued {
            self.issue(
                Category::Content,
                "invariant",
                "An extension must have either nested extensions or a value[x], not both (ext-1)"
                    .to_owned(),
            );
        }
    }

    /// A primitive value in its JSON form.
    fn primitive(&mut self, code: &str, element: &ElementDef, name: &str, value: &Value) {
        let expected = match code {
            "boolean" => {
                if value.is_boolean() {
                    return;
                }
                "a boolean"
            }
            "integer" | "positiveInt" | "unsignedInt" | "decimal" => {
                if let Value::Number(number) = value {
                    self.lexical(code, number.as_str());
                    return;
                }
                "a number"
            }
            _ => {
                if let Value::String(text) = value {
                    if text.is_empty() {
                        self.structure("Empty string is not allowed".to_owned());
                        return;
                    }
                    // A code that is not even a code is not looked up in the value set.
                    if self.lexical(code, text)
                        && let Some(codes) = &element.codes
                        && !codes.iter().any(|c| c == text)
                    {
                        let message = format!(
                            "Code '{}' is not in the required value set ({})",
                            shown(text),
                            code_list(codes)
                        );
                        self.issue(Category::Content, "code-invalid", message);
                    }
                    return;
                }
                "a string"
            }
        };
        self.structure(format!(
            "Expected {expected} for '{name}' ({code}), found {}",
            kind(value)
        ));
    }

    /// Checks a lexical form; false (and an issue) if it is invalid.
    fn lexical(&mut self, code: &str, text: &str) -> bool {
        match check_lexical(code, text) {
            Ok(()) => true,
            Err(problem) => {
                self.issue(Category::Content, problem.code, problem.message);
                false
            }
        }
    }

    /// `_name`: the id and extensions of primitive `name` (an Element), or an array of them
    /// (with nulls) aligned with the `name` array.
    fn primitive_extension(
        &mut self,
        child: Child<'a>,
        key: &'a str,
        name: &'a str,
        value: &'a Value,
        obj: &'a Map<String, Value>,
    ) {
        let Some(element_def) = self.defs.type_def("Element") else {
            return;
        };
        let element = child.element;
        if !element.is_array() {
            match value {
                Value::Array(_) => self.structure(format!(
                    "Expected a single value for '{key}' (max 1), found an array"
                )),
                Value::Null => self.structure("Null value is not allowed".to_owned()),
                _ => self.object_value(element_def, "", key, "Element", value, Frame::Element),
            }
            return;
        }
        let items = match value {
            Value::Array(items) => items,
            Value::Null => {
                self.structure("Null value is not allowed".to_owned());
                return;
            }
            other => {
                self.structure(format!(
                    "Expected an array for '{key}' (max {}), found {}",
                    element.max,
                    kind(other)
                ));
                return;
            }
        };
        if items.is_empty() {
            self.structure("Empty array is not allowed".to_owned());
            return;
        }
        let values = match obj.get(name) {
            Some(Value::Array(values)) => {
                if values.len() != items.len() {
                    self.structure(format!(
                        "'{key}' has {} items but '{name}' has {}: they must be aligned",
                        items.len(),
                        values.len()
                    ));
                }
                Some(values)
            }
            _ => {
                self.count(element, name, items.len());
                None
            }
        };
        for (index, item) in items.iter().enumerate() {
            if self.full() {
                break;
            }
            self.path.push(Seg::Index(index));
            if item.is_null() {
                // A null in both arrays is reported once, by the `name` array.
                if values.and_then(|values| values.get(index)).is_none() {
                    self.structure(format!(
                        "Null value is not allowed (only in '{key}' where '{name}' has a value \
                         at the same index)"
                    ));
                }
            } else {
                self.object_value(element_def, "", key, "Element", item, Frame::Element);
            }
            self.path.pop();
        }
    }

    fn is_primitive(&self, code: &str) -> bool {
        let code = fhir_type(code);
        self.defs.is_primitive(code) || PRIMITIVES.contains(&code)
    }
}

/// What kind of object is being walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// The resource at the root of the document.
    Root,
    /// A resource in `contained`.
    Contained,
    /// Another resource inside a resource (Bundle.entry.resource, Parameters.parameter.resource).
    Nested,
    /// A complex type instance or backbone element.
    Element,
}

/// The R4 primitive types (should the definitions lack one).
const PRIMITIVES: &[&str] = &[
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "xhtml",
];

/// A FHIR type code; FHIRPath system types (`http://hl7.org/fhirpath/System.String`, which
/// the definitions use for `id`, `Extension.url`...) map to their FHIR primitive.
fn fhir_type(code: &str) -> &str {
    match code.strip_prefix("http://hl7.org/fhirpath/System.") {
        None => code,
        Some("String") => "string",
        Some("Boolean") => "boolean",
        Some("Integer") => "integer",
        Some("Decimal") => "decimal",
        Some("Date") => "date",
        Some("DateTime") => "dateTime",
        Some("Time") => "time",
        Some(_) => code,
    }
}

/// A content reference as a relative path (`#Questionnaire.item` -> `item`).
fn content_path<'d>(def: &TypeDef, reference: &'d str) -> &'d str {
    let reference = reference.strip_prefix('#').unwrap_or(reference);
    match reference.strip_prefix(def.name.as_str()) {
        Some(rest) if rest.starts_with('.') => &rest[1..],
        _ => reference,
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value for a message, cut at 64 characters.
fn shown(value: &str) -> String {
    const LIMIT: usize = 64;
    match value.char_indices().nth(LIMIT) {
        None => value.to_owned(),
        Some((cut, _)) => format!("{}...", &value[..cut]),
    }
}

/// The codes of a value set for a message, cut after 12.
fn code_list(codes: &[String]) -> String {
    const LIMIT: usize = 12;
    let mut out = codes
        .iter()
        .take(LIMIT)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if codes.len() > LIMIT {
        let _ = write!(out, ", ... ({} codes)", codes.len());
    }
    out
}

// ---------------------------------------------------------------------------------------
// Primitive lexical forms
//
// Hand-written checkers, one per primitive type, each implementing the regular expression
// the R4 StructureDefinition gives for the type's value (the `regex` of its [`TypeDef`];
// the `SPEC_REGEXES` test keeps the two in step). Where the checker is stricter than the
// regex, the doc comment says so.

struct Problem {
    code: &'static str,
    message: String,
}

fn check_lexical(type_code: &str, value: &str) -> Result<(), Problem> {
    let code = fhir_type(type_code);
    if value.len() > MAX_STRING_BYTES {
        return Err(Problem {
            code: "too-long",
            message: format!(
                "Value of {} bytes exceeds the {MAX_STRING_BYTES} bytes limit",
                value.len()
            ),
        });
    }
    if let Some(at) = value.find(is_control) {
        let c = value[at..].chars().next().unwrap_or_default();
        return Err(Problem {
            code: "value",
            message: format!(
                "Control character U+{:04X} at byte {at} is not allowed in FHIR strings (only tab, CR and LF are)",
                u32::from(c)
            ),
        });
    }
    let b = value.as_bytes();
    let (ok, expected) = match code {
        "boolean" => (value == "true" || value == "false", "true or false"),
        "integer" => (is_integer(b, i64::from(i32::MIN)), "a 32-bit integer"),
        "unsignedInt" => (is_integer(b, 0), "an integer from 0 to 2147483647"),
        "positiveInt" => (is_integer(b, 1), "an integer from 1 to 2147483647"),
        "decimal" => (is_decimal(b), "a decimal number"),
        "date" => (is_date(b), "YYYY, YYYY-MM or YYYY-MM-DD, a calendar date"),
        "dateTime" => (
            is_date_time(b),
            "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm)",
        ),
        "instant" => (is_instant(b), "YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm)"),
        "time" => (is_time(b), "hh:mm:ss[.fff]"),
        "id" => (
            is_id(b),
            "1 to 64 characters from A-Z, a-z, 0-9, '-' and '.'",
        ),
        "code" => (
            is_code(b),
            "no leading, trailing or repeated whitespace, not empty",
        ),
        "uri" | "url" | "canonical" => (
            !b.is_empty() && !b.iter().any(|&c| is_space(c)),
            "no whitespace",
        ),
        "oid" => (is_oid(b), "urn:oid: followed by a dotted OID"),
        "uuid" => (is_uuid(b), "urn:uuid: followed by a lowercase UUID"),
        "base64Binary" => (is_base64(b), "base64"),
        "string" | "markdown" => (is_string(b), "not empty, no vertical tab or form feed"),
        "xhtml" => (
            value.trim_start().starts_with("<div"),
            "XHTML starting with <div",
        ),
        _ => (true, ""),
    };
    if ok {
        Ok(())
    } else {
        Err(Problem {
            code: "value",
            message: format!("Invalid {code} '{}' (expected {expected})", shown(value)),
        })
    }
}

/// A code point below U+0020 other than tab, CR and LF: FHIR strings must not carry them
/// (https://hl7.org/fhir/R4/datatypes.html#string), XML cannot, and PostgreSQL cannot
/// store U+0000.
pub fn is_control(c: char) -> bool {
    c < ' ' && !matches!(c, '\t' | '\n' | '\r')
}

/// `\s` of the spec regexes (Java, ASCII): space, tab, newline, vertical tab, form feed, CR.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_digits(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(u8::is_ascii_digit)
}

/// integer `-?([0]|([1-9][0-9]*))`, unsignedInt `[0]|([1-9][0-9]*)`, positiveInt
/// `[1-9][0-9]*`, each within its range (up to 2147483647, integer from -2147483648): the
/// sign allowed and the lower bound follow from `min`.
fn is_integer(b: &[u8], min: i64) -> bool {
    let digits = match b.strip_prefix(b"-") {
        Some(rest) if min < 0 => rest,
        Some(_) => return false,
        None => b,
    };
    if !is_digits(digits) || (digits.len() > 1 && digits[0] == b'0') || digits.len() > 10 {
        return false;
    }
    let magnitude: i64 = digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0'));
    let n = if digits.len() < b.len() {
        -magnitude
    } else {
        magnitude
    };
    (min..=i64::from(i32::MAX)).contains(&n)
}

/// decimal `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_decimal(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"-").unwrap_or(b);
    let int_end = b
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len());
    let (int, mut rest) = b.split_at(int_end);
    if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
        return false;
    }
    if let Some(frac) = rest.strip_prefix(b".") {
        let end = frac
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if end == 0 {
            return false;
        }
        rest = &frac[end..];
    }
    if let Some(exp) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let exp = exp
            .strip_prefix(b"+")
            .or_else(|| exp.strip_prefix(b"-"))
            .unwrap_or(exp);
        return is_digits(exp);
    }
    rest.is_empty()
}

/// Two ASCII digits as a number.
fn two(b: &[u8]) -> Option<u32> {
    match b {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// date `([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|
/// [1-2][0-9]|3[0-1]))?)?`: years 0001 to 9999; stricter than the regex, the day must exist
/// in its month (no 2021-02-29, no 04-31).
fn is_date(b: &[u8]) -> bool {
    if !matches!(b.len(), 4 | 7 | 10) || !is_digits(&b[..4]) || &b[..4] == b"0000" {
        return false;
    }
    if b.len() == 4 {
        return true;
    }
    let year = b[..4].iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
    let Some(month) = two(&b[5..7]).filter(|m| b[4] == b'-' && (1..=12).contains(m)) else {
        return false;
    };
    if b.len() == 7 {
        return true;
    }
    b[7] == b'-' && two(&b[8..10]).is_some_and(|d| d >= 1 && d <= days_in_month(year, month))
}

/// `([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?` at the start of `b`: the
/// length it spans.
fn time_of_day(b: &[u8]) -> Option<usize> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let hour = two(&b[0..2])?;
    let minute = two(&b[3..5])?;
    let second = two(&b[6..8])?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    match b[8..].strip_prefix(b".") {
        Some(frac) => {
            let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            (digits > 0).then_some(9 + digits)
        }
        None => Some(8),
    }
}

/// The time and zone of a dateTime or instant: `time_of_day` then
/// `(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))`.
fn time_with_zone(b: &[u8]) -> bool {
    let Some(end) = time_of_day(b) else {
        return false;
    };
    match &b[end..] {
        b"Z" => true,
        [sign, zone @ ..] if (*sign == b'+' || *sign == b'-') && zone.len() == 5 => {
            zone[2] == b':'
                && match (two(&zone[..2]), two(&zone[3..])) {
                    (Some(h), Some(m)) => (h <= 13 && m <= 59) || (h == 14 && m == 0),
                    _ => false,
                }
        }
        _ => false,
    }
}

/// dateTime: a date, or `YYYY-MM-DD` `T` time with mandatory seconds and zone (the regex
/// `...(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):
/// [0-5][0-9]|14:00)))?)?)?`); the date part checked as in [`is_date`].
fn is_date_time(b: &[u8]) -> bool {
    if b.len() <= 10 {
        return is_date(b);
    }
    is_date(&b[..10]) && b[10] == b'T' && time_with_zone(&b[11..])
}

/// instant `...-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:
/// ([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))`: a dateTime with
/// every part, seconds and zone included.
fn is_instant(b: &[u8]) -> bool {
    b.len() > 10 && is_date_time(b)
}

/// time `([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?`.
fn is_time(b: &[u8]) -> bool {
    time_of_day(b) == Some(b.len())
}

/// id `[A-Za-z0-9\-\.]{1,64}`.
fn is_id(b: &[u8]) -> bool {
    (1..=64).contains(&b.len())
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
}

/// code `[^\s]+(\s[^\s]+)*`: not empty, no leading, trailing or doubled whitespace.
fn is_code(b: &[u8]) -> bool {
    !b.is_empty()
        && !is_space(b[0])
        && !is_space(b[b.len() - 1])
        && !b.windows(2).any(|w| is_space(w[0]) && is_space(w[1]))
}

/// oid `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`.
fn is_oid(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"urn:oid:") else {
        return false;
    };
    let mut arcs = rest.split(|&c| c == b'.');
    if !matches!(arcs.next(), Some([b'0'..=b'2'])) {
        return false;
    }
    let mut count = 0;
    for arc in arcs {
        if !is_digits(arc) || (arc.len() > 1 && arc[0] == b'0') {
            return false;
        }
        count += 1;
    }
    count > 0
}

/// uuid `urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`.
fn is_uuid(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"urn:uuid:") else {
        return false;
    };
    rest.len() == 36
        && rest.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// base64Binary `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`: groups of four base64 characters with
/// whitespace around them. Stricter than the regex on padding (`=` only at the end, at most
/// two) and more lenient on whitespace (allowed anywhere, e.g. inside a group).
fn is_base64(b: &[u8]) -> bool {
    let mut count = 0usize;
    let mut padding = 0usize;
    for &c in b {
        if is_space(c) {
            continue;
        }
        if c == b'=' {
            padding += 1;
        } else if padding > 0 || !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/') {
            return false;
        }
        count += 1;
    }
    count > 0 && count.is_multiple_of(4) && padding <= 2
}

/// string and markdown `[ \r\n\t\S]+`: not empty, and no whitespace but space, CR, LF and
/// tab (that is: no vertical tab or form feed). The 1 MB limit is checked for every type.
fn is_string(b: &[u8]) -> bool {
    !b.is_empty() && !b.iter().any(|&c| c == 0x0b || c == 0x0c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issues(resource: &Value) -> Vec<Issue> {
        match validate_resource(resource) {
            Ok(()) => Vec::new(),
            Err(issues) => issues,
        }
    }

    fn assert_valid(resource: &Value) {
        if let Err(issues) = validate_resource(resource) {
            panic!("expected valid, got {issues:#?}");
        }
    }

    /// The single issue of `resource`, which must be at `expression`.
    fn one_issue(resource: &Value, category: Category, code: &str, expression: &str) -> Issue {
        let issues = issues(resource);
        assert_eq!(issues.len(), 1, "expected one issue, got {issues:#?}");
        let issue = issues.into_iter().next().unwrap();
        assert_eq!(
            (issue.category, issue.code, issue.expression.as_str()),
            (category, code, expression),
            "{issue:#?}"
        );
        issue
    }

    /// A Patient with `extra` merged into its top level.
    fn patient_with(extra: Value) -> Value {
        let mut patient = json!({"resourceType": "Patient", "id": "p1"});
        for (key, value) in extra.as_object().unwrap() {
            patient[key] = value.clone();
        }
        patient
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "pat-1",
            "meta": {"versionId": "3", "lastUpdated": "2024-01-02T03:04:05.678Z",
                     "profile": ["http://hl7.org/fhir/StructureDefinition/Patient"]},
            "text": {"status": "generated",
                     "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter James Chalmers</div>"},
            "contained": [{
                "resourceType": "Practitioner", "id": "gp",
                "name": [{"family": "Careful", "given": ["Adam"], "prefix": ["Dr"]}],
                "qualification": [{"code": {"text": "MD"}}]
            }],
            "extension": [
                {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                 "valueAddress": {"city": "Springfield", "country": "US"}},
                {"url": "http://example.org/fhir/StructureDefinition/complex",
                 "extension": [{"url": "part", "valueCode": "a"},
                               {"url": "when", "valuePeriod": {"start": "2020-01"}}]}
            ],
            "identifier": [{"use": "usual", "system": "urn:oid:1.2.36.146.595.217.0.1",
                            "value": "12345", "period": {"start": "2001-05-06"}}],
            "active": true,
            "name": [
                {"use": "official", "family": "Chalmers", "given": ["Peter", null, "James"],
                 "_given": [null,
                            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier",
                                            "valueCode": "MID"}]},
                            {"id": "g3"}]},
                {"use": "usual", "given": ["Jim"]}
            ],
            "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1}],
            "gender": "male",
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
            "deceasedBoolean": false,
            "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille",
                         "postalCode": "3999", "period": {"start": "1974-12-25"}}],
            "multipleBirthInteger": 2,
            "photo": [{"contentType": "image/gif", "data": "AAECAwQFBgcICQoLDA0ODxAREhMU\nFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7"}],
            "contact": [{
                "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                              "code": "N"}]}],
                "name": {"family": "du Marché",
                         "_family": {"extension": [{
                             "url": "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix",
                             "valueString": "VV"}]},
                         "given": ["Bénédicte"]},
                "telecom": [{"system": "phone", "value": "+33 (237) 998327"}],
                "gender": "female",
                "period": {"start": "2012"}
            }],
            "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "nl-NL"}]},
                               "preferred": true}],
            "generalPractitioner": [{"reference": "#gp"}],
            "managingOrganization": {"reference": "Organization/1", "display": "ACME Healthcare"}
        })
    }

    fn appointment() -> Value {
        json!({
            "resourceType": "Appointment",
            "id": "appt-1",
            "status": "booked",
            "serviceType": [{"coding": [{"code": "52", "display": "General Discussion"}]}],
            "description": "Discussion on the results of your recent MRI",
            "start": "2024-05-01T09:00:00Z",
            "end": "2024-05-01T09:30:00+00:00",
            "minutesDuration": 30,
            "slot": [{"reference": "Slot/s1"}],
            "created": "2024-04-01",
            "participant": [
                {"actor": {"reference": "Patient/pat-1", "display": "Peter James Chalmers"},
                 "required": "required", "status": "accepted"},
                {"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                       "code": "ATND"}]}],
                 "actor": {"reference": "Practitioner/gp"}, "status": "accepted"}
            ]
        })
    }

    #[test]
    fn valid_patient_passes() {
        assert_valid(&patient());
    }

    #[test]
    fn valid_appointment_passes() {
        assert_valid(&appointment());
    }

    #[test]
    fn unknown_element() {
        let issue = one_issue(
            &patient_with(json!({"foo": 1})),
            Category::Structure,
            "structure",
            "Patient.foo",
        );
        assert_eq!(issue.message, "Unknown element 'foo'");
        // Deeper, and with an underscore.
        let mut p = patient();
        p["name"][1]["nickname"] = json!("Jimbo");
        one_issue(
            &p,
            Category::Structure,
            "structure",
            "Patient.name[1].nickname",
        );
        one_issue(
            &patient_with(json!({"_foo": {"id": "x"}})),
            Category::Structure,
            "structure",
            "Patient._foo",
        );
        // `_x` only for primitives.
        one_issue(
            &patient_with(json!({"_name": [{"id": "x"}]})),
            Category::Structure,
            "structure",
            "Patient._name",
        );
        // No comments in R4, and resourceType only at a resource root.
        one_issue(
            &patient_with(json!({"fhir_comments": ["hello"]})),
            Category::Structure,
            "structure",
            "Patient.fhir_comments",
        );
        one_issue(
            &patient_with(
                json!({"maritalStatus": {"resourceType": "CodeableConcept", "text": "M"}}),
            ),
            Category::Structure,
            "structure",
            "Patient.maritalStatus.resourceType",
        );
    }

    #[test]
    fn bad_birth_date() {
        let issue = one_issue(
            &patient_with(json!({"birthDate": "25/12/1974"})),
            Category::Content,
            "value",
            "Patient.birthDate",
        );
        assert!(
            issue.message.starts_with("Invalid date '25/12/1974'"),
            "{}",
            issue.message
        );
    }

    #[test]
    fn gender_outside_required_binding() {
        let issue = one_issue(
            &patient_with(json!({"gender": "robot"})),
            Category::Content,
            "code-invalid",
            "Patient.gender",
        );
        assert_eq!(
            issue.message,
            "Code 'robot' is not in the required value set (female, male, other, unknown)"
        );
        one_issue(
            &patient_with(json!({"gender": "male "})),
            Category::Content,
            "value",
            "Patient.gender",
        );
        let mut p = patient();
        p["contact"][0]["gender"] = json!("Female");
        one_issue(
            &p,
            Category::Content,
            "code-invalid",
            "Patient.contact[0].gender",
        );
    }

    #[test]
    fn bad_ids() {
        one_issue(
            &patient_with(json!({"id": ""})),
            Category::Structure,
            "structure",
            "Patient.id",
        );
        for bad in ["a b", "a_b", "x/1", &"x".repeat(65)] {
            one_issue(
                &patient_with(json!({ "id": bad })),
                Category::Content,
                "value",
                "Patient.id",
            );
        }
        assert_valid(&patient_with(json!({"id": "A-1.b"})));
        // Element ids are strings, not ids.
        assert_valid(&patient_with(
            json!({"name": [{"id": "n 1", "family": "X"}]}),
        ));
    }

    #[test]
    fn appointment_without_participant() {
        let mut a = appointment();
        a.as_object_mut().unwrap().shift_remove("participant");
        let issue = one_issue(&a, Category::Content, "required", "Appointment.participant");
        assert_eq!(
            issue.message,
            "Missing required element 'participant' (min 1)"
        );
    }

    #[test]
    fn participant_without_status() {
        let mut a = appointment();
        a["participant"][0]
            .as_object_mut()
            .unwrap()
            .shift_remove("status");
        one_issue(
            &a,
            Category::Content,
            "required",
            "Appointment.participant[0].status",
        );
        // A primitive counts as present when only its extension is.
        let mut a = appointment();
        let participant = a["participant"][1].as_object_mut().unwrap();
        participant.shift_remove("status");
        participant.insert(
            "_status".into(),
            json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                  "valueCode": "unknown"}]}),
        );
        assert_valid(&a);
    }

    #[test]
    fn wrong_json_types() {
        let cases = [
            (json!({"name": {"family": "X"}}), "Patient.name"),
            (json!({"name": "Peter"}), "Patient.name"),
            (
                json!({"name": [{"given": "Peter"}]}),
                "Patient.name[0].given",
            ),
            (json!({"birthDate": 19741225}), "Patient.birthDate"),
            (json!({"gender": ["male"]}), "Patient.gender"),
            (json!({"active": "true"}), "Patient.active"),
            (
                json!({"multipleBirthInteger": "2"}),
                "Patient.multipleBirthInteger",
            ),
            (json!({"maritalStatus": "M"}), "Patient.maritalStatus"),
            (
                json!({"maritalStatus": [{"text": "M"}]}),
                "Patient.maritalStatus",
            ),
            (
                json!({"contact": [{"name": [{"family": "X"}]}]}),
                "Patient.contact[0].name",
            ),
            (
                json!({"telecom": [{"value": 5551234}]}),
                "Patient.telecom[0].value",
            ),
            (json!({"_birthDate": [{"id": "x"}]}), "Patient.birthDate"),
            (json!({"_birthDate": "x"}), "Patient.birthDate"),
            (
                json!({"contained": [{"resourceType": "Basic", "code": {"text": "x"}}, 5]}),
                "Patient.contained[1]",
            ),
        ];
        for (extra, expression) in cases {
            let resource = patient_with(extra.clone());
            let issue = one_issue(&resource, Category::Structure, "structure", expression);
            assert!(issue.message.starts_with("Expected"), "{extra}: {issue:?}");
        }
    }

    #[test]
    fn two_types_of_one_choice() {
        let issue = one_issue(
            &patient_with(json!({"deceasedBoolean": true, "deceasedDateTime": "2020-01-01"})),
            Category::Structure,
            "structure",
            "Patient.deceasedDateTime",
        );
        assert!(issue.message.contains("deceased[x]"), "{}", issue.message);
        // A value and its own extension are one choice.
        assert_valid(&patient_with(
            json!({"deceasedDateTime": "2020", "_deceasedDateTime": {"id": "d"}}),
        ));
        one_issue(
            &patient_with(json!({"deceasedDateTime": "2020", "_deceasedBoolean": {"id": "d"}})),
            Category::Structure,
            "structure",
            "Patient._deceasedBoolean",
        );
    }

    #[test]
    fn nulls() {
        one_issue(
            &patient_with(json!({"gender": null})),
            Category::Structure,
            "structure",
            "Patient.gender",
        );
        one_issue(
            &patient_with(json!({"name": [null]})),
            Category::Structure,
            "structure",
            "Patient.name[0]",
        );
        one_issue(
            &patient_with(json!({"name": [{"given": ["a", null]}]})),
            Category::Structure,
            "structure",
            "Patient.name[0].given[1]",
        );
        // Null in `given` needs an extension at the same index, and vice versa.
        one_issue(
            &patient_with(json!({"name": [{"given": ["a", null], "_given": [{"id": "1"}, null]}]})),
            Category::Structure,
            "structure",
            "Patient.name[0].given[1]",
        );
        assert_valid(&patient_with(
            json!({"name": [{"given": ["a", null], "_given": [null, {"id": "1"}]}]}),
        ));
        // `_given` without `given`.
        assert_valid(&patient_with(json!({"name": [{"_given": [{"id": "1"}]}]})));
        one_issue(
            &patient_with(json!({"name": [{"_given": [{"id": "1"}, null]}]})),
            Category::Structure,
            "structure",
            "Patient.name[0].given[1]",
        );
        // Misaligned arrays.
        let issue = one_issue(
            &patient_with(json!({"name": [{"given": ["a", "b"], "_given": [{"id": "1"}]}]})),
            Category::Structure,
            "structure",
            "Patient.name[0].given",
        );
        assert!(issue.message.contains("aligned"), "{}", issue.message);
    }

    #[test]
    fn empty_values() {
        for (extra, expression) in [
            (json!({"maritalStatus": {}}), "Patient.maritalStatus"),
            (json!({"name": []}), "Patient.name"),
            (json!({"gender": ""}), "Patient.gender"),
            (
                json!({"name": [{"given": [""]}]}),
                "Patient.name[0].given[0]",
            ),
            (json!({"_birthDate": {}}), "Patient.birthDate"),
            (json!({"contact": [{}]}), "Patient.contact[0]"),
        ] {
            let issue = one_issue(
                &patient_with(extra),
                Category::Structure,
                "structure",
                expression,
            );
            assert!(issue.message.starts_with("Empty"), "{issue:?}");
        }
        // Whitespace is content.
        assert_valid(&patient_with(json!({"name": [{"text": "  "}]})));
    }

    #[test]
    fn leap_years() {
        one_issue(
            &patient_with(json!({"birthDate": "2021-02-29"})),
            Category::Content,
            "value",
            "Patient.birthDate",
        );
        assert_valid(&patient_with(json!({"birthDate": "2020-02-29"})));
        assert!(check_primitive("date", "2000-02-29").is_ok());
        assert!(check_primitive("date", "1900-02-29").is_err());
        assert!(check_primitive("date", "2020-04-31").is_err());
        assert!(check_primitive("dateTime", "2021-02-29T10:00:00Z").is_err());
        assert!(check_primitive("date", "2020-02-30").is_err());
    }

    #[test]
    fn instant_needs_a_zone() {
        let mut p = patient();
        p["meta"]["lastUpdated"] = json!("2024-01-02T03:04:05");
        one_issue(&p, Category::Content, "value", "Patient.meta.lastUpdated");
        p["meta"]["lastUpdated"] = json!("2024-01-02");
        one_issue(&p, Category::Content, "value", "Patient.meta.lastUpdated");
        p["meta"]["lastUpdated"] = json!("2024-01-02T03:04:05+01:00");
        assert_valid(&p);
        // dateTime: a time needs a zone too.
        one_issue(
            &patient_with(json!({"deceasedDateTime": "2024-01-02T03:04:05"})),
            Category::Content,
            "value",
            "Patient.deceasedDateTime",
        );
    }

    fn observation() -> Value {
        serde_json::from_str(
            r#"{"resourceType": "Observation", "id": "bw", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}]},
                "subject": {"reference": "Patient/pat-1"},
                "effectiveDateTime": "2016-03-28",
                "valueQuantity": {"value": 72.50, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
                "referenceRange": [{"low": {"value": 1e1}, "high": {"value": 1.5E+2}}],
                "component": [{"code": {"text": "x"}, "valueInteger": -3}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn observation_with_quantity() {
        let o = observation();
        assert_valid(&o);
        // The decimal keeps its text (arbitrary_precision), and validation does not touch it.
        assert_eq!(o["valueQuantity"]["value"].to_string(), "72.50");
        let mut bad = o.clone();
        bad["valueQuantity"]["value"] = json!("72.50");
        one_issue(
            &bad,
            Category::Structure,
            "structure",
            "Observation.valueQuantity.value",
        );
        let mut bad = o.clone();
        bad.as_object_mut().unwrap().shift_remove("code");
        one_issue(&bad, Category::Content, "required", "Observation.code");
        let mut bad = o.clone();
        bad["component"][0]
            .as_object_mut()
            .unwrap()
            .shift_remove("code");
        one_issue(
            &bad,
            Category::Content,
            "required",
            "Observation.component[0].code",
        );
        let mut bad = o;
        bad["valueQuantity"]["comparator"] = json!("~");
        one_issue(
            &bad,
            Category::Content,
            "code-invalid",
            "Observation.valueQuantity.comparator",
        );
    }

    #[test]
    fn numbers() {
        let number = |text: &str| -> Value { serde_json::from_str(text).unwrap() };
        for (text, ok) in [
            ("2147483647", true),
            ("2147483648", false),
            ("-2147483648", true),
            ("1.5", false),
            ("1e3", false),
            ("-0", true),
        ] {
            let p = patient_with(json!({"multipleBirthInteger": number(text)}));
            if ok {
                assert_valid(&p);
            } else {
                one_issue(
                    &p,
                    Category::Content,
                    "value",
                    "Patient.multipleBirthInteger",
                );
            }
        }
        // positiveInt
        one_issue(
            &patient_with(json!({"telecom": [{"value": "1", "rank": 0}]})),
            Category::Content,
            "value",
            "Patient.telecom[0].rank",
        );
        // unsignedInt
        let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": -1});
        one_issue(&bundle, Category::Content, "value", "Bundle.total");
        // booleans are not numbers.
        one_issue(
            &patient_with(json!({"active": 1})),
            Category::Structure,
            "structure",
            "Patient.active",
        );
    }

    #[test]
    fn resource_type() {
        one_issue(
            &json!({"id": "x"}),
            Category::Structure,
            "structure",
            "Resource.resourceType",
        );
        one_issue(
            &json!({"resourceType": "Foo"}),
            Category::Structure,
            "structure",
            "Resource.resourceType",
        );
        one_issue(
            &json!({"resourceType": "DomainResource"}),
            Category::Structure,
            "structure",
            "Resource.resourceType",
        );
        one_issue(
            &json!({"resourceType": "HumanName", "family": "X"}),
            Category::Structure,
            "structure",
            "Resource.resourceType",
        );
        one_issue(
            &json!({"resourceType": 5}),
            Category::Structure,
            "structure",
            "Resource.resourceType",
        );
        for root in [json!([]), json!("Patient"), json!(null), json!(1)] {
            one_issue(&root, Category::Structure, "structure", "Resource");
        }
        let issue = one_issue(
            &patient_with(json!({"contained": [{"id": "x"}]})),
            Category::Structure,
            "structure",
            "Patient.contained[0].resourceType",
        );
        assert_eq!(issue.message, "Missing 'resourceType'");
    }

    #[test]
    fn slot_status() {
        let slot = json!({"resourceType": "Slot", "schedule": {"reference": "Schedule/1"},
                          "status": "open", "start": "2024-05-01T09:00:00Z", "end": "2024-05-01T09:15:00Z"});
        one_issue(&slot, Category::Content, "code-invalid", "Slot.status");
        let mut slot = slot;
        slot["status"] = json!("free");
        assert_valid(&slot);
    }

    #[test]
    fn contained_resources() {
        let mut p = patient();
        p["contained"][0]["foo"] = json!(true);
        one_issue(
            &p,
            Category::Structure,
            "structure",
            "Patient.contained[0].foo",
        );
        let mut p = patient();
        p["contained"][0]["name"][0]["given"] = json!("Adam");
        one_issue(
            &p,
            Category::Structure,
            "structure",
            "Patient.contained[0].name[0].given",
        );
        // dom-2: no resources in a contained resource.
        let mut p = patient();
        p["contained"][0]["contained"] = json!([{"resourceType": "Organization", "name": "X"}]);
        one_issue(
            &p,
            Category::Content,
            "invariant",
            "Patient.contained[0].contained",
        );
    }

    #[test]
    fn bundle_entries_are_validated() {
        let mut bundle = json!({
            "resourceType": "Bundle", "id": "b1", "type": "transaction",
            "entry": [
                {"fullUrl": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
                 "resource": patient(),
                 "request": {"method": "POST", "url": "Patient"}},
                {"resource": appointment(), "request": {"method": "PUT", "url": "Appointment/appt-1"}},
                {"request": {"method": "DELETE", "url": "Slot/s1"}}
            ]
        });
        assert_valid(&bundle);
        bundle["entry"][1]["resource"]["status"] = json!("sleeping");
        bundle["entry"][0]["resource"]["name"][0]["foo"] = json!("x");
        bundle["entry"][2]["request"]["method"] = json!("FETCH");
        bundle["entry"][0]["fullUrl"] = json!("urn:uuid:a b");
        let found: Vec<_> = issues(&bundle)
            .into_iter()
            .map(|i| (i.category, i.code, i.expression))
            .collect();
        let expected = [
            (Category::Content, "value", "Bundle.entry[0].fullUrl"),
            (
                Category::Structure,
                "structure",
                "Bundle.entry[0].resource.name[0].foo",
            ),
            (
                Category::Content,
                "code-invalid",
                "Bundle.entry[1].resource.status",
            ),
            (
                Category::Content,
                "code-invalid",
                "Bundle.entry[2].request.method",
            ),
        ]
        .map(|(category, code, expression)| (category, code, expression.to_owned()));
        assert_eq!(found, expected);
        // Parameters.parameter.resource too.
        let parameters = json!({"resourceType": "Parameters", "parameter": [
            {"name": "return", "resource": {"resourceType": "Slot", "status": "free"}}]});
        let found: Vec<_> = issues(&parameters)
            .into_iter()
            .map(|i| i.expression)
            .collect();
        assert_eq!(
            found,
            [
                "Parameters.parameter[0].resource.schedule",
                "Parameters.parameter[0].resource.start",
                "Parameters.parameter[0].resource.end"
            ]
        );
    }

    #[test]
    fn extensions() {
        one_issue(
            &patient_with(json!({"extension": [{"valueString": "x"}]})),
            Category::Content,
            "required",
            "Patient.extension[0].url",
        );
        one_issue(
            &patient_with(
                json!({"extension": [{"url": "http://x.org/e", "valueString": "x",
                                                "extension": [{"url": "a", "valueBoolean": true}]}]}),
            ),
            Category::Content,
            "invariant",
            "Patient.extension[0]",
        );
        one_issue(
            &patient_with(json!({"extension": [{"url": "http://x.org/e"}]})),
            Category::Content,
            "invariant",
            "Patient.extension[0]",
        );
        one_issue(
            &patient_with(json!({"extension": [{"url": "http://x.org/e", "valueFoo": 1}]})),
            Category::Structure,
            "structure",
            "Patient.extension[0].valueFoo",
        );
        one_issue(
            &patient_with(
                json!({"_birthDate": {"extension": [{"url": "http://x.org/e", "valueDate": "1974-13"}]}}),
            ),
            Category::Content,
            "value",
            "Patient.birthDate.extension[0].valueDate",
        );
        one_issue(
            &patient_with(
                json!({"modifierExtension": [{"url": "http://x.org/e", "valueInteger": true}]}),
            ),
            Category::Structure,
            "structure",
            "Patient.modifierExtension[0].valueInteger",
        );
        // Extensions of primitives in arrays carry their index.
        one_issue(
            &patient_with(
                json!({"name": [{"given": ["a", "b"], "_given": [null, {"extension": [{"valueCode": "MID"}]}]}]}),
            ),
            Category::Content,
            "required",
            "Patient.name[0].given[1].extension[0].url",
        );
    }

    #[test]
    fn content_references() {
        let questionnaire = json!({
            "resourceType": "Questionnaire", "status": "active",
            "item": [{"linkId": "1", "type": "group",
                      "item": [{"linkId": "1.1", "type": "string", "text": "Name?"},
                               {"type": "boolean",
                                "item": [{"linkId": "1.2.1", "type": "date", "foo": 1}]}]}]
        });
        let found: Vec<_> = issues(&questionnaire)
            .into_iter()
            .map(|i| (i.code, i.expression))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "structure",
                    "Questionnaire.item[0].item[1].item[0].foo".to_owned()
                ),
                (
                    "required",
                    "Questionnaire.item[0].item[1].linkId".to_owned()
                ),
            ]
        );
        // Bundle.entry.link reuses Bundle.link.
        one_issue(
            &json!({"resourceType": "Bundle", "type": "collection",
                    "entry": [{"link": [{"relation": "self"}]}]}),
            Category::Content,
            "required",
            "Bundle.entry[0].link[0].url",
        );
    }

    #[test]
    fn narrative_div_is_a_string() {
        one_issue(
            &patient_with(json!({"text": {"status": "generated", "div": {"p": "x"}}})),
            Category::Structure,
            "structure",
            "Patient.text.div",
        );
        one_issue(
            &patient_with(json!({"text": {"status": "generated", "div": "<p>x</p>"}})),
            Category::Content,
            "value",
            "Patient.text.div",
        );
        one_issue(
            &patient_with(json!({"text": {"div": "<div>x</div>"}})),
            Category::Content,
            "required",
            "Patient.text.status",
        );
    }

    #[test]
    fn all_problems_are_reported() {
        let p = patient_with(
            json!({"foo": 1, "gender": "robot", "birthDate": "1974-1-1", "name": "x"}),
        );
        let found: Vec<_> = issues(&p).into_iter().map(|i| i.expression).collect();
        assert_eq!(
            found,
            [
                "Patient.foo",
                "Patient.gender",
                "Patient.birthDate",
                "Patient.name"
            ]
        );
    }

    #[test]
    fn issues_are_capped() {
        let mut p = patient();
        for i in 0..500 {
            p[format!("x{i}")] = json!(i);
        }
        p["name"] = json!(vec![json!({"given": ["a", null]}); 300]);
        let found = issues(&p);
        assert_eq!(found.len(), MAX_ISSUES);
    }

    #[test]
    fn deep_nesting_does_not_panic() {
        let mut ext = json!({"url": "http://x.org/e", "valueString": "leaf"});
        for _ in 0..200 {
            ext = json!({"url": "http://x.org/e", "extension": [ext]});
        }
        let p = patient_with(json!({"extension": [ext]}));
        let found = issues(&p);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, "too-costly");
        assert_eq!(found[0].category, Category::Structure);
        // Deep enough for real resources.
        let mut item = json!({"linkId": "leaf", "type": "string"});
        for depth in 0..30 {
            item = json!({"linkId": depth.to_string(), "type": "group", "item": [item]});
        }
        assert_valid(&json!({"resourceType": "Questionnaire", "status": "draft", "item": [item]}));
    }

    #[test]
    fn cardinality_with_explicit_definitions() {
        let defs = Definitions::from_json(
            r#"{"types": [
                {"name": "string", "kind": "primitive-type"},
                {"name": "Element", "kind": "complex-type", "abstract": true,
                 "elements": [{"path": "id", "types": ["string"]}]},
                {"name": "Thing", "kind": "resource", "elements": [
                    {"path": "tag", "min": 2, "max": "3", "types": ["string"]},
                    {"path": "part", "min": 0, "max": "2", "types": ["BackboneElement"]},
                    {"path": "part.id", "types": ["string"]},
                    {"path": "part.label", "min": 1, "types": ["string"]}
                ]}
            ]}"#,
        )
        .unwrap();
        let check = |resource: Value| -> Vec<(Category, &'static str, String)> {
            match validate_with(&defs, &resource) {
                Ok(()) => Vec::new(),
                Err(issues) => issues
                    .into_iter()
                    .map(|i| (i.category, i.code, i.expression))
                    .collect(),
            }
        };
        assert!(check(json!({"resourceType": "Thing", "tag": ["a", "b"]})).is_empty());
        assert_eq!(
            check(json!({"resourceType": "Thing", "tag": ["a", "b", "c", "d"]})),
            [(Category::Content, "structure", "Thing.tag".to_owned())]
        );
        assert_eq!(
            check(json!({"resourceType": "Thing", "tag": ["a"]})),
            [(Category::Content, "required", "Thing.tag".to_owned())]
        );
        assert_eq!(
            check(
                json!({"resourceType": "Thing", "_tag": [{"id": "1"}, {"id": "2"}],
                         "part": [{"label": "x"}, {"label": "y"}, {"id": "z"}]})
            ),
            [
                (Category::Content, "structure", "Thing.part".to_owned()),
                (
                    Category::Content,
                    "required",
                    "Thing.part[2].label".to_owned()
                ),
            ]
        );
    }

    /// The spec regex of each primitive (from the R4 StructureDefinitions) that the checkers
    /// implement: the table must still carry the same ones.
    const SPEC_REGEXES: &[(&str, Option<&str>)] = &[
        ("base64Binary", Some(r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+")),
        ("boolean", Some(r"true|false")),
        ("canonical", Some(r"\S*")),
        ("code", Some(r"[^\s]+(\s[^\s]+)*")),
        (
            "date",
            Some(
                r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?",
            ),
        ),
        (
            "dateTime",
            Some(
                r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?",
            ),
        ),
        (
            "decimal",
            Some(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"),
        ),
        ("id", Some(r"[A-Za-z0-9\-\.]{1,64}")),
        (
            "instant",
            Some(
                r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))",
            ),
        ),
        ("integer", Some(r"-?([0]|([1-9][0-9]*))")),
        ("markdown", Some(r"[ \r\n\t\S]+")),
        ("oid", Some(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")),
        ("positiveInt", Some(r"[1-9][0-9]*")),
        ("string", Some(r"[ \r\n\t\S]+")),
        (
            "time",
            Some(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"),
        ),
        ("unsignedInt", Some(r"[0]|([1-9][0-9]*)")),
        ("uri", Some(r"\S*")),
        ("url", Some(r"\S*")),
        (
            "uuid",
            Some(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        ),
        ("xhtml", None),
    ];

    #[test]
    fn checkers_follow_the_table_regexes() {
        let defs = Definitions::r4();
        for (name, regex) in SPEC_REGEXES {
            let def = defs.type_def(name).expect(name);
            assert_eq!(def.regex.as_deref(), *regex, "{name}");
        }
        let primitives = PRIMITIVES.iter().filter(|p| defs.is_primitive(p)).count();
        assert_eq!(primitives, SPEC_REGEXES.len());
    }

    /// (type, value, full match of the spec regex (checked with Python's `re.fullmatch`),
    /// verdict of the checker). The two differ only where the checker is documented as
    /// stricter: real calendar days, 32-bit ranges, base64 padding.
    const VECTORS: &[(&str, &str, bool, bool)] = &[
        ("date", "2020", true, true),
        ("date", "2020-02", true, true),
        ("date", "2020-02-29", true, true),
        ("date", "2021-02-28", true, true),
        ("date", "1974-12-25", true, true),
        ("date", "0001-01-01", true, true),
        ("date", "9999-12-31", true, true),
        ("date", "2021-02-29", true, false),
        ("date", "1900-02-29", true, false),
        ("date", "2020-04-31", true, false),
        ("date", "0000", false, false),
        ("date", "2020-13", false, false),
        ("date", "2020-00", false, false),
        ("date", "2020-1", false, false),
        ("date", "20201", false, false),
        ("date", "2020-02-1", false, false),
        ("date", "25/12/1974", false, false),
        ("date", "2020-02-30x", false, false),
        ("date", "2020-02-3", false, false),
        ("date", " 2020", false, false),
        ("date", "2020-12-32", false, false),
        ("date", "2020-12-00", false, false),
        ("date", "12020", false, false),
        ("dateTime", "2020", true, true),
        ("dateTime", "2020-02", true, true),
        ("dateTime", "2020-02-29", true, true),
        ("dateTime", "2024-01-02T03:04:05Z", true, true),
        ("dateTime", "2024-01-02T03:04:05.123+05:30", true, true),
        ("dateTime", "2024-01-02T23:59:60-14:00", true, true),
        ("dateTime", "2024-01-02T03:04:05+14:00", true, true),
        ("dateTime", "2024-01-02T03:04:05.5-13:59", true, true),
        ("dateTime", "2023-02-29T03:04:05Z", true, false),
        ("dateTime", "2024-01-02T03:04Z", false, false),
        ("dateTime", "2024-01-02T03:04:05", false, false),
        ("dateTime", "2024-01-02T24:00:00Z", false, false),
        ("dateTime", "2024-01-02T03:04:05+14:01", false, false),
        ("dateTime", "2024-01-02T03:04:05+1400", false, false),
        ("dateTime", "2024-01-02 03:04:05Z", false, false),
        ("dateTime", "2024-01-02T03:04:05.Z", false, false),
        ("dateTime", "2024-01-02T", false, false),
        ("dateTime", "2024-01-02t03:04:05Z", false, false),
        ("dateTime", "2024-01-02T03:04:05z", false, false),
        ("dateTime", "2024-01-02T03:60:05Z", false, false),
        ("instant", "2024-01-02T03:04:05Z", true, true),
        ("instant", "2024-01-02T03:04:05.678+01:00", true, true),
        ("instant", "2024-01-02T03:04:05", false, false),
        ("instant", "2024-01-02", false, false),
        ("instant", "2024-01-02T03:04Z", false, false),
        ("instant", "2024", false, false),
        ("instant", "2024-01-02T03:04:05.678", false, false),
        ("time", "00:00:00", true, true),
        ("time", "23:59:59", true, true),
        ("time", "23:59:60", true, true),
        ("time", "12:30:00.5", true, true),
        ("time", "24:00:00", false, false),
        ("time", "12:30", false, false),
        ("time", "12:30:00.", false, false),
        ("time", "12:30:00Z", false, false),
        ("time", "1:30:00", false, false),
        ("time", "12:61:00", false, false),
        ("id", "a", true, true),
        ("id", "pat-1", true, true),
        ("id", "A.b-C.0", true, true),
        (
            "id",
            "0123456789012345678901234567890123456789012345678901234567890123",
            true,
            true,
        ),
        (
            "id",
            "01234567890123456789012345678901234567890123456789012345678901234",
            false,
            false,
        ),
        ("id", "a b", false, false),
        ("id", "a_b", false, false),
        ("id", "a/b", false, false),
        ("id", "é", false, false),
        ("code", "male", true, true),
        ("code", "two words", true, true),
        ("code", "a b c", true, true),
        ("code", " lead", false, false),
        ("code", "trail ", false, false),
        ("code", "double  space", false, false),
        ("code", "tab\there", true, true),
        ("code", "line\nbreak", true, true),
        ("code", "a\t b", false, false),
        ("code", "x", true, true),
        ("uri", "http://example.org/x", true, true),
        ("uri", "urn:oid:1.2", true, true),
        ("uri", "a b", false, false),
        ("uri", "#gp", true, true),
        ("uri", "tab\t", false, false),
        ("oid", "urn:oid:1.2.36.146.595.217.0.1", true, true),
        ("oid", "urn:oid:2.16.840.1.113883", true, true),
        ("oid", "urn:oid:0.0", true, true),
        ("oid", "urn:oid:1", false, false),
        ("oid", "urn:oid:3.1", false, false),
        ("oid", "urn:oid:1.02", false, false),
        ("oid", "urn:oid:1.2.", false, false),
        ("oid", "1.2.3", false, false),
        (
            "uuid",
            "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
            true,
            true,
        ),
        (
            "uuid",
            "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
            false,
            false,
        ),
        ("uuid", "c757873d-ec9a-4326-a141-556f43239520", false, false),
        (
            "uuid",
            "urn:uuid:c757873d-ec9a-4326-a141-556f4323952",
            false,
            false,
        ),
        (
            "uuid",
            "urn:uuid:c757873d-ec9a-4326-a141-556f432395200",
            false,
            false,
        ),
        ("base64Binary", "aGVsbG8=", true, true),
        ("base64Binary", "aGVs bG8=", true, true),
        ("base64Binary", "aGVs\nbG8h", true, true),
        ("base64Binary", "SGVsbG8gV29ybGQ=", true, true),
        ("base64Binary", "AAAA", true, true),
        ("base64Binary", "aGVsbG8", false, false),
        ("base64Binary", "aGVsbG8*", false, false),
        ("base64Binary", "====", true, false),
        ("base64Binary", "aG=v", true, false),
        ("decimal", "0", true, true),
        ("decimal", "-0", true, true),
        ("decimal", "72.50", true, true),
        ("decimal", "1.0e10", true, true),
        ("decimal", "1E-5", true, true),
        ("decimal", "-12.345", true, true),
        ("decimal", "1.5E+3", true, true),
        ("decimal", "0.0000001", true, true),
        ("decimal", "01", false, false),
        ("decimal", "1.", false, false),
        ("decimal", ".5", false, false),
        ("decimal", "+1", false, false),
        ("decimal", "1e", false, false),
        ("integer", "0", true, true),
        ("integer", "-0", true, true),
        ("integer", "42", true, true),
        ("integer", "-2147483648", true, true),
        ("integer", "2147483647", true, true),
        ("integer", "2147483648", true, false),
        ("integer", "-2147483649", true, false),
        ("integer", "01", false, false),
        ("integer", "+1", false, false),
        ("integer", "1.0", false, false),
        ("integer", "1e3", false, false),
        ("integer", "--1", false, false),
        ("positiveInt", "1", true, true),
        ("positiveInt", "2147483647", true, true),
        ("positiveInt", "2147483648", true, false),
        ("positiveInt", "0", false, false),
        ("positiveInt", "-1", false, false),
        ("positiveInt", "01", false, false),
        ("unsignedInt", "0", true, true),
        ("unsignedInt", "2147483647", true, true),
        ("unsignedInt", "2147483648", true, false),
        ("unsignedInt", "-1", false, false),
        ("unsignedInt", "00", false, false),
        ("boolean", "true", true, true),
        ("boolean", "false", true, true),
        ("boolean", "True", false, false),
        ("boolean", "1", false, false),
        ("string", "hello", true, true),
        ("string", "  spaced  ", true, true),
        ("string", "line\nbreak", true, true),
        ("string", "\x0b", false, false),
        ("string", "a\x0cb", false, false),
        ("markdown", "# title\n\n*x*", true, true),
    ];

    #[test]
    fn primitive_checkers() {
        for &(type_code, value, _regex, expected) in VECTORS {
            let result = check_primitive(type_code, value);
            assert_eq!(
                result.is_ok(),
                expected,
                "{type_code} {value:?}: {result:?}"
            );
        }
        assert!(check_primitive("string", "").is_err());
        assert!(check_primitive("uri", "").is_err());
        assert!(
            check_primitive(
                "xhtml",
                "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"
            )
            .is_ok()
        );
        assert!(check_primitive("xhtml", "text").is_err());
        assert!(check_primitive("HumanName", "anything").is_ok());
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        assert!(check_primitive("string", &long).is_err());
        one_issue(
            &patient_with(json!({"name": [{"text": long}]})),
            Category::Content,
            "too-long",
            "Patient.name[0].text",
        );
        assert_eq!(
            check_primitive("date", "2020-02-30").unwrap_err(),
            "Invalid date '2020-02-30' (expected YYYY, YYYY-MM or YYYY-MM-DD, a calendar date)"
        );
    }

    /// The official examples all pass. Run with
    /// `FHIR_EXAMPLES=/path/to/spec-r4-examples cargo test -p fhir-model -- --ignored`.
    #[test]
    #[ignore = "reads the official examples from outside the repository"]
    fn spec_examples() {
        let dir = std::env::var("FHIR_EXAMPLES")
            .unwrap_or_else(|_| "../../shared/data/fhir/spec-r4-examples".to_owned());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("no examples at {dir}");
            return;
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        let (mut passed, mut total) = (0, 0);
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            let value: Value = serde_json::from_str(&text).unwrap();
            if value.get("resourceType").is_none() {
                continue; // package.json
            }
            total += 1;
            match validate_resource(&value) {
                Ok(()) => passed += 1,
                Err(issues) => {
                    eprintln!("{}:", path.display());
                    for issue in issues {
                        eprintln!("  {issue:?}");
                    }
                }
            }
        }
        eprintln!("{passed} of {total} examples pass");
    }

    /// Rough throughput on a typical Patient (not an assertion). Run with
    /// `cargo test -p fhir-model --release -- --ignored throughput --nocapture`.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn throughput() {
        let p = patient();
        let _ = Definitions::r4();
        let n = 20_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(validate_resource(std::hint::black_box(&p)).is_ok());
        }
        let elapsed = start.elapsed();
        eprintln!(
            "{n} validations in {elapsed:?}: {:.0} per second",
            f64::from(n) / elapsed.as_secs_f64()
        );
    }
}
