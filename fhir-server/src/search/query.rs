//! A parsed search: what to match (clauses), how to order and page it, and what to add
//! to the answer. Built by `parse`, turned into SQL by `sql`.

use super::cursor::Cursor;

/// The index table a condition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    String,
    Token,
    Date,
    Reference,
    Number,
    Quantity,
    Uri,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::String => "idx_string",
            Table::Token => "idx_token",
            Table::Date => "idx_date",
            Table::Reference => "idx_reference",
            Table::Number => "idx_number",
            Table::Quantity => "idx_quantity",
            Table::Uri => "idx_uri",
        }
    }
}

/// A comparison prefix of number, date and quantity searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// A date search value: its prefix and the range it covers, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateBound {
    pub prefix: Prefix,
    pub low: i64,
    pub high: i64,
}

/// One value test on one index row.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Normalized value starts with (the default string search).
    StringPrefix(String),
    StringExact(String),
    /// Normalized value contains.
    StringContains(String),
    /// `None` system: any; `Some("")`: none. `None` code: any (`system|`).
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    /// The row's range against every bound (several when `date=ge..&date=lt..` were merged
    /// into one window on the same row).
    Date(Vec<DateBound>),
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        url: Option<String>,
    },
    /// The value against the search value and its implicit precision range.
    Number {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
    },
    Quantity {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    UriEquals(String),
    /// The stored uri starts with the value (`:below`).
    UriBelow(String),
    /// The value starts with the stored uri (`:above`).
    UriAbove(String),
}

/// One criterion. The clauses of a query are AND-ed; the alternatives within one are OR-ed.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// `_id`: the logical id is one of these.
    Id(Vec<String>),
    /// `_lastUpdated`: the version time against each alternative (OR).
    LastUpdated(Vec<Condition>),
    /// A row of `param` in `table` meets one of `any`; `negate` for `:not`.
    Index {
        table: Table,
        param: String,
        any: Vec<Condition>,
        negate: bool,
    },
    /// `:missing`: whether the resource has no row of `param` in `table`.
    Missing {
        table: Table,
        param: String,
        missing: bool,
    },
    /// A chained search: `param` references a resource of one of the target types that
    /// meets all of that type's clauses.
    Chain {
        param: String,
        targets: Vec<(String, Vec<Clause>)>,
    },
    /// `_has`: some `source_type` resource references this one through `param` and meets
    /// `clauses`.
    Has {
        source_type: String,
        param: String,
        clauses: Vec<Clause>,
    },
    /// Any of these clauses (compartment membership through several parameters).
    AnyOf(Vec<Clause>),
}

/// How entries are ordered by one `_sort` key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub kind: SortKind,
    pub descending: bool,
}

/// What a sort key reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKind {
    Id,
    LastUpdated,
    /// The lowest (or, descending, highest) value of `param` in `table`.
    Index {
        table: Table,
        param: String,
    },
}

/// `_include` or `_revinclude`: follow `param` of `source_type` resources (optionally only
/// to `target_type`).
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source_type: String,
    pub param: String,
    pub target_type: Option<String>,
    pub iterate: bool,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Total {
    /// Not asked: counted, as with `accurate`.
    #[default]
    Default,
    None,
    Estimate,
    Accurate,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Summary {
    #[default]
    False,
    True,
    Text,
    Data,
    Count,
}

impl Summary {
    /// A `_summary` value; the error says what it may be.
    pub fn parse(value: &str) -> Result<Summary, String> {
        Ok(match value {
            "true" => Summary::True,
            "false" => Summary::False,
            "text" => Summary::Text,
            "data" => Summary::Data,
            "count" => Summary::Count,
            _ => {
                return Err(format!(
                    "Invalid _summary '{value}': true, text, data, count or false"
                ));
            }
        })
    }
}

/// An `_elements` value: the element names it lists.
pub fn parse_elements(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A parsed search on one resource type.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub resource_type: String,
    pub clauses: Vec<Clause>,
    /// The parameters applied, for the self link, in request order.
    pub applied: Vec<(String, String)>,
    pub count: Option<usize>,
    pub cursor: Option<Cursor>,
    pub sort: Vec<SortKey>,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    pub total: Total,
    pub summary: Summary,
    pub elements: Option<Vec<String>>,
}

/// Page sizes: the default when `_count` is absent, and the largest granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    pub default_count: usize,
    pub max_count: usize,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits {
            default_count: 50,
            max_count: 1000,
        }
    }
}

impl Query {
    /// The page size to use: `_count`, or the default, at most the maximum.
    pub fn page_size(&self, limits: PageLimits) -> usize {
        self.count
            .unwrap_or(limits.default_count)
            .min(limits.max_count)
    }
}
