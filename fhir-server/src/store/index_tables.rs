//! The search-index tables, each described once: its name, its value columns, how a row
//! extracted by `index` fills them, and the order of its lookup index. The SQLite writer
//! (`sqlite::insert_index`) and the PostgreSQL one (`pg_put::push_index_inserts`) build
//! their statements from these descriptions, so a column added to a table is added here,
//! and in the migrations, and nowhere else.
//!
//! Every table also has `res_id`, `key` (the parameter's key, see `index::key`) and `tid`,
//! which the writers fill themselves.

use std::cmp::Ordering;

use crate::index::{
    DateRow, IndexRows, NumberRow, QuantityRow, RefDateRow, ReferenceRow, StringRow, TokenRow,
    UriRow,
};

/// One value of an index row, as both databases bind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'r> {
    Int(i64),
    /// A small integer (a part number, a flag): `int2` in PostgreSQL.
    Small(i16),
    Float(f64),
    Text(&'r str),
    /// A text that may be absent (SQL NULL).
    OptionalText(Option<&'r str>),
}

/// A table of the search index, and the row type that goes in it.
pub trait IndexTable: Sized {
    /// The table's name (one of `INDEX_TABLES`).
    const NAME: &'static str;
    /// The value columns, in the order of [`IndexTable::cells`].
    const COLUMNS: &'static [&'static str];
    /// This table's rows of a resource.
    fn rows(index: &IndexRows) -> &[Self];
    /// The parameter the row is a value of.
    fn param(&self) -> &str;
    /// The row's value of column `column` of `COLUMNS` (`column < COLUMNS.len()`; the last
    /// column answers any larger number). One at a time, so that no row needs a vector.
    fn cell(&self, column: usize) -> Cell<'_>;
    /// The order of the table's lookup index after the key (its value columns), so that a
    /// batch is inserted walking the b-tree once (see `sqlite::insert_index`).
    fn lookup_order(&self, other: &Self) -> Ordering;
}

impl IndexTable for TokenRow {
    const NAME: &'static str = "idx_token";
    const COLUMNS: &'static [&'static str] = &["system", "code"];
    fn rows(index: &IndexRows) -> &[Self] {
        &index.tokens
    }
    fn param(&self) -> &str {
        &self.param
    }
    fn cell(&self, column: usize) -> Cell<'_> {
        match column {
            0 => Cell::Text(&self.system),
            _ => Cell::Text(&self.code),
        }
    }
    fn lookup_order(&self, other: &Self) -> Ordering {
        (&self.code, &self.system).cmp(&(&other.code, &other.system))
    }
}

impl IndexTable for StringRow {
    const NAME: &'static str = "idx_string";
    const COLUMNS: &'static [&'static str] = &["part", "value_norm", "value_exact", "value_long"];
    fn rows(index: &IndexRows) -> &[Self] {
        &index.strings
    }
    fn param(&self) -> &str {
        &self.param
    }
    fn cell(&self, column: usize) -> Cell<'_> {
        match column {
            0 => Cell::Small(i16::from(self.part)),
            1 => Cell::Text(&self.norm),
            2 => Cell::Text(&self.exact),
            _ => Cell::OptionalText(self.long.as_deref()),
        }
    }
    fn lookup_order(&self, other: &Self) -> Ordering {
        (&self.norm, self.part).cmp(&(&other.norm, other.part))
    }
}

impl IndexTable for DateRow {
    const NAME: &'static str = "idx_date";
    const COLUMNS: &'static [&'static str] = &["low", "high", "short"];
    fn rows(index: &IndexRows) -> &[Self] {
        &index.dates
    }
    fn param(&self) -> &str {
        &self.param
    }
    fn cell(&self, column: usize) -> Cell<'_> {
        match column {
            0 => Cell::Int(self.low),
            1 => Cell::Int(self.high),
            _ => Cell::Small(i16::from(self.is_short())),
        }
    }
    fn lookup_order(&self, other: &Self) -> Ordering {
        (self.is_short(), self.low, self.high).cmp(&(other.is_short(), other.low, other.high))
    }
}

impl IndexTable for ReferenceRow {
    const NAME: &'static str = "idx_reference";
    const COLUMNS: &'static [&'static str] = &["target_type", "target_id", "url"];
    fn rows(index: &IndexRows) -> &[Self] {
        &index.references
    }
    fn param(&self) -> &str {
        &self.param
    }
    fn cell(&self, column: usize) -> Cell<'_> {
        match column {
            0 => Cell::Text(&self.target_type),
            1 => Cell::Text(&self.target_id),
            _ => Cell::Text(&self.url),
        }
    }
    fn lookup_order(&self, other: &Self) -> Ordering {
        (&self.target_id, &self.target_type, &self.url).cmp(&(
            &other.target_id,
            &other.target_type,
            &other.url,
        ))
    }
}

impl IndexTable for NumberRow {
    const NAME: &'static str = "idx_number";
    const COLUMNS: &'static [&'static str] = &["value"];
    fn rows(index: &IndexRows) -> &[Self] {
        &index.numbers
    }
    fn param(&self) -> &str {
        &self.param
    }
    fn cell(&self, _column: usize) -> Cell<'_> {
        Cell::Float(self.value)
    }
    fn lookup_order(&self, other: &Self) -> Ordering {
        self.value.total_cmp(&other.value)
    }
}

impl IndexTable for QuantityRow {
    const NAME: &'static str = "idx_quantity";
    const COLUMNS: &'static [&'static str] = &["value", "system", "code"];
    fn rows(index: &IndexRows) -> &[Self] {
        &index.quantities
    }
    fn param(&self) -> &str {
        &self.param
    }
    fn cell(&self, column: usize) -> Cell<'_> {
        match column {
            0 => Cell::Float(self.value),
            1 => Cell::Text(&self.system),
            _ => Cell::Text(&self.code),
        }
    }
    fn lookup_order(&self, other: &Self) -> Ordering {
        self.value.total_cmp(&other.value)
    }
}

impl IndexTable for UriRow {
    const NAME: &'static str = "idx_uri";
    const COLUMNS: &'static [&'static str] = &["value"];
    fn rows(index: &IndexRows) -> &[Self] {
        &index.uris
    }
    fn param(&self) -> &str {
        &self.param
    }
    fn cell(&self, _column: usize) -> Cell<'_> {
        Cell::Text(&self.value)
    }
    fn lookup_order(&self, other: &Self) -> Ordering {
        self.value.cmp(&other.value)
    }
}

impl IndexTable for RefDateRow {
    const NAME: &'static str = "idx_ref_date";
    const COLUMNS: &'static [&'static str] = &["target_type", "target_id", "low", "high", "short"];
    fn rows(index: &IndexRows) -> &[Self] {
        &index.ref_dates
    }
    fn param(&self) -> &str {
        &self.param
    }
    fn cell(&self, column: usize) -> Cell<'_> {
        match column {
            0 => Cell::Text(&self.target_type),
            1 => Cell::Text(&self.target_id),
            2 => Cell::Int(self.low),
            3 => Cell::Int(self.high),
            _ => Cell::Small(i16::from(self.is_short())),
        }
    }
    fn lookup_order(&self, other: &Self) -> Ordering {
        (&self.target_id, &self.target_type, self.low).cmp(&(
            &other.target_id,
            &other.target_type,
            other.low,
        ))
    }
}

/// Calls `each` with every index table, in the order of `INDEX_TABLES`: the one list of
/// the tables that both writers walk.
pub trait EachTable {
    type Error;
    fn table<T: IndexTable>(&mut self) -> Result<(), Self::Error>;
}

pub fn each_table<E: EachTable>(each: &mut E) -> Result<(), E::Error> {
    each.table::<TokenRow>()?;
    each.table::<StringRow>()?;
    each.table::<DateRow>()?;
    each.table::<ReferenceRow>()?;
    each.table::<NumberRow>()?;
    each.table::<QuantityRow>()?;
    each.table::<UriRow>()?;
    each.table::<RefDateRow>()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names(Vec<&'static str>);

    impl EachTable for Names {
        type Error = ();
        fn table<T: IndexTable>(&mut self) -> Result<(), ()> {
            self.0.push(T::NAME);
            Ok(())
        }
    }

    /// Every table of the schema is described, once.
    #[test]
    fn every_index_table_is_described() {
        let mut names = Names(Vec::new());
        each_table(&mut names).unwrap();
        assert_eq!(names.0, super::super::INDEX_TABLES);
    }
}
