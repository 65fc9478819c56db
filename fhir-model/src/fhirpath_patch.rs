//! FHIRPath Patch (R4, <https://hl7.org/fhir/R4/fhirpatch.html>): a Parameters resource
//! whose `operation` parameters add, insert, delete, replace or move elements named by
//! FHIRPath expressions.
//!
//! Paths are evaluated by [`crate::fhirpath`], so whatever it supports works in a patch:
//! `Patient.name[0].given`, `.where(system = 'x' and code = 'y')`, `first()`, `last()`,
//! `ofType()`, `extension('url')`, the type prefix, `resolve()` of a contained resource.
//! That evaluator returns values, not places; but the values it returns borrow from the
//! resource, so each one is located by address: a walk of the resource finds the slot that
//! holds that very value. A value not borrowed from the resource (a literal, a reference
//! resolved to another resource) is refused, which also keeps a patch inside its resource.
//!
//! The element definitions ([`Definitions::r4`]) say what a value may be: whether an
//! element repeats (an array in JSON), which key a choice element takes for the value's
//! type (`add name=value` with a `valueQuantity` writes `valueQuantity`), and whether the
//! value's type fits (complex types must match or derive, `Age` fits `Quantity`;
//! primitives need only the same JSON form, so a `valueString` may replace a `code`, the
//! caller's validation then checking the content).
//!
//! FHIR JSON keeps a primitive's id and extensions apart (`birthDate`/`_birthDate`,
//! `given[i]`/`_given[i]`); the operations keep the two aligned: deleting or moving an item
//! of `given` deletes or moves the same item of `_given`, a replaced or added primitive
//! brings its own `_value[x]` (or none), and an object or list a delete leaves empty is
//! removed (FHIR has no empty elements).
//!
//! Limitations: a path cannot reach the id or extensions of a primitive
//! (`Patient.birthDate.extension`), nor a repeated primitive that has extensions but no
//! value (a `null` in the array), because the evaluator does not look into `_name`. The
//! path of an `insert` or `move` must end with the list's element name
//! (`Patient.identifier`, `Patient.name[0].given`); indexes count the JSON array's slots.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::defs::{Definitions, ElementDef, Kind, TypeDef};
use crate::fhirpath::Expression;

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    pub message: String,
    /// Where in the patch: `Parameters.parameter[2]`, `Parameters.parameter[2].part[3]`.
    pub expression: String,
}

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.expression, self.message)
    }
}

impl std::error::Error for PatchError {}

/// Whether a Parameters body is a FHIRPath Patch: every parameter is named `operation`
/// (so a Parameters with no parameters is one, an empty patch). Lets a server tell it
/// from other Parameters bodies before applying it.
pub fn is_fhirpath_patch(parameters: &Value) -> bool {
    if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return false;
    }
    match parameters.get("parameter") {
        None => true,
        Some(Value::Array(list)) => list
            .iter()
            .all(|p| p.get("name").and_then(Value::as_str) == Some("operation")),
        Some(_) => false,
    }
}

/// Applies a FHIRPath Patch (a Parameters resource as JSON, as a client sends it with
/// Content-Type application/fhir+json) to `resource` (FHIR JSON); returns the patched
/// resource. The operations apply in order, each to the result of the one before; the
/// first failure fails the whole patch. Does not validate the result against R4 (the
/// caller does, as the spec requires of the outcome).
/// The most operations one patch may have: each one walks the resource.
pub const MAX_OPERATIONS: usize = 100;

/// The most work one path's evaluation may take (see `Expression::evaluate_bounded`): far
/// above any path a client means, far below what a hostile one would take.
const PATH_BUDGET: u64 = 1_000_000;

pub fn apply(resource: &Value, patch: &Value) -> Result<Value, PatchError> {
    let error = |expression: &str, message: &str| PatchError {
        message: message.to_owned(),
        expression: expression.to_owned(),
    };
    if patch.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(error(
            "Parameters",
            "a FHIRPath Patch is a Parameters resource",
        ));
    }
    if Scope::of_resource(resource).is_none() {
        return Err(error(
            "resourceType",
            "the resource to patch has no known resourceType",
        ));
    }
    let operations = match patch.get("parameter") {
        None => &[][..],
        Some(Value::Array(list)) => list.as_slice(),
        Some(_) => {
            return Err(error(
                "Parameters.parameter",
                "Parameters.parameter must be an array",
            ));
        }
    };
    if operations.len() > MAX_OPERATIONS {
        return Err(error(
            "Parameters.parameter",
            &format!("a patch has at most {MAX_OPERATIONS} operations"),
        ));
    }
    let mut out = resource.clone();
    for (index, parameter) in operations.iter().enumerate() {
        Operation::read(index, parameter)?.apply(&mut out)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Operations

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpType {
    Add,
    Insert,
    Delete,
    Replace,
    Move,
}

impl OpType {
    fn parse(code: &str) -> Option<OpType> {
        Some(match code {
            "add" => OpType::Add,
            "insert" => OpType::Insert,
            "delete" => OpType::Delete,
            "replace" => OpType::Replace,
            "move" => OpType::Move,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            OpType::Add => "add",
            OpType::Insert => "insert",
            OpType::Delete => "delete",
            OpType::Replace => "replace",
            OpType::Move => "move",
        }
    }
}

/// One `operation` parameter, its type and path read.
struct Operation<'p> {
    /// `Parameters.parameter[i]`, for errors.
    at: String,
    kind: OpType,
    path: &'p str,
    parts: &'p [Value],
}

impl<'p> Operation<'p> {
    fn read(index: usize, parameter: &'p Value) -> Result<Operation<'p>, PatchError> {
        let at = format!("Parameters.parameter[{index}]");
        let error = |message: String| PatchError {
            message,
            expression: at.clone(),
        };
        let name = parameter.get("name").and_then(Value::as_str);
        if name != Some("operation") {
            let name = name.map_or_else(|| "an unnamed one".to_owned(), |n| format!("'{n}'"));
            return Err(error(format!(
                "a FHIRPath Patch has only parameters named 'operation', not {name}"
            )));
        }
        let Some(Value::Array(parts)) = parameter.get("part") else {
            return Err(error("the operation has no parts".to_owned()));
        };
        let text = |name: &str| match find_part(parts, name).map_err(&error)? {
            Some((_, part)) => part_text(part, name).map_err(&error),
            None => Err(error(format!("the operation has no '{name}' part"))),
        };
        let code = text("type")?;
        let kind = OpType::parse(code).ok_or_else(|| {
            error(format!(
                "unknown operation type '{code}' (expected add, insert, delete, replace or move)"
            ))
        })?;
        let path = text("path")?;
        Ok(Operation {
            at,
            kind,
            path,
            parts,
        })
    }

    fn apply(&self, resource: &mut Value) -> Result<(), PatchError> {
        match self.kind {
            OpType::Add => self.add(resource),
            OpType::Insert => self.insert(resource),
            OpType::Delete => self.delete(resource),
            OpType::Replace => self.replace(resource),
            OpType::Move => self.relocate(resource),
        }
    }

    /// An error of this operation, naming it and its path.
    fn fail(&self, message: impl std::fmt::Display) -> PatchError {
        PatchError {
            message: format!("{} at '{}': {message}", self.kind.name(), self.path),
            expression: self.at.clone(),
        }
    }

    /// The part named `name`: its index and itself; an error when missing or repeated.
    fn part(&self, name: &str) -> Result<(usize, &'p Value), PatchError> {
        find_part(self.parts, name)
            .map_err(|m| self.fail(m))?
            .ok_or_else(|| self.fail(format!("the operation has no '{name}' part")))
    }

    fn text_part(&self, name: &str) -> Result<&'p str, PatchError> {
        let (_, part) = self.part(name)?;
        part_text(part, name).map_err(|m| self.fail(m))
    }

    fn index_part(&self, name: &str) -> Result<usize, PatchError> {
        let (_, part) = self.part(name)?;
        primitive_of(part)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                self.fail(format!(
                    "the '{name}' part needs a valueInteger of 0 or more"
                ))
            })
    }

    /// The `value` part, read for `slot` (which says what an anonymous value's parts are).
    fn value(&self, slot: Slot) -> Result<PatchValue, PatchError> {
        let (index, part) = self.part("value")?;
        let value = read_value(part, slot.inner_scope()).map_err(|m| PatchError {
            message: format!("{} at '{}': value: {m}", self.kind.name(), self.path),
            expression: format!("{}.part[{index}]", self.at),
        })?;
        let key = slot.key_for(&value).map_err(|m| PatchError {
            message: format!("{} at '{}': {m}", self.kind.name(), self.path),
            expression: format!("{}.part[{index}]", self.at),
        })?;
        Ok(PatchValue { key, ..value })
    }

    /// Where `path` points: `None` when it selects nothing; an error when it selects more
    /// than one element or something outside the resource.
    fn select(&self, resource: &Value, path: &str) -> Result<Option<Vec<Step>>, PatchError> {
        let expression = Expression::parse(path)
            .map_err(|e| self.fail(format!("invalid FHIRPath '{path}': {e}")))?;
        let nodes = expression
            .evaluate_bounded(resource, PATH_BUDGET)
            .map_err(|e| self.fail(format!("'{path}' is too costly: {e}")))?;
        let node = match nodes.as_slice() {
            [] => return Ok(None),
            [node] => node,
            more => {
                return Err(self.fail(format!(
                    "'{path}' selects {} elements; it must select one",
                    more.len()
                )));
            }
        };
        let outside = || self.fail(format!("'{path}' selects no element of the resource"));
        // `resolve()` of a reference to another resource yields the Reference itself,
        // typed as the resource: that is not the element it seems to be.
        let is_resource = Definitions::r4()
            .type_def(node.type_code)
            .is_some_and(|t| t.kind == Kind::Resource);
        match &node.value {
            Cow::Borrowed(value) if !is_resource || value.get("resourceType").is_some() => {
                locate(resource, value).map(Some).ok_or_else(outside)
            }
            _ => Err(outside()),
        }
    }

    /// Like [`Self::select`], nothing selected being an error.
    fn select_one(&self, resource: &Value, path: &str) -> Result<Vec<Step>, PatchError> {
        self.select(resource, path)?
            .ok_or_else(|| self.fail(format!("no content found at '{path}'")))
    }

    /// The definition scope of the object at `steps`; an error when it is a primitive.
    fn scope_at(&self, resource: &Value, steps: &[Step]) -> Result<Scope, PatchError> {
        scope_at(resource, steps)
            .ok_or_else(|| self.fail("the path selects a primitive value, which has no elements"))
    }

    fn object_at<'v>(
        &self,
        resource: &'v mut Value,
        steps: &[Step],
    ) -> Result<&'v mut Map<String, Value>, PatchError> {
        value_at_mut(resource, steps)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| self.fail("the selected element is not an object"))
    }

    /// `add`: appends to a list, or sets an element not yet present.
    fn add(&self, resource: &mut Value) -> Result<(), PatchError> {
        let name = self.text_part("name")?;
        self.part("value")?;
        let steps = self.select_one(resource, self.path)?;
        let scope = self.scope_at(resource, &steps)?;
        let element = scope
            .element(name)
            .ok_or_else(|| self.fail(format!("{} has no element '{name}'", scope.name())))?;
        let slot = Slot {
            owner: scope,
            element,
        };
        let value = self.value(slot)?;
        let object = self.object_at(resource, &steps)?;
        if element.is_array() {
            return push_item(object, value).map_err(|m| self.fail(m));
        }
        if has_element(object, scope, element) {
            return Err(self.fail(format!(
                "{} already has a value (add sets only a missing element; use replace)",
                slot.name()
            )));
        }
        put_single(object, None, value);
        Ok(())
    }

    /// `insert`: puts a value into a list at an index (`0..=len`).
    fn insert(&self, resource: &mut Value) -> Result<(), PatchError> {
        let index = self.index_part("index")?;
        self.part("value")?;
        let (steps, slot) = self.list(resource)?;
        let value = self.value(slot)?;
        let object = self.object_at(resource, &steps)?;
        let mut pair = take_pair(object, slot.element.name()).map_err(|m| self.fail(m))?;
        if index > pair.len() {
            return Err(self.fail(format!(
                "index {index} is out of range: the list has {} items",
                pair.len()
            )));
        }
        pair.values.insert(index, value.json);
        pair.extras
            .insert(index, value.extra.unwrap_or(Value::Null));
        put_pair(object, slot.element.name(), pair);
        Ok(())
    }

    /// `move`: moves a list item from one index to another (both `0..len`).
    fn relocate(&self, resource: &mut Value) -> Result<(), PatchError> {
        let source = self.index_part("source")?;
        let destination = self.index_part("destination")?;
        let (steps, slot) = self.list(resource)?;
        let object = self.object_at(resource, &steps)?;
        let key = slot.element.name();
        let mut pair = take_pair(object, key).map_err(|m| self.fail(m))?;
        let len = pair.len();
        for (name, index) in [("source", source), ("destination", destination)] {
            if index >= len {
                return Err(self.fail(format!(
                    "{name} index {index} is out of range: the list has {len} items"
                )));
            }
        }
        let value = pair.values.remove(source);
        pair.values.insert(destination, value);
        let extra = pair.extras.remove(source);
        pair.extras.insert(destination, extra);
        put_pair(object, key, pair);
        Ok(())
    }

    /// `replace`: sets the value of the one element the path selects.
    fn replace(&self, resource: &mut Value) -> Result<(), PatchError> {
        self.part("value")?;
        let steps = self.select_one(resource, self.path)?;
        let place = Place::of(steps).ok_or_else(|| {
            self.fail("the path selects the resource itself, which replace cannot change")
        })?;
        let scope = self.scope_at(resource, &place.object)?;
        let element = scope
            .def
            .child(scope.path, &place.key)
            .ok_or_else(|| self.fail(format!("'{}' is not an element", place.key)))?
            .element;
        let slot = Slot {
            owner: scope,
            element,
        };
        let value = self.value(slot)?;
        let object = self.object_at(resource, &place.object)?;
        match place.index {
            None => put_single(object, Some(&place.key), value),
            Some(index) => {
                let mut pair = take_pair(object, &place.key).map_err(|m| self.fail(m))?;
                if let (Some(v), Some(e)) = (pair.values.get_mut(index), pair.extras.get_mut(index))
                {
                    *v = value.json;
                    *e = value.extra.unwrap_or(Value::Null);
                }
                put_pair(object, &place.key, pair);
            }
        }
        Ok(())
    }

    /// `delete`: removes the element the path selects, if any (deleting nothing is no
    /// error), then whatever that leaves empty.
    fn delete(&self, resource: &mut Value) -> Result<(), PatchError> {
        let Some(steps) = self.select(resource, self.path)? else {
            return Ok(());
        };
        let place = Place::of(steps).ok_or_else(|| {
            self.fail("the path selects the resource itself, which cannot be deleted")
        })?;
        let mut above = place.object.clone();
        remove(resource, &place).map_err(|m| self.fail(m))?;
        // Prune: an object left empty goes too, up to (not including) the resource.
        while matches!(value_at_mut(resource, &above), Some(Value::Object(m)) if m.is_empty()) {
            let Some(place) = Place::of(above) else { break };
            above = place.object.clone();
            remove(resource, &place).map_err(|m| self.fail(m))?;
        }
        Ok(())
    }

    /// The list an `insert` or `move` works on: the object holding it and its element.
    /// The path is split at its last step, so that a list not present yet is found too.
    fn list(&self, resource: &Value) -> Result<(Vec<Step>, Slot), PatchError> {
        let (container, name) = split_path(self.path).ok_or_else(|| {
            self.fail("the path of a list must end with its element name (e.g. Patient.identifier)")
        })?;
        let steps = match container {
            Some(container) => self.select_one(resource, container)?,
            None => Vec::new(),
        };
        let scope = self.scope_at(resource, &steps)?;
        let element = scope
            .element(name)
            .ok_or_else(|| self.fail(format!("{} has no element '{name}'", scope.name())))?;
        let slot = Slot {
            owner: scope,
            element,
        };
        if !element.is_array() {
            return Err(self.fail(format!("{} is not a list", slot.name())));
        }
        Ok((steps, slot))
    }
}

/// The one part named `name` in `parts`, with its index; `None` when there is none.
fn find_part<'p>(parts: &'p [Value], name: &str) -> Result<Option<(usize, &'p Value)>, String> {
    let mut found = parts
        .iter()
        .enumerate()
        .filter(|(_, p)| p.get("name").and_then(Value::as_str) == Some(name));
    let first = found.next();
    if found.next().is_some() {
        return Err(format!("the operation has more than one '{name}' part"));
    }
    Ok(first)
}

/// A part's `value[x]` as text (`valueCode`, `valueString`, ...).
fn part_text<'p>(part: &'p Value, name: &str) -> Result<&'p str, String> {
    primitive_of(part)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the '{name}' part needs a valueString or valueCode"))
}

/// A part's `value[x]`, whatever its type.
fn primitive_of(part: &Value) -> Option<&Value> {
    part.as_object()?
        .iter()
        .find(|(k, _)| type_suffix(k, "value").is_some())
        .map(|(_, v)| v)
}

/// `Quantity` for `valueQuantity` (with `prefix` "value"); `None` for other keys.
fn type_suffix<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    let suffix = key.strip_prefix(prefix)?;
    suffix
        .starts_with(|c: char| c.is_ascii_uppercase())
        .then_some(suffix)
}

/// Splits `Patient.name[0].given` into `Patient.name[0]` and `given`: the last `.` outside
/// quotes, parentheses and brackets. `None` when the last step is not a plain name.
fn split_path(path: &str) -> Option<(Option<&str>, &str)> {
    let path = path.trim();
    let (mut depth, mut quote, mut escaped, mut dot) = (0i32, None, false, None);
    for (i, c) in path.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '`' => quote = Some(c),
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                '.' if depth == 0 => dot = Some(i),
                _ => {}
            },
        }
    }
    let (container, name) = match dot {
        Some(i) => (Some(path[..i].trim()), path[i + 1..].trim()),
        None => (None, path),
    };
    let name = name
        .strip_prefix('`')
        .and_then(|n| n.strip_suffix('`'))
        .unwrap_or(name);
    let plain = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    plain.then_some((container, name))
}

// ---------------------------------------------------------------------------------------
// Locations

/// One step of a location in the resource's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The location of the value at address `target` inside `root` (`[]` for the root).
fn locate(root: &Value, target: &Value) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    find(root, target, &mut steps).then_some(steps)
}

fn find(value: &Value, target: &Value, steps: &mut Vec<Step>) -> bool {
    if std::ptr::eq(value, target) {
        return true;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                steps.push(Step::Key(key.clone()));
                if find(child, target, steps) {
                    return true;
                }
                steps.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                steps.push(Step::Index(index));
                if find(child, target, steps) {
                    return true;
                }
                steps.pop();
            }
        }
        _ => {}
    }
    false
}

fn value_at_mut<'v>(mut value: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    for step in steps {
        value = match step {
            Step::Key(key) => value.get_mut(key.as_str())?,
            Step::Index(index) => value.get_mut(*index)?,
        };
    }
    Some(value)
}

/// Where an element sits: under `key` of the object at `object`, and at `index` of that
/// key's array for a repeating element.
#[derive(Debug)]
struct Place {
    object: Vec<Step>,
    key: String,
    index: Option<usize>,
}

impl Place {
    /// `None` for the resource itself.
    fn of(mut steps: Vec<Step>) -> Option<Place> {
        let index = match steps.last() {
            Some(Step::Index(index)) => Some(*index),
            _ => None,
        };
        if index.is_some() {
            steps.pop();
        }
        match steps.pop() {
            Some(Step::Key(key)) => Some(Place {
                object: steps,
                key,
                index,
            }),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Definitions

/// Where the children of an object are defined: a type and the element path inside it
/// (`""` for the type's root; `contact` for Patient.contact's backbone element).
#[derive(Debug, Clone, Copy)]
struct Scope {
    def: &'static TypeDef,
    path: &'static str,
}

impl Scope {
    /// A resource's own scope, from its `resourceType`.
    fn of_resource(value: &Value) -> Option<Scope> {
        let name = value.get("resourceType")?.as_str()?;
        let def = Definitions::r4()
            .type_def(name)
            .filter(|t| t.kind == Kind::Resource)?;
        Some(Scope { def, path: "" })
    }

    /// For messages: `Patient`, `Patient.contact`.
    fn name(self) -> String {
        if self.path.is_empty() {
            self.def.name.clone()
        } else {
            format!("{}.{}", self.def.name, self.path)
        }
    }

    /// The child element named `name` (`deceased` finds `deceased[x]`).
    fn element(self, name: &str) -> Option<&'static ElementDef> {
        self.def.children_of(self.path).find(|e| e.name() == name)
    }

    /// The scope of a child object of `element` whose type is `code` (the element's own
    /// when it has one type); `value` tells a contained resource's type. `None` for
    /// primitives and what cannot be told.
    fn inner(
        self,
        element: &'static ElementDef,
        code: Option<&str>,
        value: Option<&Value>,
    ) -> Option<Scope> {
        if let Some(target) = &element.content_ref {
            return Some(Scope {
                def: self.def,
                path: target.as_str(),
            });
        }
        let code = match (code, element.types.as_slice()) {
            (Some(code), _) => code,
            (None, [only]) => only.as_str(),
            _ => return None,
        };
        if code == "BackboneElement" || code == "Element" {
            return Some(Scope {
                def: self.def,
                path: element.path.as_str(),
            });
        }
        let def = Definitions::r4().type_def(code)?;
        match def.kind {
            Kind::Resource => value.and_then(Scope::of_resource),
            Kind::ComplexType => Some(Scope { def, path: "" }),
            Kind::PrimitiveType => None,
        }
    }
}

/// The scope of the object at `steps`, walking the definitions from the resource root;
/// `None` when a step is not a defined element or the value is a primitive.
fn scope_at(root: &Value, steps: &[Step]) -> Option<Scope> {
    let mut scope = Scope::of_resource(root)?;
    let mut value = root;
    let mut rest = steps;
    while let [Step::Key(key), tail @ ..] = rest {
        let child = scope.def.child(scope.path, key)?;
        value = value.get(key.as_str())?;
        rest = tail;
        if let [Step::Index(index), tail @ ..] = rest {
            value = value.get(*index)?;
            rest = tail;
        }
        scope = scope.inner(child.element, child.type_code, Some(value))?;
    }
    rest.is_empty().then_some(scope)
}

/// Whether `object` holds a value (or a primitive's `_name`) of `element`, under any of
/// its keys (a choice element has one per type).
fn has_element(object: &Map<String, Value>, scope: Scope, element: &ElementDef) -> bool {
    object.keys().any(|key| {
        let key = key.strip_prefix('_').unwrap_or(key);
        scope
            .def
            .child(scope.path, key)
            .is_some_and(|c| std::ptr::eq(c.element, element))
    })
}

/// An element a value is written to, with the scope that defines it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    owner: Scope,
    element: &'static ElementDef,
}

impl Slot {
    /// For messages: `Patient.contact.gender`.
    fn name(self) -> String {
        format!("{}.{}", self.owner.def.name, self.element.path)
    }

    /// The scope of an anonymous value (parts) written here: `None` unless the element has
    /// one complex type.
    fn inner_scope(self) -> Option<Scope> {
        if self.element.is_choice() {
            return None;
        }
        self.owner.inner(self.element, None, None)
    }

    /// The JSON key `value` goes under (`value` + type for a choice element), once its
    /// type is known to fit.
    fn key_for(self, value: &PatchValue) -> Result<String, String> {
        let name = self.element.name();
        let Some(ty) = &value.ty else {
            // Anonymous: built against `inner_scope`, so the element is complex.
            return Ok(name.to_owned());
        };
        if self.element.is_choice() {
            let key = format!("{name}{}", ty.suffix);
            return match self.owner.def.child(self.owner.path, &key) {
                Some(_) => Ok(key),
                None => Err(format!("{} cannot be a {}", self.name(), ty.code)),
            };
        }
        if accepts(self.element, ty.code) {
            Ok(name.to_owned())
        } else {
            let expected = match self.element.types.as_slice() {
                [] => "BackboneElement".to_owned(),
                types => types.join(" | "),
            };
            Err(format!(
                "{} is a {expected}, not a {}",
                self.name(),
                ty.code
            ))
        }
    }
}

/// Whether a value of type `code` may go into `element`: its type or a type it derives
/// from (`Age` is a `Quantity`, `Patient` a `Resource`), or for primitives any type of
/// the same JSON form.
fn accepts(element: &ElementDef, code: &str) -> bool {
    let defs = Definitions::r4();
    element.types.iter().any(|t| {
        t == code
            || derives_from(code, t)
            || (defs.is_primitive(t) && defs.is_primitive(code) && json_form(t) == json_form(code))
    })
}

fn derives_from(code: &str, base: &str) -> bool {
    let defs = Definitions::r4();
    let mut def = defs.type_def(code);
    // The deepest chain (Patient -> DomainResource -> Resource) is short; the bound only
    // guards against a cycle in the data.
    for _ in 0..16 {
        match def.and_then(|d| d.base.as_deref()) {
            Some(b) if b == base => return true,
            Some(b) => def = defs.type_def(b),
            None => return false,
        }
    }
    false
}

/// How a primitive type is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonForm {
    Bool,
    Number,
    Text,
}

fn json_form(primitive: &str) -> JsonForm {
    match primitive {
        "boolean" => JsonForm::Bool,
        "integer" | "decimal" | "positiveInt" | "unsignedInt" => JsonForm::Number,
        _ => JsonForm::Text,
    }
}

// ---------------------------------------------------------------------------------------
// Values

/// A value read from a `value` part, ready to be written.
#[derive(Debug)]
struct PatchValue {
    /// The JSON value; `Null` for a primitive that has only an id or extensions.
    json: Value,
    /// A primitive's id and extensions (the part's `_value[x]`), written as `_key`.
    extra: Option<Value>,
    /// From the `value[x]` key or a resource's `resourceType`; `None` for parts.
    ty: Option<ValueType>,
    /// The key it goes under (set by [`Operation::value`]).
    key: String,
}

#[derive(Debug)]
struct ValueType {
    /// The FHIR type: `dateTime`, `HumanName`, `Patient`.
    code: &'static str,
    /// As in `value[x]` keys: `DateTime`, `HumanName`.
    suffix: String,
}

/// Reads a part's value: `value[x]` (and `_value[x]`), a `resource`, or nested `part`s
/// that build an object of the element's type (`scope`; `None` when it has none).
fn read_value(part: &Value, scope: Option<Scope>) -> Result<PatchValue, String> {
    let Value::Object(map) = part else {
        return Err("a part must be an object".to_owned());
    };
    let typed: Vec<_> = map
        .iter()
        .filter_map(|(k, v)| type_suffix(k, "value").map(|s| (s, v)))
        .collect();
    let extra = map
        .iter()
        .find_map(|(k, v)| type_suffix(k, "_value").map(|s| (s, v)));
    let nested = map.get("part");
    let resource = map.get("resource");
    let kinds = typed.len() + usize::from(nested.is_some()) + usize::from(resource.is_some());
    if kinds > 1 {
        return Err("more than one value (value[x], resource, part)".to_owned());
    }
    let (json, ty) = if let Some(resource) = resource {
        let scope = Scope::of_resource(resource).ok_or("the resource has no known resourceType")?;
        let ty = ValueType {
            code: scope.def.name.as_str(),
            suffix: scope.def.name.clone(),
        };
        (resource.clone(), Some(ty))
    } else if let Some(parts) = nested {
        let scope = scope.ok_or(
            "a value given as parts can only go to an element of one complex type; use value[x]",
        )?;
        (build_object(parts, scope)?, None)
    } else {
        let (suffix, json) = match (typed.first(), extra) {
            (Some((suffix, json)), _) => (*suffix, (*json).clone()),
            (None, Some((suffix, _))) => (suffix, Value::Null),
            (None, None) => return Err("no value[x], resource or part".to_owned()),
        };
        (json, Some(value_type(suffix)?))
    };
    let extra = match extra {
        None => None,
        Some((suffix, _)) if ty.as_ref().is_none_or(|t| t.suffix != suffix) => {
            return Err(format!("_value{suffix} does not match the value's type"));
        }
        Some((_, Value::Object(e))) => Some(Value::Object(e.clone())),
        Some((suffix, _)) => return Err(format!("_value{suffix} must be an object")),
    };
    if let Some(ty) = &ty {
        check_shape(ty, &json)?;
    }
    Ok(PatchValue {
        json,
        extra,
        ty,
        key: String::new(),
    })
}

/// The type a `value[x]` suffix names: `CodeableConcept`, or `dateTime` for `DateTime`.
fn value_type(suffix: &str) -> Result<ValueType, String> {
    let defs = Definitions::r4();
    let mut chars = suffix.chars();
    let lower: String = chars
        .next()
        .map(|c| c.to_ascii_lowercase())
        .into_iter()
        .chain(chars)
        .collect();
    let def = defs
        .type_def(suffix)
        .filter(|t| t.kind == Kind::ComplexType)
        .or_else(|| {
            defs.type_def(&lower)
                .filter(|t| t.kind == Kind::PrimitiveType)
        })
        .ok_or_else(|| format!("value{suffix}: '{suffix}' is not a FHIR data type"))?;
    Ok(ValueType {
        code: def.name.as_str(),
        suffix: suffix.to_owned(),
    })
}

/// A primitive's JSON must be a boolean, number or string as its type says (or absent);
/// a complex value's an object.
fn check_shape(ty: &ValueType, json: &Value) -> Result<(), String> {
    let fits = if Definitions::r4().is_primitive(ty.code) {
        matches!(
            (json_form(ty.code), json),
            (_, Value::Null)
                | (JsonForm::Bool, Value::Bool(_))
                | (JsonForm::Number, Value::Number(_))
                | (JsonForm::Text, Value::String(_))
        )
    } else {
        json.is_object()
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "value{} is not a valid {} value",
            ty.suffix, ty.code
        ))
    }
}

/// An anonymous value: an object of `scope`'s type, each part giving one element (a
/// repeating element may be given several times).
fn build_object(parts: &Value, scope: Scope) -> Result<Value, String> {
    let Value::Array(parts) = parts else {
        return Err("'part' must be an array".to_owned());
    };
    let mut object = Map::new();
    for part in parts {
        let name = part
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a part has no name")?;
        let element = scope
            .element(name)
            .ok_or_else(|| format!("{} has no element '{name}'", scope.name()))?;
        let slot = Slot {
            owner: scope,
            element,
        };
        let value = read_value(part, slot.inner_scope()).map_err(|m| format!("{name}: {m}"))?;
        let key = slot.key_for(&value)?;
        let value = PatchValue { key, ..value };
        if element.is_array() {
            push_item(&mut object, value)?;
        } else if has_element(&object, scope, element) {
            return Err(format!("{} is given twice but is not a list", slot.name()));
        } else {
            put_single(&mut object, None, value);
        }
    }
    if object.is_empty() {
        return Err("a value given as parts needs at least one part".to_owned());
    }
    Ok(Value::Object(object))
}

// ---------------------------------------------------------------------------------------
// Writing

/// A repeating element as its two aligned JSON arrays: the values (`given`) and the ids
/// and extensions of primitives (`_given`, `null` where an item has none), of equal
/// length while they are worked on.
struct Pair {
    values: Vec<Value>,
    extras: Vec<Value>,
}

impl Pair {
    fn len(&self) -> usize {
        self.values.len()
    }
}

/// Takes a repeating element's arrays out of `object` (leaving `null` in their slots, so
/// that [`put_pair`] writes them back in place).
fn take_pair(object: &mut Map<String, Value>, key: &str) -> Result<Pair, String> {
    let extra_key = format!("_{key}");
    for k in [key, extra_key.as_str()] {
        if object.get(k).is_some_and(|v| !v.is_array() && !v.is_null()) {
            return Err(format!("'{k}' is not an array"));
        }
    }
    let mut take = |k: &str| match object.get_mut(k).map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let mut values = take(key);
    let mut extras = take(&extra_key);
    let len = values.len().max(extras.len());
    values.resize(len, Value::Null);
    extras.resize(len, Value::Null);
    Ok(Pair { values, extras })
}

/// Writes a repeating element's arrays back: no `_key` when no item has an id or
/// extension, neither key when the list is empty.
fn put_pair(object: &mut Map<String, Value>, key: &str, pair: Pair) {
    let extra_key = format!("_{key}");
    if pair.values.is_empty() {
        object.shift_remove(key);
    } else {
        put(object, key, Value::Array(pair.values));
    }
    if pair.extras.iter().all(Value::is_null) {
        object.shift_remove(&extra_key);
    } else {
        put(object, &extra_key, Value::Array(pair.extras));
    }
}

/// Sets `key`, in place when present, else at the end.
fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
    match object.get_mut(key) {
        Some(slot) => *slot = value,
        None => {
            object.insert(key.to_owned(), value);
        }
    }
}

/// Appends a value to a repeating element.
fn push_item(object: &mut Map<String, Value>, value: PatchValue) -> Result<(), String> {
    let mut pair = take_pair(object, &value.key)?;
    pair.values.push(value.json);
    pair.extras.push(value.extra.unwrap_or(Value::Null));
    put_pair(object, &value.key, pair);
    Ok(())
}

/// Writes a single element (and its `_key`), in the place of `old` (the same key, or
/// another type's key of a choice element) when given, else at the end.
fn put_single(object: &mut Map<String, Value>, old: Option<&str>, value: PatchValue) {
    let mut at = object.len();
    if let Some(old) = old {
        let old_extra = format!("_{old}");
        if let Some(p) = object.keys().position(|k| *k == old || *k == old_extra) {
            at = p;
        }
        object.shift_remove(old);
        object.shift_remove(&old_extra);
    }
    let mut at = at.min(object.len());
    let extra_key = format!("_{}", value.key);
    if !value.json.is_null() {
        object.shift_insert(at, value.key, value.json);
        at += 1;
    }
    if let Some(extra) = value.extra {
        object.shift_insert(at.min(object.len()), extra_key, extra);
    }
}

/// Removes the element at `place` (with its `_key` companion).
fn remove(resource: &mut Value, place: &Place) -> Result<(), String> {
    let object = value_at_mut(resource, &place.object)
        .and_then(Value::as_object_mut)
        .ok_or("the element's parent is not an object")?;
    match place.index {
        None => {
            object.shift_remove(&place.key);
            object.shift_remove(&format!("_{}", place.key));
        }
        Some(index) => {
            let mut pair = take_pair(object, &place.key)?;
            if index < pair.len() {
                pair.values.remove(index);
                pair.extras.remove(index);
            }
            put_pair(object, &place.key, pair);
        }
    }
    Ok(())
}

#[cfg(test)]
mod hostile {
    use super::*;
    use serde_json::json;

    fn replace_at(path: &str) -> Value {
        json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": path},
            {"name": "value", "valueString": "x"}]}]})
    }

    #[test]
    fn paths_that_multiply_work_are_refused_quickly() {
        let identifiers: Vec<Value> = (0..1000)
            .map(|n| json!({"value": format!("v{n}")}))
            .collect();
        let patient = json!({"resourceType": "Patient", "identifier": identifiers});
        let path =
            "Patient.identifier.select(%resource.identifier.select(%resource.identifier)).value";
        let error = apply(&patient, &replace_at(path)).unwrap_err();
        assert!(error.message.contains("too costly"), "{}", error.message);
    }

    #[test]
    fn a_patch_has_a_bounded_number_of_operations() {
        let operation = replace_at("Patient.gender")["parameter"][0].clone();
        let patch =
            json!({"resourceType": "Parameters", "parameter": vec![operation; MAX_OPERATIONS + 1]});
        let patient = json!({"resourceType": "Patient", "gender": "male"});
        assert!(apply(&patient, &patch).is_err());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// An `operation` parameter: its type and path, then `parts`.
    fn op(kind: &str, path: &str, parts: &[Value]) -> Value {
        let mut all = vec![
            json!({"name": "type", "valueCode": kind}),
            json!({"name": "path", "valueString": path}),
        ];
        all.extend_from_slice(parts);
        json!({"name": "operation", "part": all})
    }

    fn params(operations: &[Value]) -> Value {
        json!({"resourceType": "Parameters", "parameter": operations})
    }

    fn name(name: &str) -> Value {
        json!({"name": "name", "valueString": name})
    }

    fn int(name: &str, n: u64) -> Value {
        json!({"name": name, "valueInteger": n})
    }

    /// The `value` part: `typed` holds `valueX` (and maybe `_valueX`).
    fn value(typed: Value) -> Value {
        let mut part = json!({"name": "value"});
        if let (Some(p), Value::Object(t)) = (part.as_object_mut(), typed) {
            p.extend(t);
        }
        part
    }

    fn run(resource: &Value, operations: &[Value]) -> Result<Value, PatchError> {
        apply(resource, &params(operations))
    }

    fn ok(resource: Value, operations: &[Value]) -> Value {
        match run(&resource, operations) {
            Ok(v) => v,
            Err(e) => panic!("patch failed: {e}"),
        }
    }

    fn err(resource: Value, operations: &[Value]) -> PatchError {
        match run(&resource, operations) {
            Ok(v) => panic!("patch succeeded: {v}"),
            Err(e) => e,
        }
    }

    fn birth(date: &str) -> Value {
        json!({"resourceType": "Patient", "birthDate": date})
    }

    fn contact() -> Value {
        json!({"resourceType": "Patient",
            "contact": [{"name": {"text": "a name"}, "gender": "male"}]})
    }

    fn identifiers(n: usize) -> Value {
        let list: Vec<Value> = (1..=n)
            .map(|i| json!({"system": "http://example.org", "value": format!("value {i}")}))
            .collect();
        json!({"resourceType": "Patient", "identifier": list})
    }

    /// The `value`s of Patient.identifier, in order.
    fn identifier_values(patient: &Value) -> Vec<String> {
        patient["identifier"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["value"].as_str().map(str::to_owned))
            .collect()
    }

    fn moved(n: usize, moves: &[(u64, u64)]) -> Vec<String> {
        let ops: Vec<Value> = moves
            .iter()
            .map(|&(s, d)| {
                op(
                    "move",
                    "Patient.identifier",
                    &[int("source", s), int("destination", d)],
                )
            })
            .collect();
        identifier_values(&ok(identifiers(n), &ops))
    }

    // -- The official cases (fhir-patch-tests.xml), in JSON ------------------------------

    #[test]
    fn no_difference() {
        assert_eq!(ok(birth("1920-01-01"), &[]), birth("1920-01-01"));
        let empty = json!({"resourceType": "Parameters"});
        assert_eq!(apply(&identifiers(2), &empty), Ok(identifiers(2)));
    }

    #[test]
    fn primitives() {
        let replace = op(
            "replace",
            "Patient.birthDate",
            &[value(json!({"valueDate": "1930-01-01"}))],
        );
        assert_eq!(ok(birth("1920-01-01"), &[replace]), birth("1930-01-01"));
        let delete = op("delete", "Patient.birthDate", &[]);
        assert_eq!(
            ok(birth("1920-01-01"), &[delete]),
            json!({"resourceType": "Patient"})
        );
        let add = op(
            "add",
            "Patient",
            &[name("birthDate"), value(json!({"valueDate": "1930-01-01"}))],
        );
        assert_eq!(
            ok(json!({"resourceType": "Patient"}), &[add]),
            birth("1930-01-01")
        );
    }

    #[test]
    fn nested_primitives() {
        let replace = op(
            "replace",
            "Patient.contact[0].gender",
            &[value(json!({"valueCode": "female"}))],
        );
        let out = ok(contact(), &[replace]);
        assert_eq!(out["contact"][0]["gender"], "female");
        assert_eq!(out["contact"][0]["name"]["text"], "a name");

        let replace = op(
            "replace",
            "Patient.contact[0].name.text",
            &[value(json!({"valueString": "the name"}))],
        );
        let out = ok(contact(), &[replace]);
        assert_eq!(
            out["contact"][0],
            json!({"name": {"text": "the name"}, "gender": "male"})
        );

        let delete = op("delete", "Patient.contact[0].gender", &[]);
        let out = ok(contact(), &[delete]);
        assert_eq!(out["contact"], json!([{"name": {"text": "a name"}}]));

        // Deleting the only child of `name` leaves it empty: it goes too.
        let delete = op("delete", "Patient.contact[0].name.text", &[]);
        let out = ok(contact(), &[delete]);
        assert_eq!(out["contact"], json!([{"gender": "male"}]));

        let add = op(
            "add",
            "Patient.contact[0]",
            &[name("gender"), value(json!({"valueCode": "male"}))],
        );
        let input = json!({"resourceType": "Patient", "contact": [{"name": {"text": "a name"}}]});
        assert_eq!(ok(input, &[add]), contact());
    }

    #[test]
    fn complex() {
        let add = op(
            "add",
            "Patient",
            &[
                name("maritalStatus"),
                value(json!({"valueCodeableConcept": {"text": "married"}})),
            ],
        );
        let out = ok(json!({"resourceType": "Patient"}), &[add]);
        assert_eq!(out["maritalStatus"], json!({"text": "married"}));

        let married = json!({"resourceType": "Patient",
            "maritalStatus": {"id": "1", "text": "married"}});
        let replace = op(
            "replace",
            "Patient.maritalStatus",
            &[value(
                json!({"valueCodeableConcept": {"id": "2", "text": "not married"}}),
            )],
        );
        let out = ok(married.clone(), &[replace]);
        assert_eq!(
            out["maritalStatus"],
            json!({"id": "2", "text": "not married"})
        );

        let delete = op("delete", "Patient.maritalStatus", &[]);
        assert_eq!(ok(married, &[delete]), json!({"resourceType": "Patient"}));
    }

    #[test]
    fn anonymous_type() {
        let add = op(
            "add",
            "Patient",
            &[
                name("contact"),
                json!({"name": "value", "part": [
                    {"name": "name", "valueHumanName": {"text": "a name"}}
                ]}),
            ],
        );
        let out = ok(json!({"resourceType": "Patient"}), &[add]);
        assert_eq!(out["contact"], json!([{"name": {"text": "a name"}}]));

        let delete = op("delete", "Patient.contact[0]", &[]);
        let input = json!({"resourceType": "Patient", "contact": [{"name": {"text": "a name"}}]});
        assert_eq!(ok(input, &[delete]), json!({"resourceType": "Patient"}));
    }

    #[test]
    fn lists() {
        let replace = |i: usize, v: &str| {
            op(
                "replace",
                &format!("Patient.identifier[{i}].value"),
                &[value(json!({"valueString": v}))],
            )
        };
        let out = ok(
            identifiers(2),
            &[replace(0, "value 2"), replace(1, "value 1")],
        );
        assert_eq!(identifier_values(&out), ["value 2", "value 1"]);

        let identifier = value(json!({"valueIdentifier":
            {"system": "http://example.org", "value": "value 3"}}));
        let add = op("add", "Patient", &[name("identifier"), identifier.clone()]);
        assert_eq!(
            identifier_values(&ok(identifiers(2), std::slice::from_ref(&add))),
            ["value 1", "value 2", "value 3"]
        );
        // Add to a list not present yet.
        let out = ok(json!({"resourceType": "Patient"}), &[add]);
        assert_eq!(identifier_values(&out), ["value 3"]);

        for (index, expected) in [
            (1, ["value 1", "value 3", "value 2"]),
            (0, ["value 3", "value 1", "value 2"]),
            (2, ["value 1", "value 2", "value 3"]),
        ] {
            let insert = op(
                "insert",
                "Patient.identifier",
                &[int("index", index), identifier.clone()],
            );
            assert_eq!(identifier_values(&ok(identifiers(2), &[insert])), expected);
        }

        for (index, expected) in [
            (0, ["value 2", "value 3"]),
            (1, ["value 1", "value 3"]),
            (2, ["value 1", "value 2"]),
        ] {
            let delete = op("delete", &format!("Patient.identifier[{index}]"), &[]);
            assert_eq!(identifier_values(&ok(identifiers(3), &[delete])), expected);
        }
    }

    #[test]
    fn reorder_lists() {
        let v = |list: [u8; 4]| list.map(|i| format!("value {i}")).to_vec();
        assert_eq!(moved(4, &[(3, 1)]), v([1, 4, 2, 3]));
        assert_eq!(moved(4, &[(3, 0)]), v([4, 1, 2, 3]));
        assert_eq!(moved(4, &[(3, 2)]), v([1, 2, 4, 3]));
        assert_eq!(moved(4, &[(0, 3)]), v([2, 3, 4, 1]));
        assert_eq!(moved(4, &[(1, 0), (2, 1)]), v([2, 3, 1, 4]));
        assert_eq!(moved(4, &[(3, 0), (3, 1), (3, 2)]), v([4, 3, 2, 1]));
        assert_eq!(moved(4, &[(2, 2)]), v([1, 2, 3, 4]));
    }

    #[test]
    fn operation_on_missing_element() {
        let input = json!({"resourceType": "Patient",
            "identifier": [{"use": "official", "value": "123"}]});
        let add = op(
            "add",
            "Patient.identifier.where(use = 'official').period",
            &[name("end"), value(json!({"valueDateTime": "2021-12-01"}))],
        );
        let e = err(input, &[add]);
        assert_eq!(e.expression, "Parameters.parameter[0]");
        assert!(e.message.contains("no content found"), "{}", e.message);
        assert!(e.message.contains("where(use = 'official').period"));
    }

    #[test]
    fn full_resource() {
        let input = json!({
            "resourceType": "Patient",
            "id": "example",
            "text": {"status": "generated",
                "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><b>Chalmers</b></div>"},
            "identifier": [{"use": "usual", "system": "urn:oid:1.2.36.146.595.217.0.1",
                "value": "12345", "period": {"start": "2001-05-06"},
                "assigner": {"display": "Acme Healthcare"}}],
            "active": true,
            "name": [
                {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
                {"use": "usual", "given": ["Jim"]}
            ],
            "gender": "male",
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
            "deceasedBoolean": false,
            "contact": [{"name": {"family": "du Marché", "_family": {"extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix",
                "valueString": "VV"}]}, "given": ["Bénédicte"]}, "gender": "female"}],
            "managingOrganization": {"reference": "Organization/1"}
        });
        let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><b>Chalmers1</b></div>";
        let out = ok(
            input.clone(),
            &[
                op(
                    "replace",
                    "Patient.text.div",
                    &[value(json!({"valueString": div}))],
                ),
                op(
                    "replace",
                    "Patient.name[0].family",
                    &[value(json!({"valueString": "Chalmers1"}))],
                ),
            ],
        );
        let mut expected = input;
        expected["text"]["div"] = json!(div);
        expected["name"][0]["family"] = json!("Chalmers1");
        assert_eq!(out, expected);
        // Key order is kept.
        let keys = |v: &Value| v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>());
        assert_eq!(keys(&out), keys(&expected));
    }

    #[test]
    fn consecutive_operations() {
        let input = json!({"resourceType": "Patient", "id": "example", "contact": [
            {"name": {"family": "du Marché", "given": ["Bénédicte"]}}]});
        let out = ok(
            input,
            &[
                op(
                    "add",
                    "Patient.contact[0]",
                    &[name("gender"), value(json!({"valueCode": "male"}))],
                ),
                op(
                    "add",
                    "Patient",
                    &[
                        name("contact"),
                        json!({"name": "value", "part": [{"name": "gender", "valueCode": "male"}]}),
                    ],
                ),
            ],
        );
        assert_eq!(
            out["contact"],
            json!([
                {"name": {"family": "du Marché", "given": ["Bénédicte"]}, "gender": "male"},
                {"gender": "male"}
            ])
        );
    }

    // -- Paths ------------------------------------------------------------------------------

    fn observation() -> Value {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [
                {"system": "http://loinc.org", "code": "1234-5", "display": "old"},
                {"system": "http://snomed.info/sct", "code": "1234-5", "display": "other"}
            ]},
            "valueQuantity": {"value": 72.5, "unit": "kg"},
            "note": [{"text": "first"}, {"text": "second"}]})
    }

    #[test]
    fn where_first_last_and_type_prefix() {
        let out = ok(
            observation(),
            &[op(
                "replace",
                "Observation.code.coding.where(system='http://loinc.org' and code='1234-5').display",
                &[value(json!({"valueString": "new"}))],
            )],
        );
        assert_eq!(out["code"]["coding"][0]["display"], "new");
        assert_eq!(out["code"]["coding"][1]["display"], "other");

        let out = ok(
            observation(),
            &[
                op("delete", "Observation.note.first()", &[]),
                op(
                    "replace",
                    "note.last().text",
                    &[value(json!({"valueMarkdown": "only"}))],
                ),
            ],
        );
        assert_eq!(out["note"], json!([{"text": "only"}]));

        // Another resource type's path selects nothing.
        let e = err(
            observation(),
            &[op(
                "replace",
                "Patient.gender",
                &[value(json!({"valueCode": "male"}))],
            )],
        );
        assert!(e.message.contains("no content found"), "{}", e.message);
        assert_eq!(
            ok(observation(), &[op("delete", "Patient.gender", &[])]),
            observation()
        );
    }

    #[test]
    fn choice_elements() {
        // Replacing with another type renames the key, in place.
        let out = ok(
            observation(),
            &[op(
                "replace",
                "Observation.value",
                &[value(json!({"valueString": "heavy"}))],
            )],
        );
        assert_eq!(out["valueString"], "heavy");
        assert!(out.get("valueQuantity").is_none());
        let keys: Vec<_> = out.as_object().into_iter().flat_map(|m| m.keys()).collect();
        assert_eq!(
            keys,
            ["resourceType", "status", "code", "valueString", "note"]
        );

        let add = op(
            "add",
            "Observation",
            &[
                name("effective"),
                value(json!({"valueDateTime": "2021-01-01"})),
            ],
        );
        assert_eq!(ok(observation(), &[add])["effectiveDateTime"], "2021-01-01");

        // A choice element is there already, under another type's key.
        let add = op(
            "add",
            "Observation",
            &[name("value"), value(json!({"valueString": "x"}))],
        );
        assert!(
            err(observation(), &[add])
                .message
                .contains("already has a value")
        );

        let add = op(
            "add",
            "Observation",
            &[
                name("effective"),
                value(json!({"valueCoding": {"code": "x"}})),
            ],
        );
        let e = err(observation(), &[add]);
        assert!(e.message.contains("cannot be a Coding"), "{}", e.message);
        assert_eq!(e.expression, "Parameters.parameter[0].part[3]");
    }

    #[test]
    fn contained_resources() {
        let input = json!({"resourceType": "Patient",
            "contained": [{"resourceType": "Practitioner", "id": "p1",
                "name": [{"family": "Old"}]}],
            "generalPractitioner": [{"reference": "#p1"}]});
        let out = ok(
            input.clone(),
            &[op(
                "replace",
                "Patient.generalPractitioner.resolve().name[0].family",
                &[value(json!({"valueString": "New"}))],
            )],
        );
        assert_eq!(out["contained"][0]["name"][0]["family"], "New");

        let organization = json!({"resourceType": "Organization", "id": "o1", "name": "Acme"});
        let out = ok(
            input,
            &[op(
                "add",
                "Patient",
                &[
                    name("contained"),
                    json!({"name": "value", "resource": organization}),
                ],
            )],
        );
        assert_eq!(out["contained"][1], organization);

        // A reference resolved outside the resource is not an element of it.
        let input = json!({"resourceType": "Patient",
            "managingOrganization": {"reference": "Organization/1"}});
        let e = err(
            input,
            &[op(
                "replace",
                "Patient.managingOrganization.resolve()",
                &[value(
                    json!({"valueReference": {"reference": "Organization/2"}}),
                )],
            )],
        );
        assert!(
            e.message.contains("no element of the resource"),
            "{}",
            e.message
        );
    }

    #[test]
    fn extensions_as_parts() {
        let url = "http://example.org/ext";
        let add = op(
            "add",
            "Patient",
            &[
                name("extension"),
                json!({"name": "value", "part": [
                    {"name": "url", "valueUri": url},
                    {"name": "value", "valueString": "x"}
                ]}),
            ],
        );
        let out = ok(json!({"resourceType": "Patient"}), &[add]);
        assert_eq!(out["extension"], json!([{"url": url, "valueString": "x"}]));

        let replace = op(
            "replace",
            &format!("Patient.extension('{url}').value"),
            &[value(json!({"valueBoolean": true}))],
        );
        let out = ok(out, &[replace]);
        assert_eq!(
            out["extension"],
            json!([{"url": url, "valueBoolean": true}])
        );
    }

    // -- Primitives' `_name` ----------------------------------------------------------------

    fn given() -> Value {
        json!({"resourceType": "Patient", "name": [{
            "given": ["a", "b", "c"],
            "_given": [null, {"id": "b"}, null]}]})
    }

    #[test]
    fn primitive_lists_keep_extensions_aligned() {
        let out = ok(given(), &[op("delete", "Patient.name[0].given[0]", &[])]);
        assert_eq!(out["name"][0]["given"], json!(["b", "c"]));
        assert_eq!(out["name"][0]["_given"], json!([{"id": "b"}, null]));

        // Replacing the item that had an id drops it: `_given` is all null, so it goes.
        let replace = op(
            "replace",
            "Patient.name[0].given[1]",
            &[value(json!({"valueString": "B"}))],
        );
        let out = ok(given(), &[replace]);
        assert_eq!(out["name"][0], json!({"given": ["a", "B", "c"]}));

        // A replaced primitive brings its own `_value[x]`.
        let replace = op(
            "replace",
            "Patient.name[0].given[2]",
            &[value(
                json!({"valueString": "C", "_valueString": {"id": "c"}}),
            )],
        );
        let out = ok(given(), &[replace]);
        assert_eq!(out["name"][0]["given"], json!(["a", "b", "C"]));
        assert_eq!(
            out["name"][0]["_given"],
            json!([null, {"id": "b"}, {"id": "c"}])
        );

        let moved = op(
            "move",
            "Patient.name[0].given",
            &[int("source", 1), int("destination", 0)],
        );
        let out = ok(given(), &[moved]);
        assert_eq!(out["name"][0]["given"], json!(["b", "a", "c"]));
        assert_eq!(out["name"][0]["_given"], json!([{"id": "b"}, null, null]));

        let insert = op(
            "insert",
            "Patient.name[0].given",
            &[int("index", 0), value(json!({"valueString": "z"}))],
        );
        let out = ok(given(), &[insert]);
        assert_eq!(out["name"][0]["given"], json!(["z", "a", "b", "c"]));
        assert_eq!(
            out["name"][0]["_given"],
            json!([null, null, {"id": "b"}, null])
        );
    }

    #[test]
    fn primitive_lists_without_extensions_gain_them() {
        let input = json!({"resourceType": "Patient", "name": [{"given": ["a"]}]});
        let add = op(
            "add",
            "Patient.name[0]",
            &[
                name("given"),
                value(json!({"valueString": "b", "_valueString": {"id": "x"}})),
            ],
        );
        let out = ok(input, &[add]);
        assert_eq!(
            out["name"][0],
            json!({"given": ["a", "b"], "_given": [null, {"id": "x"}]})
        );
        // Deleting the last item removes both arrays, then the empty name.
        let out = ok(
            out,
            &[
                op("delete", "Patient.name[0].given[1]", &[]),
                op("delete", "Patient.name[0].given[0]", &[]),
            ],
        );
        assert_eq!(out, json!({"resourceType": "Patient"}));
    }

    #[test]
    fn single_primitives_and_their_extensions() {
        let input = json!({"resourceType": "Patient", "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{"url": "http://x", "valueString": "t"}]},
            "active": true});
        let out = ok(input.clone(), &[op("delete", "Patient.birthDate", &[])]);
        assert_eq!(out, json!({"resourceType": "Patient", "active": true}));

        // Replace replaces the whole element: the old extensions go.
        let replace = op(
            "replace",
            "Patient.birthDate",
            &[value(json!({"valueDate": "1975-01-01"}))],
        );
        let out = ok(input.clone(), &[replace]);
        assert_eq!(
            out,
            json!({"resourceType": "Patient", "birthDate": "1975-01-01", "active": true})
        );

        let replace = op(
            "replace",
            "Patient.birthDate",
            &[value(json!({"_valueDate": {"id": "only"}}))],
        );
        let out = ok(input, &[replace]);
        assert_eq!(
            out,
            json!({"resourceType": "Patient", "_birthDate": {"id": "only"}, "active": true})
        );
    }

    // -- Errors -----------------------------------------------------------------------------

    #[test]
    fn parameters_errors() {
        let patient = birth("1920-01-01");
        let e = apply(&patient, &json!({"resourceType": "Patient"})).unwrap_err();
        assert_eq!(e.expression, "Parameters");

        let bad = json!({"resourceType": "Parameters", "parameter": [
            op("delete", "Patient.birthDate", &[]),
            {"name": "other", "valueString": "x"}
        ]});
        let e = apply(&patient, &bad).unwrap_err();
        assert_eq!(e.expression, "Parameters.parameter[1]");
        assert!(e.message.contains("'other'"), "{}", e.message);

        let e = err(patient.clone(), &[json!({"name": "operation"})]);
        assert!(e.message.contains("no parts"), "{}", e.message);

        let e = err(patient.clone(), &[op("merge", "Patient", &[])]);
        assert!(
            e.message.contains("unknown operation type 'merge'"),
            "{}",
            e.message
        );

        let e = err(
            patient.clone(),
            &[json!({"name": "operation", "part": [{"name": "type", "valueCode": "delete"}]})],
        );
        assert!(e.message.contains("no 'path' part"), "{}", e.message);

        let e = err(
            patient.clone(),
            &[op(
                "delete",
                "Patient.birthDate",
                &[json!({"name": "path", "valueString": "Patient.id"})],
            )],
        );
        assert!(e.message.contains("more than one 'path'"), "{}", e.message);

        let e = err(patient, &[op("delete", "Patient.name.(", &[])]);
        assert!(e.message.contains("invalid FHIRPath"), "{}", e.message);

        let e = apply(&json!({"id": "x"}), &params(&[])).unwrap_err();
        assert_eq!(e.expression, "resourceType");
    }

    #[test]
    fn missing_parts() {
        let cases = [
            (op("replace", "Patient.birthDate", &[]), "'value'"),
            (
                op("add", "Patient", &[value(json!({"valueDate": "2000"}))]),
                "'name'",
            ),
            (
                op(
                    "insert",
                    "Patient.identifier",
                    &[value(json!({"valueIdentifier": {"value": "x"}}))],
                ),
                "'index'",
            ),
            (
                op("move", "Patient.identifier", &[int("source", 0)]),
                "'destination'",
            ),
        ];
        for (operation, part) in cases {
            let e = err(identifiers(2), &[operation]);
            let part = format!("no {part} part");
            assert!(e.message.contains(&part), "{}", e.message);
            assert_eq!(e.expression, "Parameters.parameter[0]");
        }
        let e = err(
            identifiers(2),
            &[op(
                "move",
                "Patient.identifier",
                &[
                    json!({"name": "source", "valueString": "1"}),
                    int("destination", 0),
                ],
            )],
        );
        assert!(e.message.contains("valueInteger"), "{}", e.message);
    }

    #[test]
    fn selection_errors() {
        let replace = op(
            "replace",
            "Patient.identifier.value",
            &[value(json!({"valueString": "x"}))],
        );
        let e = err(identifiers(2), &[replace]);
        assert!(e.message.contains("selects 2 elements"), "{}", e.message);
        let e = err(identifiers(2), &[op("delete", "Patient.identifier", &[])]);
        assert!(e.message.contains("selects 2 elements"), "{}", e.message);

        // Deleting nothing is fine.
        assert_eq!(
            ok(
                identifiers(2),
                &[op("delete", "Patient.identifier[5]", &[])]
            ),
            identifiers(2)
        );
        let e = err(identifiers(1), &[op("delete", "Patient", &[])]);
        assert!(e.message.contains("resource itself"), "{}", e.message);

        for operation in [
            op(
                "replace",
                "Patient.birthDate",
                &[value(json!({"valueDate": "2000"}))],
            ),
            op(
                "add",
                "Patient.name",
                &[name("family"), value(json!({"valueString": "x"}))],
            ),
            op(
                "insert",
                "Patient.name.given",
                &[int("index", 0), value(json!({"valueString": "x"}))],
            ),
        ] {
            let e = err(identifiers(1), &[operation]);
            assert!(e.message.contains("no content found"), "{}", e.message);
        }

        let e = err(identifiers(1), &[op("delete", "'a literal'", &[])]);
        assert!(
            e.message.contains("no element of the resource"),
            "{}",
            e.message
        );
    }

    #[test]
    fn index_errors() {
        let identifier = value(json!({"valueIdentifier": {"value": "x"}}));
        let insert = op(
            "insert",
            "Patient.identifier",
            &[int("index", 3), identifier.clone()],
        );
        let e = err(identifiers(2), &[insert]);
        assert!(
            e.message.contains("index 3 is out of range"),
            "{}",
            e.message
        );

        // Into an absent list, index 0 only.
        let insert = op(
            "insert",
            "Patient.identifier",
            &[int("index", 0), identifier.clone()],
        );
        let out = ok(json!({"resourceType": "Patient"}), &[insert]);
        assert_eq!(out["identifier"], json!([{"value": "x"}]));

        for (source, destination, bad) in [(2, 0, "source"), (0, 2, "destination")] {
            let moved = op(
                "move",
                "Patient.identifier",
                &[int("source", source), int("destination", destination)],
            );
            let e = err(identifiers(2), &[moved]);
            let text = format!("{bad} index 2 is out of range");
            assert!(e.message.contains(&text), "{}", e.message);
        }

        let insert = op(
            "insert",
            "Patient.birthDate",
            &[int("index", 0), value(json!({"valueDate": "2000"}))],
        );
        let e = err(identifiers(2), &[insert]);
        assert!(
            e.message.contains("Patient.birthDate is not a list"),
            "{}",
            e.message
        );

        let insert = op(
            "insert",
            "Patient.identifier.first()",
            &[int("index", 0), identifier],
        );
        let e = err(identifiers(2), &[insert]);
        assert!(e.message.contains("must end with"), "{}", e.message);
    }

    fn married() -> Value {
        json!({"resourceType": "Patient", "birthDate": "1920-01-01",
            "maritalStatus": {"text": "married"}})
    }

    /// Each operation fails for its `value` part, with a message holding the text.
    fn value_fails(cases: Vec<(Value, &str)>) {
        for (operation, text) in cases {
            let e = err(married(), &[operation]);
            assert!(e.message.contains(text), "{text}: {}", e.message);
            assert_eq!(e.expression, "Parameters.parameter[0].part[2]");
        }
    }

    #[test]
    fn value_type_errors() {
        value_fails(vec![
            (
                op(
                    "replace",
                    "Patient.birthDate",
                    &[value(json!({"valueCodeableConcept": {"text": "x"}}))],
                ),
                "is a date, not a CodeableConcept",
            ),
            (
                op(
                    "replace",
                    "Patient.maritalStatus",
                    &[value(json!({"valueCoding": {"code": "M"}}))],
                ),
                "is a CodeableConcept, not a Coding",
            ),
            (
                op(
                    "replace",
                    "Patient.birthDate",
                    &[value(json!({"valueDate": {"x": 1}}))],
                ),
                "not a valid date value",
            ),
            (
                op(
                    "replace",
                    "Patient.birthDate",
                    &[value(json!({"valueBoolean": true}))],
                ),
                "is a date, not a boolean",
            ),
        ]);
    }

    #[test]
    fn value_form_errors() {
        value_fails(vec![
            (
                op(
                    "replace",
                    "Patient.birthDate",
                    &[value(json!({"valueFoo": "x"}))],
                ),
                "not a FHIR data type",
            ),
            (
                op(
                    "replace",
                    "Patient.birthDate",
                    &[value(json!({"valueDate": "2000", "valueString": "2000"}))],
                ),
                "more than one value",
            ),
            (
                op(
                    "replace",
                    "Patient.birthDate",
                    &[json!({"name": "value", "part": [{"name": "x", "valueString": "y"}]})],
                ),
                "one complex type",
            ),
            (
                op(
                    "replace",
                    "Patient.maritalStatus",
                    &[json!({"name": "value", "part": [{"name": "x", "valueString": "y"}]})],
                ),
                "CodeableConcept has no element 'x'",
            ),
            (
                op(
                    "replace",
                    "Patient.maritalStatus",
                    &[json!({"name": "value", "part": [
                        {"name": "text", "valueString": "a"},
                        {"name": "text", "valueString": "b"}
                    ]})],
                ),
                "given twice",
            ),
            (
                op("replace", "Patient.birthDate", &[json!({"name": "value"})]),
                "no value[x]",
            ),
        ]);
    }

    #[test]
    fn add_errors() {
        let patient = married();
        let add = op(
            "add",
            "Patient",
            &[name("birthDate"), value(json!({"valueDate": "2000"}))],
        );
        let e = err(patient.clone(), &[add]);
        assert!(e.message.contains("already has a value"), "{}", e.message);

        let add = op(
            "add",
            "Patient",
            &[name("nickname"), value(json!({"valueString": "x"}))],
        );
        let e = err(patient.clone(), &[add]);
        assert!(
            e.message.contains("Patient has no element 'nickname'"),
            "{}",
            e.message
        );

        let add = op(
            "add",
            "Patient.birthDate",
            &[name("id"), value(json!({"valueString": "x"}))],
        );
        let e = err(patient, &[add]);
        assert!(e.message.contains("primitive"), "{}", e.message);
    }

    #[test]
    fn primitives_of_the_same_json_form_fit() {
        // A client's valueString for a code: the caller's validation checks the code.
        let replace = op(
            "replace",
            "Patient.gender",
            &[value(json!({"valueString": "female"}))],
        );
        let input = json!({"resourceType": "Patient", "gender": "male"});
        assert_eq!(ok(input, &[replace])["gender"], "female");
        // A derived complex type fits its base.
        let replace = op(
            "replace",
            "Observation.referenceRange[0].age.low",
            &[value(json!({"valueAge": {"value": 2, "unit": "a"}}))],
        );
        let input = json!({"resourceType": "Observation",
            "referenceRange": [{"age": {"low": {"value": 1}}}]});
        assert_eq!(
            ok(input, &[replace])["referenceRange"][0]["age"]["low"]["value"],
            2
        );
    }

    #[test]
    fn nothing_changes_on_failure() {
        // The first operation works, the second fails: the patch fails as a whole, and
        // names the operation that failed; the input is untouched (apply works on a copy).
        let input = identifiers(3);
        let e = err(
            input.clone(),
            &[
                op("delete", "Patient.identifier[0]", &[]),
                op("delete", "Patient.identifier", &[]),
            ],
        );
        assert!(e.message.contains("selects 2"), "{}", e.message);
        assert_eq!(e.expression, "Parameters.parameter[1]");
        assert_eq!(input, identifiers(3));

        let e = err(
            identifiers(2),
            &[
                op("delete", "Patient.identifier[0]", &[]),
                op("delete", "Patient.identifier", &[]),
                op("move", "Patient.identifier", &[int("source", 0)]),
            ],
        );
        assert!(e.message.contains("no 'destination' part"), "{}", e.message);
        assert_eq!(e.expression, "Parameters.parameter[2]");
    }

    #[test]
    fn recognizes_fhirpath_patches() {
        assert!(is_fhirpath_patch(&params(&[op(
            "delete",
            "Patient.id",
            &[]
        )])));
        assert!(is_fhirpath_patch(&json!({"resourceType": "Parameters"})));
        assert!(!is_fhirpath_patch(&json!({"resourceType": "Parameters",
            "parameter": [{"name": "resource", "valueString": "x"}]})));
        assert!(!is_fhirpath_patch(
            &json!([{"op": "remove", "path": "/id"}])
        ));
        assert!(!is_fhirpath_patch(&json!({"resourceType": "Patient"})));
    }

    #[test]
    fn split_paths() {
        assert_eq!(
            split_path("Patient.name[0].given"),
            Some((Some("Patient.name[0]"), "given"))
        );
        assert_eq!(
            split_path("Patient.identifier.where(system = 'a.b').`type`"),
            Some((Some("Patient.identifier.where(system = 'a.b')"), "type"))
        );
        assert_eq!(split_path("identifier"), Some((None, "identifier")));
        assert_eq!(split_path("Patient.name.where(use = 'x.y')"), None);
        assert_eq!(split_path("Patient.name[0]"), None);
    }
}
