//! The FHIR XML format (<https://hl7.org/fhir/R4/xml.html>), converted to and from the
//! JSON form (<https://hl7.org/fhir/R4/json.html>), driven by the R4 definitions table.
//!
//! Both directions work in one pass without an intermediate tree: the reader walks
//! quick-xml events and builds a `serde_json::Value`; the writer walks the JSON object in
//! definition order (XML is order-sensitive in FHIR) and appends to a `String`.
//!
//! The mapping, in short:
//! - primitives are `<name value=".."/>`; their `id` attribute and `<extension>` children
//!   are the JSON `_name` object; repeating primitives align `name` and `_name` with `null`s;
//! - `Element.id` and `Extension.url` are XML attributes, a resource's `id` is an element;
//! - the narrative `div` is inline XHTML in XML and a string in JSON;
//! - resources inside `contained`, `Bundle.entry.resource`, ... are wrapped in an element
//!   named after the container: `<contained><Patient>..</Patient></contained>`.

use std::borrow::Cow;
use std::fmt;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use serde_json::{Map, Number, Value};

use crate::defs::{Definitions, ElementDef, Kind, TypeDef};

const FHIR_NS: &str = "http://hl7.org/fhir";
const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";
/// Deepest element nesting accepted, in both directions (hostile input cannot blow the stack).
const MAX_DEPTH: usize = 128;

/// A failure to read or write FHIR XML.
#[derive(Debug, Clone, PartialEq)]
pub struct XmlError {
    pub message: String,
    /// FHIRPath-ish location, e.g. `Patient.name[0].foo`, when known.
    pub expression: Option<String>,
}

impl XmlError {
    fn new(message: impl Into<String>, expression: &str) -> XmlError {
        XmlError {
            message: message.into(),
            expression: (!expression.is_empty()).then(|| expression.to_owned()),
        }
    }
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expression {
            Some(expression) => write!(f, "{} (at {expression})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for XmlError {}

/// Parses a FHIR XML resource into its JSON form.
///
/// Errors for malformed XML, a DOCTYPE, a root that is not a FHIR resource in the
/// `http://hl7.org/fhir` namespace, elements unknown to the definitions (we cannot know
/// their JSON shape), and primitive values that do not fit their JSON type.
pub fn xml_to_json(xml: &str) -> Result<Value, XmlError> {
    parse(Definitions::r4(), xml)
}

/// Writes a resource (JSON form, assumed valid) as FHIR XML; `pretty` indents.
///
/// The output starts with `<?xml version="1.0" encoding="UTF-8"?>`. Errors for JSON that
/// has no XML form: keys unknown to the definitions, a `div` that is not well-formed
/// XHTML, characters XML 1.0 cannot carry.
pub fn json_to_xml(resource: &Value, pretty: bool) -> Result<String, XmlError> {
    let defs = Definitions::r4();
    let extension = defs
        .type_def("Extension")
        .ok_or_else(|| XmlError::new("the definitions lack Extension", ""))?;
    let mut writer = Writer {
        defs,
        extension,
        out: String::with_capacity(4096),
        pretty,
        path: String::new(),
    };
    writer
        .out
        .push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    writer.write_resource(resource, 0, true)?;
    if pretty {
        writer.out.push('\n');
    }
    Ok(writer.out)
}

// ---------------------------------------------------------------------------------------
// Shared: what an element is, from the definitions.

/// How an element is represented.
#[derive(Clone, Copy)]
enum Shape<'d> {
    /// A primitive of this type code: `value` attribute, `_name` in JSON.
    Primitive(&'d str),
    /// The narrative XHTML `div`.
    Xhtml,
    /// A container of one resource.
    Resource,
    /// An object whose children are those of `parent` in the type.
    Complex(&'d TypeDef, &'d str),
}

fn shape<'d>(
    defs: &'d Definitions,
    td: &'d TypeDef,
    element: &'d ElementDef,
    type_code: Option<&'d str>,
) -> Result<Shape<'d>, String> {
    if let Some(reference) = &element.content_ref {
        let reference = reference.strip_prefix('#').unwrap_or(reference);
        let reference = reference
            .strip_prefix(td.name.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(reference);
        return Ok(Shape::Complex(td, reference));
    }
    let Some(code) = type_code else {
        return Err(format!(
            "element `{}` has no single type in the definitions",
            element.path
        ));
    };
    let mapped = system_type(code);
    Ok(match mapped {
        "xhtml" => Shape::Xhtml,
        "BackboneElement" | "Element" => Shape::Complex(td, element.path.as_str()),
        "Resource" => Shape::Resource,
        // FHIR names its primitive types in lower camel case (`dateTime`) and all others
        // in upper camel case: this spares a table look-up per primitive.
        _ if mapped.starts_with(|c: char| c.is_ascii_lowercase()) => Shape::Primitive(mapped),
        _ => match defs.type_def(mapped) {
            Some(t) if t.kind == Kind::PrimitiveType => Shape::Primitive(mapped),
            Some(t) if t.kind == Kind::Resource => Shape::Resource,
            Some(t) => Shape::Complex(t, ""),
            // A FHIRPath system type mapped to its FHIR primitive.
            None if mapped != code => Shape::Primitive(mapped),
            None => {
                return Err(format!(
                    "unknown type `{code}` of element `{}`",
                    element.path
                ));
            }
        },
    })
}

/// Maps FHIRPath system types (`http://hl7.org/fhirpath/System.String`), which some
/// definitions use for `id` and `url`, to FHIR primitive type codes.
fn system_type(code: &str) -> &str {
    match code.strip_prefix("http://hl7.org/fhirpath/System.") {
        Some("Boolean") => "boolean",
        Some("Integer") => "integer",
        Some("Decimal") => "decimal",
        Some("Date") => "date",
        Some("DateTime") => "dateTime",
        Some("Time") => "time",
        Some(_) => "string",
        None => code,
    }
}

/// Whether an element of this name is an XML attribute rather than a child element:
/// `Element.id` everywhere but on a resource, `Extension.url`.
fn is_attribute(td: &TypeDef, parent: &str, resource_root: bool, name: &str) -> bool {
    (name == "id" && !resource_root) || (name == "url" && is_extension(td, parent))
}

fn is_extension(td: &TypeDef, parent: &str) -> bool {
    parent.is_empty() && td.name == "Extension"
}

/// The child of `parent` that a JSON key or XML element name denotes, with the type that
/// name carries (the chosen type of a choice). Like `TypeDef::child`, without allocating.
fn find_child<'d>(
    td: &'d TypeDef,
    parent: &str,
    name: &str,
) -> Option<(&'d ElementDef, Option<&'d str>)> {
    td.children_of(parent).find_map(|element| {
        let element_name = local_name(element, parent);
        if element.is_choice() {
            let code = element
                .types
                .iter()
                .find(|code| is_choice_key(name, element_name, code))?;
            Some((element, Some(code.as_str())))
        } else if element_name == name {
            let code = match element.types.as_slice() {
                [only] => Some(only.as_str()),
                _ => None,
            };
            Some((element, code))
        } else {
            None
        }
    })
}

/// `ElementDef::name` for a child of `parent`, without searching the path.
fn local_name<'d>(element: &'d ElementDef, parent: &str) -> &'d str {
    let name = if parent.is_empty() {
        Some(element.path.as_str())
    } else {
        element.path.get(parent.len() + 1..)
    };
    match name {
        Some(name) => name.strip_suffix("[x]").unwrap_or(name),
        None => element.name(),
    }
}

/// Whether `key` is `name` followed by the type `code` with its first letter upper-cased
/// (`valueQuantity` for `value` and `Quantity`), without allocating.
fn is_choice_key(key: &str, name: &str, code: &str) -> bool {
    let Some(rest) = key.strip_prefix(name) else {
        return false;
    };
    let mut rest_chars = rest.chars();
    let mut code_chars = code.chars();
    match (rest_chars.next(), code_chars.next()) {
        (Some(r), Some(c)) => {
            let mut upper = c.to_uppercase();
            upper.next() == Some(r)
                && upper.next().is_none()
                && rest_chars.as_str() == code_chars.as_str()
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// XML -> JSON

fn parse(defs: &Definitions, xml: &str) -> Result<Value, XmlError> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let mut parser = Parser {
        defs,
        reader: NsReader::from_str(xml),
        path: String::new(),
    };
    let root = loop {
        match parser.next()? {
            (_, Event::Decl(_) | Event::Comment(_) | Event::PI(_)) => {}
            (_, Event::Text(text)) if is_blank(&text) => {}
            (ns, Event::Start(start)) => break parser.parse_resource(ns, &start, true, 0)?,
            (ns, Event::Empty(start)) => break parser.parse_resource(ns, &start, false, 0)?,
            (_, Event::DocType(_)) => return Err(parser.error("DOCTYPE is not allowed")),
            (_, Event::Eof) => return Err(parser.error("no root element")),
            _ => return Err(parser.error("unexpected content before the root element")),
        }
    };
    parser.path.clear();
    loop {
        match parser.next()? {
            (_, Event::Eof) => break,
            (_, Event::Comment(_) | Event::PI(_)) => {}
            (_, Event::Text(text)) if is_blank(&text) => {}
            (_, Event::DocType(_)) => return Err(parser.error("DOCTYPE is not allowed")),
            _ => return Err(parser.error("unexpected content after the root element")),
        }
    }
    Ok(Value::Object(root))
}

fn is_blank(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_whitespace())
}

/// The namespace an element resolved to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ns {
    Fhir,
    Xhtml,
    Other,
}

struct Parser<'d, 'i> {
    defs: &'d Definitions,
    reader: NsReader<&'i [u8]>,
    /// The FHIRPath-ish location of the current element, for errors.
    path: String,
}

/// One JSON member being collected while reading the children of an element.
enum Slot {
    One(Value),
    Many(Vec<Value>),
    /// A primitive: its value and its `_name` object, `null` where absent.
    Primitive(Value, Value),
    /// A repeating primitive: values and `_name` objects, aligned.
    Primitives(Vec<Value>, Vec<Value>),
}

/// The members of the JSON object being built, in the order they were read.
#[derive(Default)]
struct Members {
    slots: Vec<(String, Slot)>,
}

impl Members {
    fn find(&mut self, key: &str) -> Option<&mut Slot> {
        self.slots
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, slot)| slot)
    }

    /// How many items `key` has so far (the index of the next one).
    fn count(&self, key: &str) -> usize {
        match self.slots.iter().find(|(k, _)| k == key).map(|(_, s)| s) {
            None => 0,
            Some(Slot::One(_) | Slot::Primitive(..)) => 1,
            Some(Slot::Many(items)) => items.len(),
            Some(Slot::Primitives(values, _)) => values.len(),
        }
    }

    fn add(&mut self, key: &str, many: bool, value: Value) -> Result<(), String> {
        match self.find(key) {
            None if many => self.slots.push((key.to_owned(), Slot::Many(vec![value]))),
            None => self.slots.push((key.to_owned(), Slot::One(value))),
            Some(Slot::Many(items)) => items.push(value),
            Some(_) => return Err(format!("element `{key}` occurs more than once")),
        }
        Ok(())
    }

    fn add_primitive(
        &mut self,
        key: &str,
        many: bool,
        value: Option<Value>,
        extra: Option<Map<String, Value>>,
    ) -> Result<(), String> {
        let value = value.unwrap_or(Value::Null);
        let extra = extra.map_or(Value::Null, Value::Object);
        match self.find(key) {
            None if many => self
                .slots
                .push((key.to_owned(), Slot::Primitives(vec![value], vec![extra]))),
            None => self
                .slots
                .push((key.to_owned(), Slot::Primitive(value, extra))),
            Some(Slot::Primitives(values, extras)) => {
                values.push(value);
                extras.push(extra);
            }
            Some(_) => return Err(format!("element `{key}` occurs more than once")),
        }
        Ok(())
    }

    fn into_map(self, map: &mut Map<String, Value>) {
        for (key, slot) in self.slots {
            match slot {
                Slot::One(value) => {
                    map.insert(key, value);
                }
                Slot::Many(items) => {
                    map.insert(key, Value::Array(items));
                }
                Slot::Primitive(value, extra) => {
                    let extra_key = (!extra.is_null()).then(|| format!("_{key}"));
                    if !value.is_null() {
                        map.insert(key, value);
                    }
                    if let Some(extra_key) = extra_key {
                        map.insert(extra_key, extra);
                    }
                }
                Slot::Primitives(values, extras) => {
                    let extra_key = extras
                        .iter()
                        .any(|e| !e.is_null())
                        .then(|| format!("_{key}"));
                    if values.iter().any(|v| !v.is_null()) {
                        map.insert(key, Value::Array(values));
                    }
                    if let Some(extra_key) = extra_key {
                        map.insert(extra_key, Value::Array(extras));
                    }
                }
            }
        }
    }
}

impl<'d, 'i> Parser<'d, 'i> {
    fn error(&self, message: impl Into<String>) -> XmlError {
        XmlError::new(message, &self.path)
    }

    fn xml_error(&self, error: quick_xml::Error) -> XmlError {
        self.error(format!(
            "malformed XML at byte {}: {error}",
            self.reader.error_position()
        ))
    }

    fn next(&mut self) -> Result<(Ns, Event<'i>), XmlError> {
        match self.reader.read_resolved_event() {
            Ok((ns, event)) => {
                let ns = match ns {
                    ResolveResult::Bound(ns) if ns.0 == FHIR_NS => Ns::Fhir,
                    ResolveResult::Bound(ns) if ns.0 == XHTML_NS => Ns::Xhtml,
                    _ => Ns::Other,
                };
                Ok((ns, event))
            }
            Err(error) => Err(self.xml_error(error)),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), XmlError> {
        if depth > MAX_DEPTH {
            Err(self.error(format!("elements nest deeper than {MAX_DEPTH}")))
        } else {
            Ok(())
        }
    }

    /// Reads a resource whose start tag was just read.
    fn parse_resource(
        &mut self,
        ns: Ns,
        start: &BytesStart<'_>,
        has_content: bool,
        depth: usize,
    ) -> Result<Map<String, Value>, XmlError> {
        self.check_depth(depth)?;
        let name = start.local_name().into_inner();
        if ns != Ns::Fhir {
            return Err(self.error(format!(
                "element `{name}` is not in the FHIR namespace {FHIR_NS}"
            )));
        }
        let td = match self.defs.type_def(name) {
            Some(td) if self.defs.is_resource_type(name) => td,
            _ => return Err(self.error(format!("`{name}` is not a FHIR resource type"))),
        };
        let mark = self.path.len();
        if self.path.is_empty() {
            self.path.push_str(name);
        }
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| self.xml_error(e.into()))?;
            let key = attribute.key.into_inner();
            if !is_ignored_attribute(key) {
                return Err(self.error(format!("unexpected attribute `{key}` on a resource")));
            }
        }
        let mut map = Map::new();
        map.insert("resourceType".to_owned(), Value::String(name.to_owned()));
        if has_content {
            let mut members = Members::default();
            self.parse_children(td, "", true, &mut members, depth)?;
            members.into_map(&mut map);
        }
        self.path.truncate(mark);
        Ok(map)
    }

    /// Reads the children of an element up to and including its end tag.
    fn parse_children(
        &mut self,
        td: &'d TypeDef,
        parent: &str,
        resource_root: bool,
        members: &mut Members,
        depth: usize,
    ) -> Result<(), XmlError> {
        loop {
            let (ns, start, has_content) = match self.next()? {
                (ns, Event::Start(start)) => (ns, start, true),
                (ns, Event::Empty(start)) => (ns, start, false),
                (_, Event::End(_)) => return Ok(()),
                (_, Event::Text(text)) if is_blank(&text) => continue,
                (_, Event::Comment(_) | Event::PI(_)) => continue,
                (_, Event::Eof) => return Err(self.error("unexpected end of the document")),
                (_, Event::DocType(_)) => return Err(self.error("DOCTYPE is not allowed")),
                _ => return Err(self.error("unexpected text content in a FHIR element")),
            };
            self.parse_child(
                td,
                parent,
                resource_root,
                members,
                ns,
                &start,
                has_content,
                depth,
            )?;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn parse_child(
        &mut self,
        td: &'d TypeDef,
        parent: &str,
        resource_root: bool,
        members: &mut Members,
        ns: Ns,
        start: &BytesStart<'i>,
        has_content: bool,
        depth: usize,
    ) -> Result<(), XmlError> {
        let name = start.local_name().into_inner();
        let mark = self.path.len();
        self.path.push('.');
        self.path.push_str(name);
        if ns == Ns::Other {
            return Err(self.error(format!(
                "element `{name}` is not in the FHIR namespace {FHIR_NS}"
            )));
        }
        let (element, type_code) = match find_child(td, parent, name) {
            Some(found) if !is_attribute(td, parent, resource_root, name) => found,
            Some(_) => {
                return Err(self.error(format!("`{name}` must be an XML attribute here")));
            }
            None => return Err(self.error(format!("unknown element `{name}`"))),
        };
        let shape = shape(self.defs, td, element, type_code).map_err(|m| self.error(m))?;
        let many = element.is_array();
        if many {
            let index = members.count(name);
            push_index(&mut self.path, index);
        }
        let result = match (shape, ns) {
            (Shape::Xhtml, Ns::Xhtml) => {
                let div = self.parse_div(start, has_content)?;
                members.add(name, many, Value::String(div))
            }
            (Shape::Xhtml, _) => {
                return Err(self.error(format!(
                    "`{name}` must be an XHTML element in the namespace {XHTML_NS}"
                )));
            }
            (_, Ns::Xhtml) => {
                return Err(self.error(format!(
                    "element `{name}` is not in the FHIR namespace {FHIR_NS}"
                )));
            }
            (Shape::Primitive(code), _) => {
                let (value, extra) = self.parse_primitive(start, has_content, code, depth + 1)?;
                members.add_primitive(name, many, value, extra)
            }
            (Shape::Resource, _) => {
                let resource = self.parse_container(has_content, depth + 1)?;
                members.add(name, many, Value::Object(resource))
            }
            (Shape::Complex(td, parent), _) => {
                let object = self.parse_element(start, has_content, td, parent, depth + 1)?;
                members.add(name, many, Value::Object(object))
            }
        };
        result.map_err(|m| self.error(m))?;
        self.path.truncate(mark);
        Ok(())
    }

    /// Reads a complex element (datatype or backbone element) whose start tag was just read.
    fn parse_element(
        &mut self,
        start: &BytesStart<'_>,
        has_content: bool,
        td: &'d TypeDef,
        parent: &str,
        depth: usize,
    ) -> Result<Map<String, Value>, XmlError> {
        self.check_depth(depth)?;
        let mut map = Map::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| self.xml_error(e.into()))?;
            let key = attribute.key.into_inner();
            if key == "id" || (key == "url" && is_extension(td, parent)) {
                let value = attribute
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| self.xml_error(e))?;
                map.insert(key.to_owned(), Value::String(value.into_owned()));
            } else if !is_ignored_attribute(key) {
                return Err(self.error(format!("unexpected attribute `{key}`")));
            }
        }
        if has_content {
            let mut members = Members::default();
            self.parse_children(td, parent, false, &mut members, depth)?;
            members.into_map(&mut map);
        }
        Ok(map)
    }

    /// Reads a primitive element: its value and its `_name` object (id, extensions).
    #[allow(clippy::type_complexity)]
    fn parse_primitive(
        &mut self,
        start: &BytesStart<'_>,
        has_content: bool,
        code: &str,
        depth: usize,
    ) -> Result<(Option<Value>, Option<Map<String, Value>>), XmlError> {
        self.check_depth(depth)?;
        let mut value = None;
        let mut extra = Map::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| self.xml_error(e.into()))?;
            let key = attribute.key.into_inner();
            if key == "value" || key == "id" {
                let text = attribute
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| self.xml_error(e))?;
                if key == "id" {
                    extra.insert("id".to_owned(), Value::String(text.into_owned()));
                } else {
                    value = Some(primitive_value(code, text).map_err(|m| self.error(m))?);
                }
            } else if !is_ignored_attribute(key) {
                return Err(self.error(format!("unexpected attribute `{key}`")));
            }
        }
        if has_content {
            let mut extensions = Vec::new();
            let extension = self
                .defs
                .type_def("Extension")
                .ok_or_else(|| self.error("the definitions lack Extension"))?;
            loop {
                let (ns, start, has_content) = match self.next()? {
                    (ns, Event::Start(start)) => (ns, start, true),
                    (ns, Event::Empty(start)) => (ns, start, false),
                    (_, Event::End(_)) => break,
                    (_, Event::Text(text)) if is_blank(&text) => continue,
                    (_, Event::Comment(_) | Event::PI(_)) => continue,
                    (_, Event::Eof) => return Err(self.error("unexpected end of the document")),
                    _ => return Err(self.error("unexpected text content in a FHIR element")),
                };
                let name = start.local_name().into_inner();
                let mark = self.path.len();
                self.path.push('.');
                self.path.push_str(name);
                if ns != Ns::Fhir || name != "extension" {
                    return Err(self.error(format!(
                        "unexpected element `{name}` in a primitive (only extension is allowed)"
                    )));
                }
                push_index(&mut self.path, extensions.len());
                let object = self.parse_element(&start, has_content, extension, "", depth + 1)?;
                extensions.push(Value::Object(object));
                self.path.truncate(mark);
            }
            if !extensions.is_empty() {
                extra.insert("extension".to_owned(), Value::Array(extensions));
            }
        }
        if value.is_none() && extra.is_empty() {
            return Err(self.error("element has neither a value nor extensions"));
        }
        Ok((value, (!extra.is_empty()).then_some(extra)))
    }

    /// Reads the one resource inside a container element (`contained`, `resource`, ...).
    fn parse_container(
        &mut self,
        has_content: bool,
        depth: usize,
    ) -> Result<Map<String, Value>, XmlError> {
        self.check_depth(depth)?;
        if !has_content {
            return Err(self.error("resource container is empty"));
        }
        let mut resource = None;
        loop {
            let (ns, start, has_content) = match self.next()? {
                (ns, Event::Start(start)) => (ns, start, true),
                (ns, Event::Empty(start)) => (ns, start, false),
                (_, Event::End(_)) => break,
                (_, Event::Text(text)) if is_blank(&text) => continue,
                (_, Event::Comment(_) | Event::PI(_)) => continue,
                (_, Event::Eof) => return Err(self.error("unexpected end of the document")),
                _ => return Err(self.error("unexpected text content in a FHIR element")),
            };
            if resource.is_some() {
                return Err(self.error("resource container holds more than one resource"));
            }
            resource = Some(self.parse_resource(ns, &start, has_content, depth + 1)?);
        }
        resource.ok_or_else(|| self.error("resource container is empty"))
    }

    /// Reads the XHTML `div` as its raw XML text, carrying the XHTML namespace.
    ///
    /// The JSON form wants `<div xmlns="http://www.w3.org/1999/xhtml">`: a div that
    /// inherits the namespace gets the declaration, and a prefixed div (`<h:div>`) is
    /// rewritten without its prefix.
    fn parse_div(&mut self, start: &BytesStart<'i>, has_content: bool) -> Result<String, XmlError> {
        let tag: &str = start;
        let qname = start.name().into_inner();
        if let Some((prefix, _)) = qname.split_once(':') {
            return self.parse_prefixed_div(start, prefix, has_content);
        }
        let mut declares = false;
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| self.xml_error(e.into()))?;
            declares |= attribute.key.into_inner() == "xmlns";
        }
        let mut div = String::with_capacity(tag.len() + 64);
        div.push('<');
        div.push_str(qname);
        if !declares {
            div.push_str(" xmlns=\"");
            div.push_str(XHTML_NS);
            div.push('"');
        }
        div.push_str(&tag[qname.len()..]);
        if has_content {
            let inner = self
                .reader
                .read_text(start.name())
                .map_err(|e| self.xml_error(e))?;
            div.push('>');
            div.push_str(&inner);
            div.push_str("</");
            div.push_str(qname);
            div.push('>');
        } else {
            div.push_str("/>");
        }
        checked_xhtml(&div).map_err(|m| self.error(m))?;
        Ok(div)
    }

    /// Re-serializes a div whose elements carry an XHTML namespace prefix without it.
    fn parse_prefixed_div(
        &mut self,
        start: &BytesStart<'i>,
        prefix: &str,
        has_content: bool,
    ) -> Result<String, XmlError> {
        let mut div = String::with_capacity(256);
        self.write_unprefixed_tag(&mut div, start, prefix, true)?;
        if !has_content {
            div.push_str("/>");
            return Ok(div);
        }
        div.push('>');
        let mut depth = 1usize;
        loop {
            let event = self.reader.read_event().map_err(|e| self.xml_error(e))?;
            match event {
                Event::Start(tag) => {
                    depth += 1;
                    if depth > MAX_XHTML_DEPTH {
                        return Err(self.error("the narrative div nests too deep"));
                    }
                    self.write_unprefixed_tag(&mut div, &tag, prefix, false)?;
                    div.push('>');
                }
                Event::Empty(tag) => {
                    self.write_unprefixed_tag(&mut div, &tag, prefix, false)?;
                    div.push_str("/>");
                }
                Event::End(tag) => {
                    div.push_str("</");
                    div.push_str(unprefixed(tag.name().into_inner(), prefix));
                    div.push('>');
                    depth -= 1;
                    if depth == 0 {
                        checked_xhtml(&div).map_err(|m| self.error(m))?;
                        return Ok(div);
                    }
                }
                Event::Text(text) => div.push_str(&text),
                Event::GeneralRef(name) => {
                    div.push('&');
                    div.push_str(&name);
                    div.push(';');
                }
                Event::CData(text) => {
                    div.push_str("<![CDATA[");
                    div.push_str(&text);
                    div.push_str("]]>");
                }
                Event::Comment(_) | Event::PI(_) => {}
                Event::Eof => return Err(self.error("unexpected end of the document")),
                Event::Decl(_) | Event::DocType(_) => {
                    return Err(self.error("unexpected declaration in the narrative div"));
                }
            }
        }
    }

    /// Writes `<name attributes` with `prefix:` stripped from the name and the prefix's
    /// declaration dropped; `root` declares the XHTML namespace as the default.
    fn write_unprefixed_tag(
        &self,
        out: &mut String,
        tag: &BytesStart<'_>,
        prefix: &str,
        root: bool,
    ) -> Result<(), XmlError> {
        out.push('<');
        out.push_str(unprefixed(tag.name().into_inner(), prefix));
        if root {
            out.push_str(" xmlns=\"");
            out.push_str(XHTML_NS);
            out.push('"');
        }
        for attribute in tag.attributes() {
            let attribute = attribute.map_err(|e| self.xml_error(e.into()))?;
            let key = attribute.key.into_inner();
            if key.strip_prefix("xmlns:") == Some(prefix) || (root && key == "xmlns") {
                continue;
            }
            let quote = if attribute.value.contains('"') {
                '\''
            } else {
                '"'
            };
            out.push(' ');
            out.push_str(key);
            out.push('=');
            out.push(quote);
            out.push_str(&attribute.value);
            out.push(quote);
        }
        Ok(())
    }
}

/// Deepest nesting inside a narrative div (read without recursion).
const MAX_XHTML_DEPTH: usize = 1024;

fn unprefixed<'a>(name: &'a str, prefix: &str) -> &'a str {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or(name)
}

/// Namespace declarations and attributes in other namespaces (`xsi:schemaLocation`)
/// carry no FHIR content.
fn is_ignored_attribute(key: &str) -> bool {
    key == "xmlns" || key.contains(':')
}

/// Converts the text of a `value` attribute to its JSON type.
fn primitive_value(code: &str, text: Cow<'_, str>) -> Result<Value, String> {
    match code {
        "boolean" => match &*text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("invalid boolean `{text}`")),
        },
        "integer" | "positiveInt" | "unsignedInt" | "integer64" => text
            .parse::<i64>()
            .ok()
            .map(|n| Value::Number(n.into()))
            .ok_or_else(|| format!("invalid {code} `{text}`")),
        "decimal" => {
            let valid = !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
            // Checked as a JSON number, kept with its exact text (`1.50E+3` stays so).
            if valid && serde_json::from_str::<Number>(&text).is_ok() {
                Ok(Value::Number(Number::from_string_unchecked(
                    text.into_owned(),
                )))
            } else {
                Err(format!("invalid decimal `{text}`"))
            }
        }
        _ => Ok(Value::String(text.into_owned())),
    }
}

// ---------------------------------------------------------------------------------------
// JSON -> XML

struct Writer<'d> {
    defs: &'d Definitions,
    extension: &'d TypeDef,
    out: String,
    pretty: bool,
    /// The FHIRPath-ish location being written, for errors.
    path: String,
}

impl<'d> Writer<'d> {
    fn error(&self, message: impl Into<String>) -> XmlError {
        XmlError::new(message, &self.path)
    }

    fn newline(&mut self, level: usize) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..level {
                self.out.push_str("  ");
            }
        }
    }

    fn check_depth(&self, level: usize) -> Result<(), XmlError> {
        if level > MAX_DEPTH {
            Err(self.error(format!("elements nest deeper than {MAX_DEPTH}")))
        } else {
            Ok(())
        }
    }

    fn write_resource(&mut self, value: &Value, level: usize, root: bool) -> Result<(), XmlError> {
        self.check_depth(level)?;
        let Some(object) = value.as_object() else {
            return Err(self.error("a resource must be a JSON object"));
        };
        let name = match object.get("resourceType") {
            Some(Value::String(name)) if self.defs.is_resource_type(name) => name.as_str(),
            Some(Value::String(name)) => {
                return Err(self.error(format!("`{name}` is not a FHIR resource type")));
            }
            _ => return Err(self.error("resourceType is missing")),
        };
        let td = self
            .defs
            .type_def(name)
            .ok_or_else(|| self.error(format!("`{name}` is not a FHIR resource type")))?;
        let mark = self.path.len();
        if root {
            self.path.push_str(name);
        }
        self.newline(level);
        self.out.push('<');
        self.out.push_str(name);
        if root {
            self.out.push_str(" xmlns=\"");
            self.out.push_str(FHIR_NS);
            self.out.push('"');
        }
        self.write_body(td, "", object, true, name, level)?;
        self.path.truncate(mark);
        Ok(())
    }

    /// Writes `<name id=".." url="..">children</name>` for a datatype or backbone element.
    fn write_element(
        &mut self,
        name: &str,
        td: &'d TypeDef,
        parent: &'d str,
        value: &Value,
        level: usize,
    ) -> Result<(), XmlError> {
        self.check_depth(level)?;
        let Some(object) = value.as_object() else {
            return Err(self.error("expected a JSON object"));
        };
        self.newline(level);
        self.out.push('<');
        self.out.push_str(name);
        if let Some(id) = object.get("id") {
            self.write_attribute("id", id)?;
        }
        if is_extension(td, parent)
            && let Some(url) = object.get("url")
        {
            self.write_attribute("url", url)?;
        }
        self.write_body(td, parent, object, false, name, level)
    }

    /// Closes the start tag, writes the children in definition order and the end tag.
    fn write_body(
        &mut self,
        td: &'d TypeDef,
        parent: &'d str,
        object: &Map<String, Value>,
        resource_root: bool,
        name: &str,
        level: usize,
    ) -> Result<(), XmlError> {
        self.out.push('>');
        let mark = self.out.len();
        let mut used = 0;
        if resource_root {
            used += usize::from(object.contains_key("resourceType"));
        } else {
            used += usize::from(object.contains_key("id"));
            if is_extension(td, parent) {
                used += usize::from(object.contains_key("url"));
            }
        }
        let has_extras = object.keys().any(|k| k.starts_with('_'));
        for element in td.children_of(parent) {
            let element_name = local_name(element, parent);
            if is_attribute(td, parent, resource_root, element_name) {
                continue;
            }
            if element.is_choice() {
                for (key, _) in object {
                    let (base, is_extra) = match key.strip_prefix('_') {
                        Some(base) => (base, true),
                        None => (key.as_str(), false),
                    };
                    // `_valueString` is handled with `valueString` when both are present.
                    if is_extra && object.contains_key(base) {
                        continue;
                    }
                    if let Some(code) = element
                        .types
                        .iter()
                        .find(|code| is_choice_key(base, element_name, code))
                    {
                        used += self.write_member(
                            td,
                            element,
                            Some(code.as_str()),
                            base,
                            object,
                            has_extras,
                            level + 1,
                        )?;
                    }
                }
            } else {
                let single = match element.types.as_slice() {
                    [only] => Some(only.as_str()),
                    _ => None,
                };
                used += self.write_member(
                    td,
                    element,
                    single,
                    element_name,
                    object,
                    has_extras,
                    level + 1,
                )?;
            }
        }
        if used != object.len() {
            let unknown = object
                .keys()
                .find(|key| !is_known_key(td, parent, resource_root, key))
                .map_or("?", String::as_str);
            return Err(self.error(format!("unknown element `{unknown}`")));
        }
        if self.out.len() == mark {
            self.out.pop();
            self.out.push_str("/>");
        } else {
            self.newline(level);
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
        }
        Ok(())
    }

    /// Writes the member `key` (and `_key`) of `object`; returns how many JSON keys it used.
    #[allow(clippy::too_many_arguments)]
    fn write_member(
        &mut self,
        td: &'d TypeDef,
        element: &'d ElementDef,
        type_code: Option<&'d str>,
        key: &str,
        object: &Map<String, Value>,
        has_extras: bool,
        level: usize,
    ) -> Result<usize, XmlError> {
        let value = object.get(key).filter(|v| !v.is_null());
        let extra = if has_extras {
            object.get(&format!("_{key}"))
        } else {
            None
        };
        let used = usize::from(object.contains_key(key)) + usize::from(extra.is_some());
        if value.is_none() && extra.is_none() {
            return Ok(used);
        }
        let mark = self.path.len();
        self.path.push('.');
        self.path.push_str(key);
        let shape = shape(self.defs, td, element, type_code).map_err(|m| self.error(m))?;
        if extra.is_some() && !matches!(shape, Shape::Primitive(_)) {
            return Err(self.error(format!("`_{key}` is only allowed on a primitive")));
        }
        let many = element.is_array();
        let values = items(value);
        let inner_mark = self.path.len();
        match shape {
            Shape::Primitive(_) => {
                let extras = items(extra.filter(|v| !v.is_null()));
                for index in 0..values.len().max(extras.len()) {
                    if many {
                        push_index(&mut self.path, index);
                    }
                    self.write_primitive(key, values.get(index), extras.get(index), level)?;
                    self.path.truncate(inner_mark);
                }
            }
            Shape::Xhtml => {
                for value in values {
                    let Value::String(div) = value else {
                        return Err(self.error("the narrative div must be a string"));
                    };
                    let div = without_control_characters(div);
                    let div = checked_xhtml(&div).map_err(|m| self.error(m))?;
                    self.newline(level);
                    self.out.push_str(&div);
                }
            }
            Shape::Resource => {
                for (index, value) in values.iter().enumerate() {
                    if many {
                        push_index(&mut self.path, index);
                    }
                    self.newline(level);
                    self.out.push('<');
                    self.out.push_str(key);
                    self.out.push('>');
                    self.write_resource(value, level + 1, false)?;
                    self.newline(level);
                    self.out.push_str("</");
                    self.out.push_str(key);
                    self.out.push('>');
                    self.path.truncate(inner_mark);
                }
            }
            Shape::Complex(td, parent) => {
                for (index, value) in values.iter().enumerate() {
                    if many {
                        push_index(&mut self.path, index);
                    }
                    self.write_element(key, td, parent, value, level)?;
                    self.path.truncate(inner_mark);
                }
            }
        }
        self.path.truncate(mark);
        Ok(used)
    }

    /// Writes `<key id=".." value="..">extensions</key>`.
    fn write_primitive(
        &mut self,
        key: &str,
        value: Option<&Value>,
        extra: Option<&Value>,
        level: usize,
    ) -> Result<(), XmlError> {
        let value = value.filter(|v| !v.is_null());
        let extra = match extra {
            None | Some(Value::Null) => None,
            Some(Value::Object(extra)) => Some(extra),
            Some(_) => return Err(self.error(format!("`_{key}` must be an object"))),
        };
        if value.is_none() && extra.is_none() {
            return Ok(());
        }
        self.newline(level);
        self.out.push('<');
        self.out.push_str(key);
        let mut extensions: &[Value] = &[];
        if let Some(extra) = extra {
            for (name, item) in extra {
                match (name.as_str(), item) {
                    ("id", id) => self.write_attribute("id", id)?,
                    ("extension", Value::Array(items)) => extensions = items,
                    _ => {
                        return Err(self.error(format!("unknown element `_{key}.{name}`")));
                    }
                }
            }
        }
        if let Some(value) = value {
            self.write_attribute("value", value)?;
        }
        if extensions.is_empty() {
            self.out.push_str("/>");
            return Ok(());
        }
        self.out.push('>');
        let mark = self.path.len();
        for (index, extension) in extensions.iter().enumerate() {
            self.path.push_str(".extension");
            push_index(&mut self.path, index);
            self.write_element("extension", self.extension, "", extension, level + 1)?;
            self.path.truncate(mark);
        }
        self.newline(level);
        self.out.push_str("</");
        self.out.push_str(key);
        self.out.push('>');
        Ok(())
    }

    fn write_attribute(&mut self, name: &str, value: &Value) -> Result<(), XmlError> {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        match value {
            Value::String(text) => {
                escape_attribute(&mut self.out, text).map_err(|m| self.error(m))?;
            }
            Value::Bool(true) => self.out.push_str("true"),
            Value::Bool(false) => self.out.push_str("false"),
            Value::Number(number) => self.out.push_str(&number.to_string()),
            _ => return Err(self.error(format!("`{name}` must be a primitive JSON value"))),
        }
        self.out.push('"');
        Ok(())
    }
}

/// Whether `key` has a place in the XML form of an object of `parent` in `td`.
fn is_known_key(td: &TypeDef, parent: &str, resource_root: bool, key: &str) -> bool {
    if resource_root && key == "resourceType" {
        return true;
    }
    let (base, is_extra) = match key.strip_prefix('_') {
        Some(base) => (base, true),
        None => (key, false),
    };
    if is_attribute(td, parent, resource_root, base) {
        return !is_extra;
    }
    find_child(td, parent, base).is_some()
}

/// Appends `[index]` to a location.
fn push_index(path: &mut String, index: usize) {
    use std::fmt::Write as _;
    let _ = write!(path, "[{index}]");
}

/// A JSON member as a list: the array's items, or the single value.
fn items(value: Option<&Value>) -> &[Value] {
    match value {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(value) => std::slice::from_ref(value),
    }
}

/// Appends `text` escaped for a double-quoted attribute; whitespace other than the space
/// becomes a character reference so it survives attribute-value normalisation, and a
/// character XML cannot hold becomes U+FFFD.
fn escape_attribute(out: &mut String, text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(at) = rest.find(|c: char| {
        matches!(
            c,
            '&' | '<' | '>' | '"' | '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}'
        )
    }) {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().unwrap_or_default();
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            // XML 1.0 cannot carry these even as references. The validator refuses them,
            // but a value stored before it did must still be served: as U+FFFD.
            _ => out.push('\u{fffd}'),
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
    Ok(())
}

/// `text` with the characters XML 1.0 cannot hold (controls other than tab, CR and LF) as
/// U+FFFD: a narrative stored before the validator refused them is still served.
fn without_control_characters(text: &str) -> Cow<'_, str> {
    if text.contains(crate::validate::is_control) {
        Cow::Owned(text.replace(crate::validate::is_control, "\u{fffd}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Checks that a narrative string is one well-formed XHTML `div` element and returns it
/// carrying the XHTML namespace (added when the string has none).
fn checked_xhtml(div: &str) -> Result<Cow<'_, str>, String> {
    let trimmed = div.trim_matches(|c: char| c.is_ascii_whitespace());
    let mut reader = NsReader::from_str(trimmed);
    let mut depth = 0usize;
    let mut needs_namespace = false;
    let mut seen_root = false;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("the narrative div is not well-formed XML: {e}"))?;
        let ns = match ns {
            ResolveResult::Bound(ns) if ns.0 == XHTML_NS => Some(Ns::Xhtml),
            ResolveResult::Unbound => None,
            _ => Some(Ns::Other),
        };
        if let Event::Start(start) | Event::Empty(start) = &event {
            for attribute in start.attributes() {
                let attribute = attribute.map_err(|e| format!("the narrative div: {e}"))?;
                if ns.is_none() && attribute.key.into_inner() == "xmlns" {
                    return Err(format!(
                        "the narrative div must be in the namespace {XHTML_NS}"
                    ));
                }
                attribute
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| format!("the narrative div: {e}"))?;
            }
        }
        match &event {
            Event::Start(_) | Event::Empty(_) if depth == 0 && seen_root => {
                return Err("the narrative must be a single div element".to_owned());
            }
            Event::Start(start) | Event::Empty(start) if depth == 0 => {
                if start.name().into_inner() != "div" {
                    return Err("the narrative must be a div element".to_owned());
                }
                match ns {
                    Some(Ns::Xhtml) => {}
                    None => needs_namespace = true,
                    _ => {
                        return Err(format!(
                            "the narrative div must be in the namespace {XHTML_NS}"
                        ));
                    }
                }
                seen_root = true;
                if matches!(event, Event::Start(_)) {
                    depth = 1;
                }
            }
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Eof => break,
            Event::DocType(_) | Event::Decl(_) => {
                return Err("the narrative div must not carry a DOCTYPE or declaration".to_owned());
            }
            Event::Text(text) if depth == 0 && !is_blank(text) => {
                return Err("text outside the narrative div".to_owned());
            }
            Event::CData(_) | Event::GeneralRef(_) if depth == 0 => {
                return Err("text outside the narrative div".to_owned());
            }
            Event::GeneralRef(name) if !is_predefined_entity(name) => {
                return Err(format!(
                    "the narrative div uses the entity `&{};` that XML does not define",
                    &**name
                ));
            }
            _ => {}
        }
    }
    if !seen_root {
        return Err("the narrative div is empty".to_owned());
    }
    if needs_namespace {
        let rest = &trimmed["<div".len()..];
        Ok(Cow::Owned(format!("<div xmlns=\"{XHTML_NS}\"{rest}")))
    } else {
        Ok(Cow::Borrowed(trimmed))
    }
}

/// Whether `&name;` is one of XML's five entities or a character reference.
fn is_predefined_entity(name: &str) -> bool {
    match name.strip_prefix('#') {
        Some(hex) if hex.starts_with('x') => {
            hex.len() > 1 && hex[1..].bytes().all(|b| b.is_ascii_hexdigit())
        }
        Some(decimal) => !decimal.is_empty() && decimal.bytes().all(|b| b.is_ascii_digit()),
        None => matches!(name, "lt" | "gt" | "amp" | "quot" | "apos"),
    }
}
