//! A typed FHIRPath evaluator for the subset that FHIR R4 SearchParameter expressions use.
//!
//! Supported: paths (member access flattens arrays; choice elements such as
//! `Observation.value` find whichever `valueX` key is present), a leading type name
//! (`Patient.name` on a Patient; `Resource`/`DomainResource` match every resource; another
//! type yields nothing), `|`, `and`/`or`/`xor`/`implies`, `=`/`!=`/`~`/`!~`,
//! `<`/`>`/`<=`/`>=`, `is T`/`as T`, parentheses, `[n]`, string/number/boolean literals,
//! `{}`, `$this`, `%resource` (also `%rootResource`, `%context`) and the functions
//! `where`, `select`, `exists`, `empty`, `not`, `resolve`, `ofType`, `is`, `as`, `first`,
//! `last`, `count`, `hasValue` and `extension(url)`. Anything else is a parse error.
//!
//! Every node carries its FHIR type code, taken from the element definitions
//! ([`Definitions::r4`]). `resolve()` fetches nothing: for `#id` it yields the contained
//! resource itself; otherwise the Reference's own value, typed by the resource type the
//! reference names (`Patient/1`, `Patient/1/_history/2`, `http://x/fhir/Patient/1` ->
//! `Patient`; `urn:uuid:`, no `reference` -> `Resource`), with no children. `is`, `as`
//! and `ofType` accept a type or, for complex types and resources, a base type (`Age` is a
//! `Quantity`, `Patient` a `DomainResource`), but primitive specializations are distinct
//! (`canonical` is not `uri`). System type names map to FHIR ones (`DateTime` ->
//! `dateTime`).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use crate::defs::{Child, Definitions, Kind, TypeDef};

/// Nesting limit of an expression (parentheses, function arguments, operator and path
/// chains).
const MAX_DEPTH: usize = 64;
/// Token limit of an expression.
const MAX_TOKENS: usize = 4096;

/// Above this many items, `|` removes only repeats of the same borrowed value instead of
/// comparing every pair of values.
const UNION_DEDUP_LIMIT: usize = 64;

/// The type code of a node whose type is not known (an unresolvable reference).
const UNKNOWN_RESOURCE: &str = "Resource";

/// One item of an evaluation result.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    /// The value: borrowed from the resource, or computed (booleans from `exists()`,
    /// `and`, `=`, ...; literals).
    pub value: Cow<'a, Value>,
    /// FHIR type code: `HumanName`, `Reference`, `dateTime`, `code`, `boolean`, ...; the
    /// target type for a `resolve()`d reference (`Resource` when it cannot be told).
    pub type_code: &'static str,
}

/// A parsed FHIRPath expression.
#[derive(Debug, Clone)]
pub struct Expression {
    ast: Ast,
}

impl std::str::FromStr for Expression {
    type Err = String;

    fn from_str(text: &str) -> Result<Expression, String> {
        Expression::parse(text)
    }
}

impl Expression {
    /// Parses an expression; `Err` with a message naming the (byte) position for syntax
    /// outside the supported subset.
    pub fn parse(text: &str) -> Result<Expression, String> {
        let tokens = lex(text)?;
        if tokens.len() > MAX_TOKENS {
            return Err(format!("expression longer than {MAX_TOKENS} tokens"));
        }
        let mut parser = Parser {
            tokens,
            at: 0,
            depth: 0,
        };
        let ast = parser.expr(0)?;
        let token = parser.peek();
        if token.tok != Tok::End {
            return Err(format!(
                "unexpected {} at position {}",
                token.tok, token.pos
            ));
        }
        if !within_depth(&ast, MAX_DEPTH) {
            return Err(format!("expression nested deeper than {MAX_DEPTH}"));
        }
        Ok(Expression { ast })
    }

    /// Evaluates the expression over a resource (its JSON form).
    pub fn evaluate<'a>(&self, resource: &'a Value) -> Vec<Node<'a>> {
        let env = Env::new(resource);
        let root = [env.root_item()];
        into_nodes(env.eval(&self.ast, &root))
    }

    /// Evaluates the expression doing at most `budget` units of work (a step of the
    /// evaluation, or an item of a result), or fails. For expressions a client wrote (a
    /// FHIRPath Patch's paths): `where`, `select` and `%resource` nest into work that grows
    /// as a power of the resource's size.
    pub fn evaluate_bounded<'a>(
        &self,
        resource: &'a Value,
        budget: u64,
    ) -> Result<Vec<Node<'a>>, String> {
        let mut env = Env::new(resource);
        env.budget = Some(std::cell::Cell::new(budget));
        let root = [env.root_item()];
        let items = env.eval(&self.ast, &root);
        drop(root);
        match env.budget.as_ref().map(std::cell::Cell::get) {
            Some(0) => Err(format!(
                "the expression takes more than {budget} steps to evaluate"
            )),
            _ => Ok(into_nodes(items)),
        }
    }

    /// For composite search parameters: evaluates the expression over the resource, then
    /// each component expression relative to every resulting item (`%resource` stays the
    /// resource). Result: per item of `self`, per component, the component's nodes.
    pub fn evaluate_composite<'a>(
        &self,
        resource: &'a Value,
        components: &[Expression],
    ) -> Vec<Vec<Vec<Node<'a>>>> {
        let env = Env::new(resource);
        let root = [env.root_item()];
        env.eval(&self.ast, &root)
            .into_iter()
            .map(|item| {
                let focus = [item];
                components
                    .iter()
                    .map(|c| into_nodes(env.eval(&c.ast, &focus)))
                    .collect()
            })
            .collect()
    }
}

fn into_nodes(items: Vec<Item<'_>>) -> Vec<Node<'_>> {
    items
        .into_iter()
        .map(|i| Node {
            value: i.value,
            type_code: i.ty.code,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Syntax

#[derive(Debug, Clone)]
enum Ast {
    /// `{}`
    Empty,
    Literal(Value, &'static str),
    This,
    /// `%resource`, `%rootResource`, `%context`: the resource evaluated.
    Resource,
    /// An identifier starting a path: a type name (filters the focus by type) or a member
    /// of the focus.
    Ident(Box<str>),
    Member(Box<Ast>, Box<str>),
    /// A function applied to the target, or to the focus when there is none.
    Call(Option<Box<Ast>>, Func),
    Index(Box<Ast>, usize),
    Binary(Op, Box<Ast>, Box<Ast>),
    Is(Box<Ast>, TypeName),
    As(Box<Ast>, TypeName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    And,
    Or,
    Xor,
    Implies,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone)]
enum Func {
    Where(Box<Ast>),
    Select(Box<Ast>),
    Exists(Option<Box<Ast>>),
    Empty,
    Not,
    Resolve,
    OfType(TypeName),
    Is(TypeName),
    First,
    Last,
    Count,
    HasValue,
    Extension(Box<str>),
}

/// A type specifier, normalized to the FHIR type code (`System.String` -> `string`).
#[derive(Debug, Clone)]
struct TypeName(Cow<'static, str>);

fn within_depth(ast: &Ast, limit: usize) -> bool {
    if limit == 0 {
        return false;
    }
    let below = limit - 1;
    match ast {
        Ast::Empty | Ast::Literal(..) | Ast::This | Ast::Resource | Ast::Ident(_) => true,
        Ast::Member(a, _) | Ast::Index(a, _) | Ast::Is(a, _) | Ast::As(a, _) => {
            within_depth(a, below)
        }
        Ast::Binary(_, a, b) => within_depth(a, below) && within_depth(b, below),
        Ast::Call(target, func) => {
            target.as_deref().is_none_or(|t| within_depth(t, below))
                && match func {
                    Func::Where(a) | Func::Select(a) | Func::Exists(Some(a)) => {
                        within_depth(a, below)
                    }
                    _ => true,
                }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A `` `delimited` `` identifier: never a keyword.
    Quoted(String),
    Str(String),
    Num(String),
    /// `%name`
    Var(String),
    /// `$name`
    Dollar(String),
    Sym(&'static str),
    End,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "'{s}'"),
            Tok::Quoted(s) => write!(f, "`{s}`"),
            Tok::Str(s) => write!(f, "string '{s}'"),
            Tok::Num(s) => write!(f, "number {s}"),
            Tok::Var(s) => write!(f, "%{s}"),
            Tok::Dollar(s) => write!(f, "${s}"),
            Tok::Sym(s) => write!(f, "'{s}'"),
            Tok::End => f.write_str("end of expression"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

const SYMBOLS: [&str; 22] = [
    "!=", "!~", "<=", ">=", "(", ")", "[", "]", "{", "}", ".", ",", "|", "=", "~", "<", ">", "+",
    "-", "*", "/", "&",
];

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if let Some(end) = trivia_end(text, i)? {
            i = end;
            continue;
        }
        let (tok, end) = token_at(text, i)?;
        tokens.push(Token { tok, pos: i });
        i = end;
    }
    tokens.push(Token {
        tok: Tok::End,
        pos: text.len(),
    });
    Ok(tokens)
}

/// Where the whitespace or comment starting at `i` ends, if one does: the parser never
/// sees them.
fn trivia_end(text: &str, i: usize) -> Result<Option<usize>, String> {
    if text.as_bytes()[i].is_ascii_whitespace() {
        return Ok(Some(i + 1));
    }
    let rest = &text[i..];
    if rest.starts_with("//") {
        return Ok(Some(rest.find('\n').map_or(text.len(), |n| i + n)));
    }
    if rest.starts_with("/*") {
        let end = text[i + 2..]
            .find("*/")
            .ok_or_else(|| format!("unterminated comment at position {i}"))?;
        return Ok(Some(i + end + 4));
    }
    Ok(None)
}

/// The token starting at `start` (which is not whitespace or a comment) and the offset
/// just past it.
fn token_at(text: &str, start: usize) -> Result<(Tok, usize), String> {
    let bytes = text.as_bytes();
    let c = bytes[start];
    if c.is_ascii_alphabetic() || c == b'_' {
        let end = ident_end(bytes, start);
        Ok((Tok::Ident(text[start..end].to_owned()), end))
    } else if c.is_ascii_digit() {
        let end = number_end(bytes, start);
        Ok((Tok::Num(text[start..end].to_owned()), end))
    } else if c == b'\'' || c == b'`' {
        let (s, end) = quoted(text, start)?;
        let tok = if c == b'\'' {
            Tok::Str(s)
        } else {
            Tok::Quoted(s)
        };
        Ok((tok, end))
    } else if c == b'%' || c == b'$' {
        variable(text, start)
    } else if c == b'@' {
        Err(format!(
            "date/time literals are not supported (position {start})"
        ))
    } else if let Some(sym) = SYMBOLS.iter().find(|s| text[start..].starts_with(**s)) {
        Ok((Tok::Sym(sym), start + sym.len()))
    } else {
        let ch = text[start..].chars().next().unwrap_or('?');
        Err(format!("unexpected character '{ch}' at position {start}"))
    }
}

/// Where the number starting at `i` ends. The fraction counts only when a digit follows
/// the dot, so that in `1.exists()` the dot stays a member step.
fn number_end(bytes: &[u8], mut i: usize) -> usize {
    let digits_end = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    i = digits_end(i);
    if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
        i = digits_end(i + 1);
    }
    i
}

/// A `%variable` or `$variable` (its name plain or quoted) starting at `start`, and the
/// offset just past it.
fn variable(text: &str, start: usize) -> Result<(Tok, usize), String> {
    let bytes = text.as_bytes();
    let (sigil, i) = (bytes[start], start + 1);
    let (name, end) = if i < bytes.len() && (bytes[i] == b'`' || bytes[i] == b'\'') {
        quoted(text, i)?
    } else {
        let end = ident_end(bytes, i);
        (text[i..end].to_owned(), end)
    };
    if name.is_empty() {
        return Err(format!(
            "expected a name after '{}' at position {start}",
            sigil as char
        ));
    }
    let tok = if sigil == b'%' {
        Tok::Var(name)
    } else {
        Tok::Dollar(name)
    };
    Ok((tok, end))
}

fn ident_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    i
}

/// A `'string'` or `` `identifier` `` starting at `start`; returns it and the end offset.
fn quoted(text: &str, start: usize) -> Result<(String, usize), String> {
    let quote = text.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, start + 1 + offset + 1)),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let mut code = 0u32;
                        for _ in 0..4 {
                            let digit = chars.next().and_then(|(_, h)| h.to_digit(16));
                            let Some(digit) = digit else {
                                return Err(format!(
                                    "bad \\u escape in string at position {start}"
                                ));
                            };
                            code = code * 16 + digit;
                        }
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    Err(format!("unterminated {quote} at position {start}"))
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

/// Binary operators and their precedence (higher binds tighter).
fn binary_op(tok: &Tok) -> Option<(u8, Option<Op>, &'static str)> {
    let (prec, op, name) = match tok {
        Tok::Ident(s) => match s.as_str() {
            "implies" => (1, Some(Op::Implies), "implies"),
            "or" => (2, Some(Op::Or), "or"),
            "xor" => (2, Some(Op::Xor), "xor"),
            "and" => (3, Some(Op::And), "and"),
            "in" => (4, None, "in"),
            "contains" => (4, None, "contains"),
            "is" => (8, None, "is"),
            "as" => (8, None, "as"),
            "div" => (10, None, "div"),
            "mod" => (10, None, "mod"),
            _ => return None,
        },
        Tok::Sym(s) => match *s {
            "=" => (5, Some(Op::Eq), "="),
            "!=" => (5, Some(Op::Ne), "!="),
            "~" => (5, Some(Op::Equiv), "~"),
            "!~" => (5, Some(Op::NotEquiv), "!~"),
            "<" => (6, Some(Op::Lt), "<"),
            ">" => (6, Some(Op::Gt), ">"),
            "<=" => (6, Some(Op::Le), "<="),
            ">=" => (6, Some(Op::Ge), ">="),
            "|" => (7, Some(Op::Union), "|"),
            "+" | "-" | "&" => (9, None, *s),
            "*" | "/" => (10, None, *s),
            _ => return None,
        },
        _ => return None,
    };
    Some((prec, op, name))
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.at < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn eat(&mut self, sym: &str) -> bool {
        if matches!(&self.peek().tok, Tok::Sym(s) if *s == sym) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, sym: &str) -> Result<(), String> {
        if self.eat(sym) {
            Ok(())
        } else {
            let t = self.peek();
            Err(format!(
                "expected '{sym}' at position {}, found {}",
                t.pos, t.tok
            ))
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "expression nested deeper than {MAX_DEPTH} at position {}",
                self.peek().pos
            ));
        }
        Ok(())
    }

    fn expr(&mut self, min_prec: u8) -> Result<Ast, String> {
        self.enter()?;
        let mut lhs = self.unary()?;
        while let Some((prec, op, name)) = binary_op(&self.peek().tok) {
            if prec < min_prec {
                break;
            }
            let pos = self.next().pos;
            lhs = match (op, name) {
                (Some(op), _) => {
                    let rhs = self.expr(prec + 1)?;
                    Ast::Binary(op, Box::new(lhs), Box::new(rhs))
                }
                (None, "is") => Ast::Is(Box::new(lhs), self.type_name()?),
                (None, "as") => Ast::As(Box::new(lhs), self.type_name()?),
                (None, name) => {
                    return Err(format!("unsupported operator '{name}' at position {pos}"));
                }
            };
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Ast, String> {
        let token = self.peek().clone();
        if let Tok::Sym(sign @ ("-" | "+")) = token.tok {
            self.at += 1;
            let next = self.next();
            let Tok::Num(n) = next.tok else {
                return Err(format!(
                    "unsupported unary '{sign}' at position {}",
                    token.pos
                ));
            };
            let literal = number(&format!("{sign}{n}"), next.pos)?;
            return self.postfix(literal);
        }
        let term = self.term()?;
        self.postfix(term)
    }

    fn term(&mut self) -> Result<Ast, String> {
        let token = self.next();
        let pos = token.pos;
        Ok(match token.tok {
            Tok::Str(s) => Ast::Literal(Value::String(s), "string"),
            Tok::Num(n) => number(&n, pos)?,
            Tok::Ident(name) if name == "true" || name == "false" => {
                Ast::Literal(Value::Bool(name == "true"), "boolean")
            }
            Tok::Ident(name) | Tok::Quoted(name) => {
                if self.eat("(") {
                    Ast::Call(None, self.call(&name, pos)?)
                } else {
                    Ast::Ident(name.into())
                }
            }
            Tok::Sym("(") => {
                let inner = self.expr(0)?;
                self.expect(")")?;
                inner
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                Ast::Empty
            }
            Tok::Dollar(name) if name == "this" => Ast::This,
            Tok::Var(name) if matches!(name.as_str(), "resource" | "rootResource" | "context") => {
                Ast::Resource
            }
            Tok::Dollar(name) => {
                return Err(format!("unsupported variable ${name} at position {pos}"));
            }
            Tok::Var(name) => {
                return Err(format!("unsupported variable %{name} at position {pos}"));
            }
            other => return Err(format!("unexpected {other} at position {pos}")),
        })
    }

    fn postfix(&mut self, mut lhs: Ast) -> Result<Ast, String> {
        let mut steps = 0;
        loop {
            if self.eat(".") {
                let token = self.next();
                let (Tok::Ident(name) | Tok::Quoted(name)) = token.tok else {
                    return Err(format!(
                        "expected a name after '.' at position {}, found {}",
                        token.pos, token.tok
                    ));
                };
                lhs = if self.eat("(") {
                    Ast::Call(Some(Box::new(lhs)), self.call(&name, token.pos)?)
                } else {
                    Ast::Member(Box::new(lhs), name.into())
                };
            } else if self.eat("[") {
                let pos = self.peek().pos;
                self.enter()?;
                let index = self.expr(0)?;
                self.depth -= 1;
                self.expect("]")?;
                let Ast::Literal(Value::Number(n), _) = &index else {
                    return Err(format!(
                        "only integer indexes are supported (position {pos})"
                    ));
                };
                let Some(n) = n.as_u64().and_then(|n| usize::try_from(n).ok()) else {
                    return Err(format!("bad index at position {pos}"));
                };
                lhs = Ast::Index(Box::new(lhs), n);
            } else {
                return Ok(lhs);
            }
            steps += 1;
            if steps > MAX_DEPTH {
                return Err(format!("path longer than {MAX_DEPTH} steps"));
            }
        }
    }

    /// A function call's arguments (the `(` is consumed).
    fn call(&mut self, name: &str, pos: usize) -> Result<Func, String> {
        self.enter()?;
        let func = match name {
            "where" | "select" | "exists" => {
                if name == "exists" && self.eat(")") {
                    self.depth -= 1;
                    return Ok(Func::Exists(None));
                }
                let arg = Box::new(self.expr(0)?);
                match name {
                    "where" => Func::Where(arg),
                    "select" => Func::Select(arg),
                    _ => Func::Exists(Some(arg)),
                }
            }
            "ofType" | "as" => Func::OfType(self.type_name()?),
            "is" => Func::Is(self.type_name()?),
            "extension" => {
                let token = self.next();
                let Tok::Str(url) = token.tok else {
                    return Err(format!(
                        "extension() takes a string literal (position {})",
                        token.pos
                    ));
                };
                Func::Extension(url.into())
            }
            "empty" => Func::Empty,
            "not" => Func::Not,
            "resolve" => Func::Resolve,
            "first" => Func::First,
            "last" => Func::Last,
            "count" => Func::Count,
            "hasValue" => Func::HasValue,
            _ => return Err(format!("unsupported function '{name}' at position {pos}")),
        };
        self.expect(")")?;
        self.depth -= 1;
        Ok(func)
    }

    /// A type specifier: `Patient`, `FHIR.Patient`, `System.String`.
    fn type_name(&mut self) -> Result<TypeName, String> {
        let token = self.next();
        let (Tok::Ident(first) | Tok::Quoted(first)) = token.tok else {
            return Err(format!("expected a type name at position {}", token.pos));
        };
        let (namespace, name) = if self.eat(".") {
            let token = self.next();
            let (Tok::Ident(second) | Tok::Quoted(second)) = token.tok else {
                return Err(format!("expected a type name at position {}", token.pos));
            };
            (Some(first), second)
        } else {
            (None, first)
        };
        Ok(normalize_type(namespace.as_deref(), &name))
    }
}

fn number(text: &str, pos: usize) -> Result<Ast, String> {
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Ast::Literal(Value::from(n), "integer"));
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(|n| Ast::Literal(Value::Number(n), "decimal"))
        .ok_or_else(|| format!("bad number {text} at position {pos}"))
}

/// FHIRPath system types and the FHIR primitive they correspond to.
const SYSTEM_TYPES: [(&str, &str); 7] = [
    ("Boolean", "boolean"),
    ("String", "string"),
    ("Integer", "integer"),
    ("Decimal", "decimal"),
    ("Date", "date"),
    ("DateTime", "dateTime"),
    ("Time", "time"),
];

fn normalize_type(namespace: Option<&str>, name: &str) -> TypeName {
    let defs = Definitions::r4();
    let fhir = || defs.type_def(name).map(|t| Cow::Borrowed(t.name.as_str()));
    let system = || {
        SYSTEM_TYPES
            .iter()
            .find(|(s, _)| *s == name)
            .map(|(_, f)| Cow::Borrowed(*f))
    };
    let found = match namespace {
        Some("System") => system().or_else(fhir),
        _ => fhir().or_else(system),
    };
    TypeName(found.unwrap_or_else(|| Cow::Owned(name.to_owned())))
}

// ---------------------------------------------------------------------------------------
// Evaluation

/// The type of an item and where its children are defined.
#[derive(Debug, Clone, Copy)]
struct Ty {
    code: &'static str,
    /// The type whose elements hold the children: the item's own type, or for a backbone
    /// element the type that defines it. `None`: no children (primitives, unresolved
    /// references).
    def: Option<&'static TypeDef>,
    /// The element path of the children's parent in `def` (`""` for the type's root).
    path: &'static str,
}

impl Ty {
    const fn leaf(code: &'static str) -> Ty {
        Ty {
            code,
            def: None,
            path: "",
        }
    }
}

#[derive(Debug, Clone)]
struct Item<'a> {
    value: Cow<'a, Value>,
    ty: Ty,
}

impl<'a> Item<'a> {
    fn boolean(b: bool) -> Item<'a> {
        Item {
            value: Cow::Owned(Value::Bool(b)),
            ty: Ty::leaf("boolean"),
        }
    }
}

struct Env<'a> {
    defs: &'static Definitions,
    root: &'a Value,
    root_ty: Ty,
    /// The work left (see `Expression::evaluate_bounded`); `None`: unbounded. At 0 every
    /// step answers empty, and the caller reports the evaluation as too costly.
    budget: Option<std::cell::Cell<u64>>,
}

impl<'a> Env<'a> {
    fn new(root: &'a Value) -> Env<'a> {
        let defs = Definitions::r4();
        Env {
            defs,
            root,
            root_ty: resource_ty(defs, root, None),
            budget: None,
        }
    }

    /// Takes `units` of work from the budget; false when it is spent.
    fn spend(&self, units: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        let left = budget.get();
        match left.checked_sub(units as u64) {
            Some(rest) if left > 0 => {
                budget.set(rest);
                true
            }
            _ => {
                budget.set(0);
                false
            }
        }
    }

    fn root_item(&self) -> Item<'a> {
        Item {
            value: Cow::Borrowed(self.root),
            ty: self.root_ty,
        }
    }

    fn eval(&self, ast: &Ast, focus: &[Item<'a>]) -> Vec<Item<'a>> {
        if !self.spend(1 + focus.len()) {
            return Vec::new();
        }
        let items = self.eval_step(ast, focus);
        if !self.spend(items.len()) {
            return Vec::new();
        }
        items
    }

    fn eval_step(&self, ast: &Ast, focus: &[Item<'a>]) -> Vec<Item<'a>> {
        match ast {
            Ast::Empty => Vec::new(),
            Ast::Literal(value, code) => vec![Item {
                value: Cow::Owned(value.clone()),
                ty: Ty::leaf(code),
            }],
            Ast::This => focus.to_vec(),
            Ast::Resource => vec![self.root_item()],
            Ast::Ident(name) => {
                let mut out = Vec::new();
                let is_type = name.starts_with(|c: char| c.is_ascii_uppercase());
                for item in focus {
                    if is_type {
                        if self.is_type(item.ty.code, name) {
                            out.push(item.clone());
                        }
                    } else {
                        member(item, name, &mut out);
                    }
                }
                out
            }
            Ast::Member(base, name) => {
                let mut out = Vec::new();
                for item in &self.eval(base, focus) {
                    member(item, name, &mut out);
                }
                out
            }
            Ast::Index(base, n) => self
                .eval(base, focus)
                .into_iter()
                .nth(*n)
                .into_iter()
                .collect(),
            Ast::Call(target, func) => {
                let input = match target {
                    Some(target) => self.eval(target, focus),
                    None => focus.to_vec(),
                };
                self.call(func, input)
            }
            Ast::Binary(op, l, r) => self.binary(*op, l, r, focus),
            Ast::Is(base, ty) => {
                let items = self.eval(base, focus);
                match items.as_slice() {
                    [item] => vec![Item::boolean(self.is_type(item.ty.code, &ty.0))],
                    _ => Vec::new(),
                }
            }
            Ast::As(base, ty) => {
                let mut items = self.eval(base, focus);
                items.retain(|i| self.is_type(i.ty.code, &ty.0));
                items
            }
        }
    }

    fn call(&self, func: &Func, mut input: Vec<Item<'a>>) -> Vec<Item<'a>> {
        match func {
            Func::Where(criteria) => {
                input.retain(|item| {
                    truth(&self.eval(criteria, std::slice::from_ref(item))) == Some(true)
                });
                input
            }
            Func::Select(projection) => input
                .iter()
                .flat_map(|item| self.eval(projection, std::slice::from_ref(item)))
                .collect(),
            Func::Exists(None) => vec![Item::boolean(!input.is_empty())],
            Func::Exists(Some(criteria)) => vec![Item::boolean(input.iter().any(|item| {
                truth(&self.eval(criteria, std::slice::from_ref(item))) == Some(true)
            }))],
            Func::Empty => vec![Item::boolean(input.is_empty())],
            Func::Not => truth(&input)
                .map(|b| Item::boolean(!b))
                .into_iter()
                .collect(),
            Func::Resolve => input.iter().filter_map(|item| self.resolve(item)).collect(),
            Func::OfType(ty) => {
                input.retain(|i| self.is_type(i.ty.code, &ty.0));
                input
            }
            Func::Is(ty) => match input.as_slice() {
                [item] => vec![Item::boolean(self.is_type(item.ty.code, &ty.0))],
                _ => Vec::new(),
            },
            Func::First => input.into_iter().next().into_iter().collect(),
            Func::Last => input.pop().into_iter().collect(),
            Func::Count => vec![Item {
                value: Cow::Owned(Value::from(input.len())),
                ty: Ty::leaf("integer"),
            }],
            Func::HasValue => {
                let has = matches!(input.as_slice(), [item] if !matches!(
                    *item.value,
                    Value::Object(_) | Value::Array(_) | Value::Null
                ));
                vec![Item::boolean(has)]
            }
            Func::Extension(url) => {
                let mut extensions = Vec::new();
                for item in &input {
                    member(item, "extension", &mut extensions);
                }
                extensions.retain(|e| e.value.get("url").and_then(Value::as_str) == Some(url));
                extensions
            }
        }
    }

    fn binary(&self, op: Op, l: &Ast, r: &Ast, focus: &[Item<'a>]) -> Vec<Item<'a>> {
        match op {
            Op::Union => {
                let left = self.eval(l, focus);
                let right = self.eval(r, focus);
                let mut out: Vec<Item<'a>> = Vec::with_capacity(left.len() + right.len());
                if left.len() + right.len() > UNION_DEDUP_LIMIT {
                    // Large collections: drop only the very same borrowed value, so that a
                    // resource with thousands of repeats costs no quadratic comparison.
                    let mut seen = std::collections::HashSet::new();
                    for item in left.into_iter().chain(right) {
                        let keep = match &item.value {
                            Cow::Borrowed(v) => seen.insert(std::ptr::from_ref::<Value>(v)),
                            Cow::Owned(_) => true,
                        };
                        if keep {
                            out.push(item);
                        }
                    }
                    return out;
                }
                for item in left.into_iter().chain(right) {
                    if !out.iter().any(|o| same(&o.value, &item.value)) {
                        out.push(item);
                    }
                }
                out
            }
            Op::And | Op::Or | Op::Xor | Op::Implies => {
                let a = truth(&self.eval(l, focus));
                // Short circuits.
                let result = match (op, a) {
                    (Op::And, Some(false)) => Some(false),
                    (Op::Or, Some(true)) => Some(true),
                    (Op::Implies, Some(false)) => Some(true),
                    _ => {
                        let b = truth(&self.eval(r, focus));
                        match op {
                            Op::And => match (a, b) {
                                (_, Some(false)) => Some(false),
                                (Some(true), Some(true)) => Some(true),
                                _ => None,
                            },
                            Op::Or => match (a, b) {
                                (_, Some(true)) => Some(true),
                                (Some(false), Some(false)) => Some(false),
                                _ => None,
                            },
                            Op::Xor => a.zip(b).map(|(a, b)| a != b),
                            _ => match (a, b) {
                                (Some(true), b) => b,
                                (None, Some(true)) => Some(true),
                                _ => None,
                            },
                        }
                    }
                };
                result.map(Item::boolean).into_iter().collect()
            }
            _ => {
                let left_items;
                let left: Vec<&Value> = match l {
                    Ast::Literal(v, _) => vec![v],
                    _ => {
                        left_items = self.eval(l, focus);
                        left_items.iter().map(|i| i.value.as_ref()).collect()
                    }
                };
                let right_items;
                let right: Vec<&Value> = match r {
                    Ast::Literal(v, _) => vec![v],
                    _ => {
                        right_items = self.eval(r, focus);
                        right_items.iter().map(|i| i.value.as_ref()).collect()
                    }
                };
                compare(op, &left, &right)
                    .map(Item::boolean)
                    .into_iter()
                    .collect()
            }
        }
    }

    /// Whether a node of type `code` is a `target` (its own type or, for complex types
    /// and resources, a base type: `Patient` is a `DomainResource`, `Age` a `Quantity`).
    /// Primitive specializations do not count (`canonical` is not `uri`), so that
    /// `ofType(uri)` picks only the `uri` choice.
    fn is_type(&self, code: &str, target: &str) -> bool {
        if code == target {
            return true;
        }
        let Some(mut def) = self.defs.type_def(code) else {
            return false;
        };
        if def.kind == Kind::PrimitiveType {
            return false;
        }
        for _ in 0..16 {
            let Some(base) = def.base.as_deref() else {
                return false;
            };
            if base == target {
                return true;
            }
            match self.defs.type_def(base) {
                Some(next) => def = next,
                None => return false,
            }
        }
        false
    }

    /// `resolve()` without fetching: the contained resource for `#id`, else a node typed
    /// by the reference's resource type (`Resource` when it cannot be told).
    fn resolve(&self, item: &Item<'a>) -> Option<Item<'a>> {
        let reference = match &*item.value {
            Value::Object(map) => map.get("reference").and_then(Value::as_str),
            Value::String(s) => Some(s.as_str()),
            _ => return None,
        };
        if let Some(id) = reference.and_then(|r| r.strip_prefix('#')) {
            if id.is_empty() {
                return Some(self.root_item());
            }
            let contained = self.root.get("contained").and_then(Value::as_array);
            if let Some(found) = contained
                .into_iter()
                .flatten()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
            {
                return Some(Item {
                    value: Cow::Borrowed(found),
                    ty: resource_ty(self.defs, found, None),
                });
            }
        }
        let code = reference
            .and_then(|r| reference_type(self.defs, r))
            .unwrap_or(UNKNOWN_RESOURCE);
        Some(Item {
            value: item.value.clone(),
            ty: Ty::leaf(code),
        })
    }
}

/// The resource type named by a reference: `Patient/1`, `Patient/1/_history/2`,
/// `http://server/fhir/Patient/1`. `None` for `urn:uuid:...` and the like.
fn reference_type(defs: &'static Definitions, reference: &str) -> Option<&'static str> {
    let reference = reference.split(['?', '#']).next().unwrap_or(reference);
    let mut segments = reference.rsplit('/');
    let _id = segments.next()?;
    let mut name = segments.next()?;
    if name == "_history" {
        segments.next()?;
        name = segments.next()?;
    }
    defs.type_def(name)
        .filter(|t| t.kind == Kind::Resource && !t.is_abstract)
        .map(|t| t.name.as_str())
}

/// The type of a resource value, by its `resourceType`; `declared` (an abstract
/// `Resource`) or `Resource` when that is missing or unknown.
fn resource_ty(
    defs: &'static Definitions,
    value: &Value,
    declared: Option<&'static TypeDef>,
) -> Ty {
    let def = value
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(|name| defs.type_def(name))
        .filter(|t| t.kind == Kind::Resource)
        .or(declared)
        .or_else(|| defs.type_def("Resource"));
    match def {
        Some(def) => Ty {
            code: def.name.as_str(),
            def: Some(def),
            path: "",
        },
        None => Ty::leaf(UNKNOWN_RESOURCE),
    }
}

/// Appends the `name` children of `item` (arrays flattened, nulls skipped).
fn member<'a>(item: &Item<'a>, name: &str, out: &mut Vec<Item<'a>>) {
    let Some(def) = item.ty.def else { return };
    let path = item.ty.path;
    match &item.value {
        Cow::Borrowed(value) => children(def, path, value, name, &mut |v, ty| {
            out.push(Item {
                value: Cow::Borrowed(v),
                ty,
            })
        }),
        Cow::Owned(value) => children(def, path, value, name, &mut |v, ty| {
            out.push(Item {
                value: Cow::Owned(v.clone()),
                ty,
            })
        }),
    }
}

fn children<'v>(
    def: &'static TypeDef,
    parent: &'static str,
    value: &'v Value,
    name: &str,
    emit: &mut dyn FnMut(&'v Value, Ty),
) {
    let Value::Object(map) = value else { return };
    if let Some(child_value) = map.get(name) {
        if let Some(child) = def.child(parent, name) {
            each(def, child, child_value, emit);
        }
        return;
    }
    // A choice element: `value` is held by `valueQuantity`, `valueString`, ...
    for (key, child_value) in map {
        if key.len() > name.len()
            && key.starts_with(name)
            && key.as_bytes()[name.len()].is_ascii_uppercase()
            && let Some(child) = def.child(parent, key)
            && child.element.is_choice()
            && child.element.name() == name
        {
            each(def, child, child_value, emit);
        }
    }
}

fn each<'v>(
    def: &'static TypeDef,
    child: Child<'static>,
    value: &'v Value,
    emit: &mut dyn FnMut(&'v Value, Ty),
) {
    match value {
        Value::Array(values) => {
            for v in values {
                if !v.is_null() {
                    emit(v, child_ty(def, child, v));
                }
            }
        }
        Value::Null => {}
        v => emit(v, child_ty(def, child, v)),
    }
}

fn child_ty(def: &'static TypeDef, child: Child<'static>, value: &Value) -> Ty {
    let defs = Definitions::r4();
    let element = child.element;
    if let Some(target) = &element.content_ref {
        let code = def
            .element(target)
            .and_then(|e| e.types.first())
            .map_or("BackboneElement", String::as_str);
        return Ty {
            code,
            def: Some(def),
            path: target.as_str(),
        };
    }
    let Some(code) = child
        .type_code
        .or_else(|| element.types.first().map(String::as_str))
    else {
        return Ty::leaf("Element");
    };
    if code == "BackboneElement" || code == "Element" {
        return Ty {
            code,
            def: Some(def),
            path: element.path.as_str(),
        };
    }
    match defs.type_def(code) {
        Some(t) if t.kind == Kind::Resource => resource_ty(defs, value, Some(t)),
        Some(t) if t.kind == Kind::ComplexType => Ty {
            code: t.name.as_str(),
            def: Some(t),
            path: "",
        },
        _ => Ty::leaf(code),
    }
}

/// A collection as a boolean: empty -> `None`; a single boolean -> it; a single other
/// item -> true; several items -> `None`.
fn truth(items: &[Item<'_>]) -> Option<bool> {
    match items {
        [item] => Some(item.value.as_bool().unwrap_or(true)),
        _ => None,
    }
}

/// Union's duplicate test: the same borrowed value, or equal values.
fn same(a: &Value, b: &Value) -> bool {
    std::ptr::eq(a, b) || equal(a, b)
}

/// FHIRPath `=` on two values (numbers by value: `1 = 1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// FHIRPath `~`: strings ignoring case and runs of whitespace.
fn equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let mut x = x
                .split_whitespace()
                .flat_map(str::chars)
                .flat_map(char::to_lowercase);
            let mut y = y
                .split_whitespace()
                .flat_map(str::chars)
                .flat_map(char::to_lowercase);
            x.by_ref().eq(y.by_ref())
        }
        _ => equal(a, b),
    }
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compare(op: Op, left: &[&Value], right: &[&Value]) -> Option<bool> {
    match op {
        Op::Eq | Op::Ne => {
            if left.is_empty() || right.is_empty() {
                return None;
            }
            let eq = left.len() == right.len() && left.iter().zip(right).all(|(a, b)| equal(a, b));
            Some(eq == (op == Op::Eq))
        }
        Op::Equiv | Op::NotEquiv => {
            let eq =
                left.len() == right.len() && left.iter().zip(right).all(|(a, b)| equivalent(a, b));
            Some(eq == (op == Op::Equiv))
        }
        _ => {
            let ([a], [b]) = (left, right) else {
                return None;
            };
            let ordering = order(a, b)?;
            Some(match op {
                Op::Lt => ordering.is_lt(),
                Op::Gt => ordering.is_gt(),
                Op::Le => ordering.is_le(),
                _ => ordering.is_ge(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval<'a>(expr: &str, resource: &'a Value) -> Vec<Node<'a>> {
        Expression::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .evaluate(resource)
    }

    /// (type code, value) of each node.
    fn typed(expr: &str, resource: &Value) -> Vec<(&'static str, Value)> {
        eval(expr, resource)
            .into_iter()
            .map(|n| (n.type_code, n.value.into_owned()))
            .collect()
    }

    fn values(expr: &str, resource: &Value) -> Vec<Value> {
        eval(expr, resource)
            .into_iter()
            .map(|n| n.value.into_owned())
            .collect()
    }

    fn types(expr: &str, resource: &Value) -> Vec<&'static str> {
        eval(expr, resource)
            .into_iter()
            .map(|n| n.type_code)
            .collect()
    }

    /// The singleton boolean result, `None` for empty.
    fn boolean(expr: &str, resource: &Value) -> Option<bool> {
        match typed(expr, resource).as_slice() {
            [] => None,
            [("boolean", Value::Bool(b))] => Some(*b),
            other => panic!("{expr}: not a boolean: {other:?}"),
        }
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "pat1",
            "meta": {"tag": [{"system": "urn:tags", "code": "t1"}], "versionId": "2"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "extension": [
                {"url": "http://example.org/a", "valueString": "A"},
                {"url": "http://example.org/b", "valueCode": "B"}
            ],
            "identifier": [{"system": "urn:mrn", "value": "123"}],
            "name": [
                {"use": "official", "family": "Doe", "given": ["John", null, "Q"]},
                {"text": "Johnny"}
            ],
            "_name": null,
            "telecom": [
                {"system": "phone", "value": "555-1"},
                {"system": "email", "value": "j@example.org"},
                {"system": "phone", "value": "555-2"}
            ],
            "gender": "male",
            "birthDate": "1970-01-02",
            "_birthDate": {"extension": [{"url": "http://example.org/t", "valueTime": "10:00:00"}]},
            "contact": [{
                "name": {"family": "Roe"},
                "telecom": [{"system": "phone", "value": "555-9"}]
            }],
            "contained": [
                {"resourceType": "Practitioner", "id": "p1", "name": [{"family": "Inside"}]}
            ],
            "generalPractitioner": [
                {"reference": "#p1"},
                {"reference": "Practitioner/9/_history/2"},
                {"reference": "urn:uuid:0b8a1a5e-6f5e-4a8e-9e41-3a1b8c1a0d11"},
                {"display": "Dr. Nobody"},
                {"reference": "http://other.example/fhir/Organization/o7"}
            ],
            "managingOrganization": {"reference": "Organization/o1"}
        })
    }

    fn appointment() -> Value {
        json!({
            "resourceType": "Appointment",
            "status": "booked",
            "participant": [
                {"actor": {"reference": "Patient/123"}, "status": "accepted"},
                {"actor": {"reference": "Practitioner/5"}, "status": "accepted"},
                {"actor": {"reference": "Location/7"}, "status": "accepted"},
                {"actor": {"reference": "Patient/456/_history/3"}, "status": "tentative"},
                {"type": [{"text": "no actor"}], "status": "needs-action"}
            ]
        })
    }

    #[test]
    fn paths_and_types() {
        let p = patient();
        let names = eval("Patient.name", &p);
        assert_eq!(names.len(), 2);
        assert!(names.iter().all(|n| n.type_code == "HumanName"));
        assert!(matches!(names[0].value, Cow::Borrowed(_)));
        assert_eq!(names[0].value["family"], "Doe");
        // Arrays flatten, nulls are skipped.
        assert_eq!(
            typed("Patient.name.given", &p),
            [("string", json!("John")), ("string", json!("Q"))]
        );
        assert_eq!(typed("Patient.gender", &p), [("code", json!("male"))]);
        assert_eq!(typed("Patient.id", &p), [("id", json!("pat1"))]);
        // The `_birthDate` sibling is ignored.
        assert_eq!(
            typed("Patient.birthDate", &p),
            [("date", json!("1970-01-02"))]
        );
        assert_eq!(types("Patient.identifier", &p), ["Identifier"]);
        assert_eq!(types("Patient.managingOrganization", &p), ["Reference"]);
        assert_eq!(types("Patient.text.div", &p), ["xhtml"]);
        // Unknown and absent members yield nothing.
        assert!(eval("Patient.nope", &p).is_empty());
        assert!(eval("Patient.photo", &p).is_empty());
        assert!(eval("Patient.gender.nope", &p).is_empty());
        // A path may start at the resource's members.
        assert_eq!(values("identifier.value", &p), [json!("123")]);
    }

    #[test]
    fn backbone_elements() {
        let p = patient();
        assert_eq!(
            typed("Patient.contact.name.family", &p),
            [("string", json!("Roe"))]
        );
        assert_eq!(types("Patient.contact", &p), ["BackboneElement"]);
        assert_eq!(
            values("Patient.contact.telecom.where(system='phone').value", &p),
            [json!("555-9")]
        );
        let a = appointment();
        assert_eq!(
            types("Appointment.participant.type", &a),
            ["CodeableConcept"]
        );
        assert_eq!(types("Appointment.participant.status", &a).len(), 5);
    }

    #[test]
    fn content_reference() {
        let q = json!({
            "resourceType": "Questionnaire",
            "status": "active",
            "item": [{
                "linkId": "1", "type": "group",
                "item": [{"linkId": "1.1", "type": "string",
                          "item": [{"linkId": "1.1.1", "type": "display"}]}]
            }]
        });
        assert_eq!(
            typed("Questionnaire.item.item.linkId", &q),
            [("string", json!("1.1"))]
        );
        assert_eq!(
            values("Questionnaire.item.item.item.type", &q),
            [json!("display")]
        );
        assert_eq!(types("Questionnaire.item.item.item.type", &q), ["code"]);
    }

    #[test]
    fn where_on_telecom() {
        let p = patient();
        let phones = eval("Patient.telecom.where(system='phone')", &p);
        assert_eq!(phones.len(), 2);
        assert!(phones.iter().all(|n| n.type_code == "ContactPoint"));
        assert_eq!(phones[1].value["value"], "555-2");
        assert_eq!(
            values("Patient.telecom.where(system='email').value", &p),
            [json!("j@example.org")]
        );
        assert!(eval("Patient.telecom.where(system='fax')", &p).is_empty());
        assert_eq!(
            eval("Patient.telecom.where($this.system != 'phone')", &p).len(),
            1
        );
        assert_eq!(eval("Patient.telecom.where(true)", &p).len(), 3);
        assert!(eval("Patient.telecom.where({})", &p).is_empty());
    }

    #[test]
    fn resolve_is_patient() {
        let a = appointment();
        let patients = eval(
            "Appointment.participant.actor.where(resolve() is Patient)",
            &a,
        );
        assert_eq!(patients.len(), 2);
        assert!(patients.iter().all(|n| n.type_code == "Reference"));
        assert_eq!(patients[0].value["reference"], "Patient/123");
        assert_eq!(patients[1].value["reference"], "Patient/456/_history/3");
        let locations = eval(
            "Appointment.participant.actor.where(resolve() is Location)",
            &a,
        );
        assert_eq!(locations.len(), 1);
        assert_eq!(
            types("Appointment.participant.actor.resolve()", &a),
            ["Patient", "Practitioner", "Location", "Patient"]
        );
        // ofType on resolved targets, and `is` as a function.
        assert_eq!(
            eval(
                "Appointment.participant.actor.resolve().ofType(Patient)",
                &a
            )
            .len(),
            2
        );
        assert_eq!(
            eval(
                "Appointment.participant.actor.where(resolve().is(Practitioner))",
                &a
            )
            .len(),
            1
        );
        // Resolved external targets have no children.
        assert!(eval("Appointment.participant.actor.resolve().name", &a).is_empty());
    }

    #[test]
    fn resolve_reference_forms() {
        let p = patient();
        assert_eq!(
            types("Patient.generalPractitioner.resolve()", &p),
            [
                "Practitioner",
                "Practitioner",
                "Resource",
                "Resource",
                "Organization"
            ]
        );
        // `#p1` resolves to the contained resource itself.
        let contained = eval("Patient.generalPractitioner.resolve().name.family", &p);
        assert_eq!(contained.len(), 1);
        assert_eq!(contained[0].value, Cow::Owned::<Value>(json!("Inside")));
        assert_eq!(
            boolean("Patient.managingOrganization.resolve() is Organization", &p),
            Some(true)
        );
        assert_eq!(
            boolean("Patient.managingOrganization.resolve() is Patient", &p),
            Some(false)
        );
        assert_eq!(
            boolean(
                "Patient.managingOrganization.resolve() is DomainResource",
                &p
            ),
            Some(true)
        );
        let missing = json!({"resourceType": "Patient",
            "generalPractitioner": [{"reference": "#nope"}, {"reference": "Nope/1"}]});
        assert_eq!(
            types("Patient.generalPractitioner.resolve()", &missing),
            ["Resource", "Resource"]
        );
        // A reference to the container itself.
        let self_ref = json!({"resourceType": "Patient", "id": "x",
            "link": [{"other": {"reference": "#"}, "type": "seealso"}]});
        assert_eq!(
            types("Patient.link.other.resolve()", &self_ref),
            ["Patient"]
        );
    }

    #[test]
    fn reference_type_parsing() {
        let defs = Definitions::r4();
        assert_eq!(reference_type(defs, "Patient/123"), Some("Patient"));
        assert_eq!(
            reference_type(defs, "Patient/123/_history/2"),
            Some("Patient")
        );
        assert_eq!(
            reference_type(defs, "http://x.org/fhir/Patient/123"),
            Some("Patient")
        );
        assert_eq!(
            reference_type(defs, "http://x.org/fhir/Patient/123/_history/7"),
            Some("Patient")
        );
        assert_eq!(reference_type(defs, "urn:uuid:1234"), None);
        assert_eq!(reference_type(defs, "123"), None);
        assert_eq!(reference_type(defs, ""), None);
        assert_eq!(reference_type(defs, "/"), None);
        assert_eq!(reference_type(defs, "DomainResource/1"), None);
        assert_eq!(reference_type(defs, "HumanName/1"), None);
        assert_eq!(
            reference_type(defs, "http://hl7.org/fhir/ValueSet/x"),
            Some("ValueSet")
        );
    }

    #[test]
    fn deceased() {
        let expr = "Patient.deceased.exists() and Patient.deceased != false";
        let none = json!({"resourceType": "Patient"});
        let alive = json!({"resourceType": "Patient", "deceasedBoolean": false});
        let dead = json!({"resourceType": "Patient", "deceasedBoolean": true});
        let dated = json!({"resourceType": "Patient", "deceasedDateTime": "2020-03-04"});
        assert_eq!(boolean(expr, &none), Some(false));
        assert_eq!(boolean(expr, &alive), Some(false));
        assert_eq!(boolean(expr, &dead), Some(true));
        assert_eq!(boolean(expr, &dated), Some(true));
        assert_eq!(types("Patient.deceased", &dated), ["dateTime"]);
        assert_eq!(types("Patient.deceased", &dead), ["boolean"]);
        assert_eq!(
            values("(Patient.deceased.ofType(dateTime))", &dated),
            [json!("2020-03-04")]
        );
        assert!(eval("Patient.deceased.ofType(dateTime)", &dead).is_empty());
    }

    #[test]
    fn choice_and_as() {
        let quantity = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"},
            "valueQuantity": {"value": 5.4, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}});
        let string = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "valueString": "high", "_valueString": {"id": "v"}});
        let concept = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "valueCodeableConcept": {"text": "pos"}});
        assert_eq!(types("Observation.value", &quantity), ["Quantity"]);
        assert_eq!(
            typed("Observation.value", &string),
            [("string", json!("high"))]
        );
        assert_eq!(
            types("(Observation.value as Quantity)", &quantity),
            ["Quantity"]
        );
        assert!(eval("(Observation.value as Quantity)", &string).is_empty());
        assert_eq!(
            values("(Observation.value as Quantity).value", &quantity),
            [json!(5.4)]
        );
        assert_eq!(
            values("Observation.value.as(Quantity).unit", &quantity),
            [json!("mg")]
        );
        assert_eq!(
            types("Observation.value.ofType(Quantity)", &quantity),
            ["Quantity"]
        );
        assert_eq!(
            values("(Observation.value.ofType(CodeableConcept)).text", &concept),
            [json!("pos")]
        );
        assert_eq!(
            types("Observation.value.ofType(string)", &string),
            ["string"]
        );
        assert_eq!(
            types("Observation.value.ofType(System.String)", &string),
            ["string"]
        );
        assert_eq!(
            types("Observation.value.ofType(FHIR.string)", &string),
            ["string"]
        );
        assert_eq!(
            boolean("Observation.value is Quantity", &quantity),
            Some(true)
        );
        assert_eq!(
            boolean("Observation.value is Element", &quantity),
            Some(true)
        );
        assert!(eval("Observation.effective", &quantity).is_empty());
        // Age is a Quantity, but canonical is not a uri.
        let condition = json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
            "onsetAge": {"value": 40, "unit": "a"}});
        assert_eq!(types("Condition.onset.ofType(Age)", &condition), ["Age"]);
        assert_eq!(
            types("Condition.onset.ofType(Quantity)", &condition),
            ["Age"]
        );
        let map = json!({"resourceType": "ConceptMap", "status": "draft",
            "sourceCanonical": "http://x/ValueSet/a", "targetUri": "http://x/b"});
        assert!(eval("(ConceptMap.source.ofType(uri))", &map).is_empty());
        assert_eq!(
            types("(ConceptMap.source.ofType(canonical))", &map),
            ["canonical"]
        );
        assert_eq!(types("ConceptMap.target.ofType(uri)", &map), ["uri"]);
        // A component's `value.ofType(DateTime)` (System type name).
        let dt = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "valueDateTime": "2021"});
        assert_eq!(
            types("Observation.value.ofType(DateTime)", &dt),
            ["dateTime"]
        );
    }

    #[test]
    fn union_across_types() {
        let a = appointment();
        let actors = eval(
            "AllergyIntolerance.patient | Appointment.participant.actor",
            &a,
        );
        assert_eq!(actors.len(), 4);
        assert!(actors.iter().all(|n| n.type_code == "Reference"));
        let p = patient();
        assert!(
            eval(
                "AllergyIntolerance.patient | Appointment.participant.actor",
                &p
            )
            .is_empty()
        );
        assert_eq!(
            values(
                "Patient.telecom.where(system='phone').value | Patient.gender",
                &p
            ),
            [json!("555-1"), json!("555-2"), json!("male")]
        );
        // Duplicates are removed.
        assert_eq!(eval("Patient.name | Patient.name", &p).len(), 2);
        assert_eq!(values("'a' | 'b' | 'a'", &p), [json!("a"), json!("b")]);
        // Large unions skip the pairwise comparison, but still drop the same value twice.
        let many: Vec<Value> = (0..100).map(|i| json!({"value": i % 10})).collect();
        let big = json!({"resourceType": "Patient", "identifier": many});
        assert_eq!(
            eval("Patient.identifier | Patient.identifier", &big).len(),
            100
        );
        assert_eq!(
            eval("Patient.identifier.first() | Patient.identifier", &big).len(),
            100
        );
        let location = json!({"resourceType": "Location", "name": "Ward", "alias": ["W1", "W2"]});
        assert_eq!(
            values("Location.name | Location.alias", &location),
            [json!("Ward"), json!("W1"), json!("W2")]
        );
        let plan = json!({"resourceType": "InsurancePlan", "name": "Gold", "alias": ["G"]});
        assert_eq!(values("name | alias", &plan), [json!("Gold"), json!("G")]);
    }

    #[test]
    fn resource_and_domain_resource() {
        let p = patient();
        let tags = eval("Resource.meta.tag", &p);
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].type_code, "Coding");
        assert_eq!(tags[0].value["code"], "t1");
        assert_eq!(typed("Resource.id", &p), [("id", json!("pat1"))]);
        assert_eq!(types("DomainResource.text", &p), ["Narrative"]);
        assert_eq!(typed("Resource.meta.versionId", &p), [("id", json!("2"))]);
        assert_eq!(types("Patient", &p), ["Patient"]);
        assert!(eval("Observation", &p).is_empty());
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "id": "b"});
        assert_eq!(values("Resource.id", &bundle), [json!("b")]);
        assert!(eval("DomainResource.text", &bundle).is_empty());
        assert_eq!(values("%resource.id", &p), [json!("pat1")]);
    }

    #[test]
    fn resources_inside_resources() {
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Composition", "status": "final", "title": "T"}},
            {"resource": {"resourceType": "Patient", "name": [{"family": "B"}]}},
            {"resource": {"resourceType": "Unheard", "x": 1}}
        ]});
        assert_eq!(
            types("Bundle.entry.resource", &bundle),
            ["Composition", "Patient", "Resource"]
        );
        assert_eq!(types("Bundle.entry[0].resource", &bundle), ["Composition"]);
        assert_eq!(
            values("Bundle.entry[0].resource.title", &bundle),
            [json!("T")]
        );
        assert!(eval("Bundle.entry[7].resource", &bundle).is_empty());
        assert_eq!(
            values("Bundle.entry.resource.ofType(Patient).name.family", &bundle),
            [json!("B")]
        );
        assert_eq!(
            types("Bundle.entry.resource.ofType(Resource)", &bundle).len(),
            3
        );
        let p = patient();
        assert_eq!(types("Patient.contained", &p), ["Practitioner"]);
        assert_eq!(
            values("Patient.contained.name.family", &p),
            [json!("Inside")]
        );
    }

    #[test]
    fn extensions() {
        let p = patient();
        assert_eq!(
            typed("Patient.extension('http://example.org/b').value", &p),
            [("code", json!("B"))]
        );
        assert_eq!(types("Patient.extension", &p), ["Extension", "Extension"]);
        assert!(eval("Patient.extension('http://example.org/none')", &p).is_empty());
        assert_eq!(
            values(
                "Patient.extension.where(url = 'http://example.org/a').value",
                &p
            ),
            [json!("A")]
        );
    }

    #[test]
    fn functions() {
        let p = patient();
        assert_eq!(values("Patient.name.given.first()", &p), [json!("John")]);
        assert_eq!(values("Patient.name.given.last()", &p), [json!("Q")]);
        assert_eq!(values("Patient.telecom.count()", &p), [json!(3)]);
        assert_eq!(boolean("Patient.photo.empty()", &p), Some(true));
        assert_eq!(boolean("Patient.name.empty()", &p), Some(false));
        assert_eq!(boolean("Patient.name.exists()", &p), Some(true));
        assert_eq!(
            boolean("Patient.telecom.exists(system = 'email')", &p),
            Some(true)
        );
        assert_eq!(
            boolean("Patient.telecom.exists(system = 'fax')", &p),
            Some(false)
        );
        assert_eq!(boolean("Patient.active.exists().not()", &p), Some(true));
        assert_eq!(boolean("Patient.active.not()", &p), None);
        assert_eq!(boolean("Patient.gender.hasValue()", &p), Some(true));
        assert_eq!(boolean("Patient.name.hasValue()", &p), Some(false));
        assert_eq!(
            values("Patient.telecom.select(value)", &p),
            [json!("555-1"), json!("j@example.org"), json!("555-2")]
        );
        assert_eq!(
            types("Patient.telecom.where(system = 'phone').first()", &p),
            ["ContactPoint"]
        );
    }

    #[test]
    fn logic_and_equality() {
        let p = patient();
        let cases: &[(&str, Option<bool>)] = &[
            ("1 = 1.0", Some(true)),
            ("1 = 2", Some(false)),
            ("'a' != 'b'", Some(true)),
            ("'a' = {}", None),
            ("{} != 'a'", None),
            ("true and {}", None),
            ("false and {}", Some(false)),
            ("true or {}", Some(true)),
            ("{} or false", None),
            ("true xor false", Some(true)),
            ("false implies {}", Some(true)),
            ("{} implies true", Some(true)),
            ("'Abc  d' ~ 'abc d'", Some(true)),
            ("{} ~ {}", Some(true)),
            ("'a' !~ 'b'", Some(true)),
            ("2 > 1", Some(true)),
            ("-2 >= 1", Some(false)),
            ("'b' <= 'a'", Some(false)),
            ("1 < 'a'", None),
            ("Patient.gender = 'male'", Some(true)),
            ("Patient.gender = 'female'", Some(false)),
            ("Patient.name.given = 'John'", Some(false)),
            ("Patient.telecom.system = 'phone' | 'email'", Some(false)),
            (
                "Patient.gender = 'male' and Patient.birthDate = '1970-01-02'",
                Some(true),
            ),
            (
                "(Patient.gender = 'female') or Patient.id = 'pat1'",
                Some(true),
            ),
            ("Patient.gender is code", Some(true)),
            ("Patient.gender is string", Some(false)),
            ("Patient is FHIR.Patient", Some(true)),
            ("Patient.name.given.first() is System.String", Some(true)),
            ("Patient.name is HumanName", None),
            ("Patient.deceased != false", None),
        ];
        for (expr, expected) in cases {
            assert_eq!(boolean(expr, &p), *expected, "{expr}");
        }
    }

    #[test]
    fn composite_components() {
        let obs = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": [
            {"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": 120}},
            {"code": {"coding": [{"code": "8462-4"}]}, "valueString": "n/a"}
        ]});
        let base = Expression::parse("Observation | Observation.component").unwrap();
        let parts = [
            Expression::parse("code").unwrap(),
            Expression::parse("value.ofType(Quantity)").unwrap(),
            Expression::parse("%resource.status").unwrap(),
        ];
        let result = base.evaluate_composite(&obs, &parts);
        assert_eq!(result.len(), 3);
        assert_eq!(result[0][0][0].type_code, "CodeableConcept");
        assert!(result[0][1].is_empty());
        assert_eq!(result[1][0][0].type_code, "CodeableConcept");
        assert_eq!(result[1][1][0].type_code, "Quantity");
        assert_eq!(result[1][1][0].value["value"], 120);
        assert!(result[2][1].is_empty());
        assert_eq!(result[2][2][0].value.as_ref(), &json!("final"));
    }

    #[test]
    fn parse_errors() {
        let cases = [
            ("Patient.name.iif(true, 1, 2)", "position 13"),
            ("Patient.birthDate > @2020", "position 20"),
            ("Patient.name.where(", "position 19"),
            ("(Patient.name", "position 13"),
            ("Patient.name)", "position 12"),
            ("Patient..name", "position 8"),
            ("1 + 2", "position 2"),
            ("Patient.name in Patient.name", "position 13"),
            ("'unterminated", "position 0"),
            ("Patient.name #", "position 13"),
            ("%vs-x", "position 0"),
            ("$index", "position 0"),
            ("Patient.entry[Patient.x]", "position 14"),
            ("Patient.extension(url)", "position 18"),
            ("", "position 0"),
        ];
        for (expr, position) in cases {
            let err = Expression::parse(expr).expect_err(expr);
            assert!(err.contains(position), "{expr}: {err}");
        }
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(Expression::parse(&deep).unwrap_err().contains("deeper"));
        let nested = format!("{}true{}", "Patient.where(".repeat(40), ")".repeat(40));
        assert!(Expression::parse(&nested).is_err());
        let long = vec!["Patient.name"; 200].join(" | ");
        assert!(Expression::parse(&long).is_err());
        let chain = format!("Patient{}", ".name".repeat(100));
        assert!(Expression::parse(&chain).is_err());
        assert!(Expression::parse(&"(".repeat(100_000)).is_err());
        // Comments, backticks, escapes.
        let p = patient();
        assert_eq!(
            values("Patient.`gender` // the gender\n /* block */", &p),
            [json!("male")]
        );
        assert_eq!(values(r"'it\'s \u00e9'", &p), [json!("it's \u{e9}")]);
    }

    #[test]
    fn odd_resources_do_not_panic() {
        let exprs = [
            "Patient.name.given",
            "Resource.meta.tag",
            "Patient.generalPractitioner.resolve()",
            "Patient.link.other.where(resolve() is Patient)",
            "Patient.deceased.exists() and Patient.deceased != false",
        ];
        let odd = [
            json!(null),
            json!("Patient"),
            json!([1, 2]),
            json!({}),
            json!({"resourceType": 7}),
            json!({"resourceType": "Patient", "name": "not an array", "contained": {"id": 1},
                   "generalPractitioner": [7, null, {"reference": 5}, {"reference": "#"}],
                   "link": {"other": [{"reference": "Patient/1"}]},
                   "deceasedBoolean": null, "deceasedDateTime": "2020"}),
        ];
        for resource in &odd {
            for expr in exprs {
                let _ = eval(expr, resource);
            }
        }
    }

    /// The types an expression can yield, found from the definitions alone; records the
    /// member steps that match no element of any focus type.
    fn static_types(ast: &Ast, focus: &[Ty], unknown: &mut Vec<String>) -> Vec<Ty> {
        let env = Env::new(&Value::Null);
        match ast {
            Ast::Empty => vec![],
            Ast::Literal(_, code) => vec![Ty::leaf(code)],
            Ast::This => focus.to_vec(),
            Ast::Resource => focus.to_vec(),
            Ast::Ident(name) if name.starts_with(|c: char| c.is_ascii_uppercase()) => focus
                .iter()
                .filter(|t| env.is_type(t.code, name))
                .copied()
                .collect(),
            Ast::Ident(name) => member_types(focus, name, unknown),
            Ast::Member(base, name) => {
                let base = static_types(base, focus, unknown);
                member_types(&base, name, unknown)
            }
            Ast::Index(base, _) => static_types(base, focus, unknown),
            Ast::Call(target, func) => {
                let input = match target {
                    Some(t) => static_types(t, focus, unknown),
                    None => focus.to_vec(),
                };
                call_types(func, input, &env, unknown)
            }
            Ast::Binary(Op::Union, l, r) => {
                let mut out = static_types(l, focus, unknown);
                out.extend(static_types(r, focus, unknown));
                out
            }
            Ast::Binary(_, l, r) => {
                static_types(l, focus, unknown);
                static_types(r, focus, unknown);
                vec![Ty::leaf("boolean")]
            }
            Ast::Is(base, _) => {
                static_types(base, focus, unknown);
                vec![Ty::leaf("boolean")]
            }
            Ast::As(base, t) => static_types(base, focus, unknown)
                .into_iter()
                .filter(|i| env.is_type(i.code, &t.0))
                .collect(),
        }
    }

    /// The types of the `name` children of the focus types (each variant of a choice);
    /// records the step when no focus type with definitions has such a child.
    fn member_types(focus: &[Ty], name: &str, unknown: &mut Vec<String>) -> Vec<Ty> {
        let mut out = Vec::new();
        for ty in focus {
            let Some(def) = ty.def else { continue };
            let Some(element) = def.children_of(ty.path).find(|e| e.name() == name) else {
                continue;
            };
            let keys: Vec<String> = if element.is_choice() {
                element
                    .types
                    .iter()
                    .map(|t| format!("{name}{}", crate::defs::upper_first(t)))
                    .collect()
            } else {
                vec![name.to_owned()]
            };
            for key in keys {
                let child = def.child(ty.path, &key).unwrap();
                out.push(child_ty(def, child, &Value::Null));
            }
        }
        if out.is_empty() && !focus.is_empty() && focus.iter().any(|t| t.def.is_some()) {
            let names: Vec<&str> = focus.iter().map(|t| t.code).collect();
            unknown.push(format!("{name} on {names:?}"));
        }
        out
    }

    /// The types a function yields on `input`, checking the expressions it takes on the
    /// way.
    fn call_types(func: &Func, input: Vec<Ty>, env: &Env, unknown: &mut Vec<String>) -> Vec<Ty> {
        match func {
            Func::Where(c) => {
                for ty in &input {
                    static_types(c, std::slice::from_ref(ty), unknown);
                }
                input
            }
            Func::Select(c) => input
                .iter()
                .flat_map(|ty| static_types(c, std::slice::from_ref(ty), unknown))
                .collect(),
            Func::Resolve => {
                let defs = Definitions::r4();
                defs.resource_types()
                    .iter()
                    .map(|t| Ty::leaf(defs.type_def(t).unwrap().name.as_str()))
                    .collect()
            }
            Func::OfType(t) => {
                let out: Vec<Ty> = input
                    .iter()
                    .filter(|i| env.is_type(i.code, &t.0))
                    .copied()
                    .collect();
                if out.is_empty() && !input.is_empty() {
                    unknown.push(format!(
                        "ofType({}) on {:?}",
                        t.0,
                        input.iter().map(|t| t.code).collect::<Vec<_>>()
                    ));
                }
                out
            }
            Func::First | Func::Last => input,
            Func::Extension(_) => member_types(&input, "extension", unknown),
            _ => vec![Ty::leaf("boolean")],
        }
    }

    /// Every element step of every search parameter expression names an element of the
    /// types it applies to (so the evaluator's typed navigation can find it).
    #[test]
    fn search_parameter_paths_resolve() {
        let defs = Definitions::r4();
        let params: Vec<Value> =
            serde_json::from_str(include_str!("../../conformance/r4/search-parameters.json"))
                .unwrap();
        let mut problems = Vec::new();
        for param in &params {
            let Some(text) = param["expression"].as_str() else {
                continue;
            };
            let expr = Expression::parse(text).unwrap();
            let mut result_types = Vec::new();
            for base in param["base"].as_array().unwrap() {
                let base = base.as_str().unwrap();
                let bases: Vec<&str> = if base == "Resource" || base == "DomainResource" {
                    vec!["Patient"]
                } else {
                    vec![base]
                };
                for b in bases {
                    let ty = resource_ty(defs, &json!({"resourceType": b}), None);
                    let mut unknown = Vec::new();
                    let out = static_types(&expr.ast, &[ty], &mut unknown);
                    result_types.extend(out.iter().map(|t| t.code));
                    for u in unknown {
                        problems.push(format!("{}: {text}: {u}", param["url"]));
                    }
                }
            }
            if result_types.is_empty() {
                problems.push(format!("{}: {text}: yields nothing", param["url"]));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
        // The check itself finds misspelt steps.
        let mut unknown = Vec::new();
        let patient = resource_ty(defs, &json!({"resourceType": "Patient"}), None);
        let bad = Expression::parse("Patient.contact.nmae | Patient.deceased.ofType(Quantity)");
        static_types(&bad.unwrap().ast, &[patient], &mut unknown);
        assert_eq!(unknown.len(), 2, "{unknown:?}");
    }

    /// The resource types the server's first release indexes.
    const SERVED: [&str; 21] = [
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
        "Resource",
        "DomainResource",
    ];

    #[test]
    fn parses_search_parameter_expressions() {
        let params: Vec<Value> =
            serde_json::from_str(include_str!("../../conformance/r4/search-parameters.json"))
                .unwrap();
        assert_eq!(params.len(), 1377);
        let (mut total, mut parsed, mut served) = (0, 0, 0);
        let mut failures = Vec::new();
        for param in &params {
            let bases: Vec<&str> = param["base"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let mut expressions: Vec<&str> = param["expression"].as_str().into_iter().collect();
            for component in param["component"].as_array().into_iter().flatten() {
                expressions.extend(component["expression"].as_str());
            }
            for text in expressions {
                total += 1;
                let is_served = bases.iter().any(|b| SERVED.contains(b));
                served += usize::from(is_served);
                match Expression::parse(text) {
                    Ok(expr) => {
                        parsed += 1;
                        // Evaluating over a bare resource of each base never panics.
                        for base in &bases {
                            let _ = expr.evaluate(&json!({"resourceType": base}));
                        }
                    }
                    Err(e) => failures.push(format!("{}: {text}: {e}", param["url"])),
                }
                if is_served {
                    assert!(Expression::parse(text).is_ok(), "{}: {text}", param["url"]);
                }
            }
        }
        println!("parsed {parsed} of {total} expressions ({served} of served types)");
        for failure in &failures {
            println!("  {failure}");
        }
        assert_eq!(parsed, total, "{failures:#?}");
    }
}
