//! Records as the recorder gathers them and the store appends them: each record laid out
//! once, as it is sealed (`audit::push_seal_tail`: every field length-prefixed), one after
//! another in one buffer.
//!
//! The recorder held each read's record as an [`Entry`] until its batch was appended, a
//! second or so later: eight small heap blocks a record (the agent and its strings, the
//! event, the entity, the patients), some 600 bytes. Laid out here, a record is one
//! stretch of about 250 bytes of a buffer reused from batch to batch, and its `Entry` is
//! freed by the request that made it. The store seals these bytes as they are (no second
//! layout per record) and binds its columns from [`View`]s of them, nothing copied back
//! into strings. Measured (2026-12-07): the server's resident memory after a read run
//! 4 MB lower; CPU per read unchanged (two servers side by side on one core, within
//! ±0.3 µs); the writer's time per record unchanged.

use super::audit::{Entry, action_of, push_seal_tail};

/// Records laid out one after another.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    /// Where each record ends in `bytes`.
    ends: Vec<usize>,
}

/// Bytes a record usually takes (a read's: an address, a user agent, a request id, an
/// entity, a patient).
const RECORD_BYTES: usize = 256;

impl Batch {
    /// Room for `records` records without growing.
    pub fn with_capacity(records: usize) -> Batch {
        Batch {
            bytes: Vec::with_capacity(records * RECORD_BYTES),
            ends: Vec::with_capacity(records),
        }
    }

    /// `entries`, laid out.
    pub fn of(entries: &[Entry]) -> Batch {
        let mut batch = Batch::with_capacity(entries.len());
        for entry in entries {
            batch.push(entry);
        }
        batch
    }

    /// Lays out one more record.
    pub fn push(&mut self, entry: &Entry) {
        push_seal_tail(&mut self.bytes, entry);
        self.ends.push(self.bytes.len());
    }

    /// Copies record `n` of `other` to the end of this batch.
    pub fn push_from(&mut self, other: &Batch, n: usize) {
        self.bytes.extend_from_slice(other.tail(n));
        self.ends.push(self.bytes.len());
    }

    /// Moves the records of `other` to the end of this batch.
    pub fn append(&mut self, other: &mut Batch) {
        let offset = self.bytes.len();
        self.bytes.append(&mut other.bytes);
        self.ends
            .extend(other.ends.drain(..).map(|end| end + offset));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Records the batch has room for.
    pub fn capacity(&self) -> usize {
        self.ends.capacity()
    }

    /// Whether the batch holds memory for more than `records` usual records (after an
    /// outage, or a burst of long queries).
    pub fn is_larger_than(&self, records: usize) -> bool {
        self.ends.capacity() > records || self.bytes.capacity() > records * RECORD_BYTES
    }

    /// Record `n` as it is sealed after its `prev`, tenant and number.
    pub fn tail(&self, n: usize) -> &[u8] {
        let start = if n == 0 { 0 } else { self.ends[n - 1] };
        &self.bytes[start..self.ends[n]]
    }

    /// Record `n`'s fields.
    pub fn view(&self, n: usize) -> View<'_> {
        View::of(self.tail(n))
    }

    /// Every record's fields, in order.
    pub fn views(&self) -> impl Iterator<Item = View<'_>> + '_ {
        (0..self.len()).map(|n| self.view(n))
    }
}

/// One record's fields, borrowed from its bytes in a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct View<'a> {
    pub recorded: i64,
    pub status: u16,
    pub event: &'a str,
    pub action: &'static str,
    pub user: Option<&'a str>,
    pub fhir_user: Option<&'a str>,
    pub client: Option<&'a str>,
    pub token: Option<&'a str>,
    pub address: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub entity: Option<&'a str>,
    pub query: Option<&'a str>,
    pub via: Option<&'a str>,
    /// The patients, space-separated, as stored (None without any).
    pub patients: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub purpose: Option<&'a str>,
    pub reason: Option<&'a str>,
}

impl<'a> View<'a> {
    /// The fields of `tail`, which [`Batch::push`] laid out (so every field is there and
    /// is text: a short or foreign buffer reads as empty fields, never a panic).
    pub(super) fn of(tail: &'a [u8]) -> View<'a> {
        let mut fields = Fields(tail);
        let recorded = fields.number();
        let status = u16::try_from(fields.number()).unwrap_or_default();
        let event = fields.text().unwrap_or_default();
        let action = action_of(fields.text());
        View {
            recorded,
            status,
            event,
            action,
            user: fields.text(),
            fhir_user: fields.text(),
            client: fields.text(),
            token: fields.text(),
            address: fields.text(),
            user_agent: fields.text(),
            entity: fields.text(),
            query: fields.text(),
            via: fields.text(),
            patients: fields.text(),
            request_id: fields.text(),
            purpose: fields.text(),
            reason: fields.text(),
        }
    }

    /// The patients it concerns, one by one.
    pub fn patients(&self) -> impl Iterator<Item = &'a str> {
        self.patients.into_iter().flat_map(|p| p.split(' '))
    }
}

/// The fields of a sealed record, read in order: each its length (four bytes,
/// big-endian; `u32::MAX` for none) then its bytes.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn text(&mut self) -> Option<&'a str> {
        let (length, rest) = self.0.split_first_chunk::<4>()?;
        let length = u32::from_be_bytes(*length);
        if length == u32::MAX {
            self.0 = rest;
            return None;
        }
        let (field, rest) = rest.split_at_checked(length as usize)?;
        self.0 = rest;
        std::str::from_utf8(field).ok()
    }

    /// A decimal field.
    fn number(&mut self) -> i64 {
        self.text().and_then(|t| t.parse().ok()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::audit::Agent;

    fn entry(n: i64) -> Entry {
        Entry {
            recorded: 1_700_000_000_000_000 + n,
            event: "read".into(),
            action: "R",
            status: 200,
            agent: Arc::new(Agent {
                user: Some("ana".into()),
                fhir_user: None,
                client: Some("app".into()),
                token: Some("jti-1".into()),
                address: Some("10.0.0.1".into()),
                user_agent: Some(String::new()),
                request_id: Some(format!("r{n}")),
                purpose: None,
                reason: Some("émergence".into()),
            }),
            entity: Some(format!("Patient/{n}/_history/1")),
            query: None,
            via: Some("$book".into()),
            patients: vec![n.to_string(), "p two".into()],
        }
    }

    #[test]
    fn a_view_reads_back_every_field() {
        let entries = [entry(1), entry(-2)];
        let batch = Batch::of(&entries);
        assert_eq!(batch.len(), 2);
        for (entry, view) in entries.iter().zip(batch.views()) {
            let agent = &*entry.agent;
            assert_eq!(view.recorded, entry.recorded);
            assert_eq!(view.status, entry.status);
            assert_eq!(view.event, entry.event);
            assert_eq!(view.action, entry.action);
            assert_eq!(view.user, agent.user.as_deref());
            assert_eq!(view.fhir_user, None);
            assert_eq!(view.client, agent.client.as_deref());
            assert_eq!(view.token, agent.token.as_deref());
            assert_eq!(view.address, agent.address.as_deref());
            assert_eq!(view.user_agent, Some(""));
            assert_eq!(view.entity, entry.entity.as_deref());
            assert_eq!(view.query, None);
            assert_eq!(view.via, Some("$book"));
            assert_eq!(view.patients, Some(entry.patients.join(" ").as_str()));
            assert_eq!(view.request_id, agent.request_id.as_deref());
            assert_eq!(view.purpose, None);
            assert_eq!(view.reason, Some("émergence"));
        }
    }

    #[test]
    fn records_are_copied_and_moved_whole() {
        let mut first = Batch::of(&[entry(1), entry(2), entry(3)]);
        let mut second = Batch::with_capacity(1);
        second.push_from(&first, 1);
        assert_eq!(second.view(0).recorded, entry(2).recorded);
        second.append(&mut first);
        assert!(first.is_empty());
        let recorded: Vec<i64> = second.views().map(|v| v.recorded).collect();
        assert_eq!(recorded, [2, 1, 2, 3].map(|n| entry(n).recorded));
        assert_eq!(second.tail(3), Batch::of(&[entry(3)]).tail(0));
    }

    #[test]
    fn a_cut_buffer_reads_as_empty_fields() {
        let batch = Batch::of(&[entry(1)]);
        let tail = batch.tail(0);
        for cut in [0, 3, 10, tail.len() - 1] {
            let view = View::of(&tail[..cut]);
            assert!(view.reason.is_none());
        }
    }
}
