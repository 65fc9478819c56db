//! SQLite's audit records in blocks: one `audit_block` row per run of at most 64 records
//! of one append (migration 0016), not one `audit_log` row per record.
//!
//! A row costs SQLite about 2 µs whatever it holds (binding its values, the b-tree, the
//! row's share of the WAL and the commit): as much as the rest of an audited read's work
//! on the trail together. A block is one row for up to 64 records: each record's number,
//! the hash before it, its hash and its sealed bytes as the recorder gathered them
//! (`store::audit_batch`), one after another. Nothing is indexed inside a block; a search
//! decodes the blocks of the numbers it wants and filters in memory (the trail keeps no
//! index of its columns either way).
//!
//! A block is keyed `tid << 44 | first` (the first record's number, as `audit_log` is,
//! `audit::Numbering`), and never spans a multiple of 64: the block holding record `seq`
//! starts between `seq & !63` and `seq`, so a lookup by number reads one short range of the
//! key. Records from before the migration, and those a tenant import wrote, stay rows:
//! readers take both (`store::audit`).
//!
//! Every record keeps its own number and both hashes, as a row does, so `audit verify`
//! tells a changed, removed, inserted or renumbered record in a block as it tells a row's.
//! A record whose number lies outside its block's range (a block moved, or edited behind
//! the server's back) is not read: the walk finds it missing.
//!
//! A block is stored compressed (LZ4, [`compress`]): its records repeat their agent, their
//! event and, each, the hash of the one before, so a read's 300 bytes become about 115.
//! Every byte stored is copied by the writer into the WAL and by the checkpointer from the
//! WAL into the database file (a kernel copy and a page of the VM's I/O each 4 KB): those
//! copies were half the writer's time and all the checkpointer's. Blocks written before
//! compression start with the zero byte (a number's top byte) and are read as they are.

use std::sync::Arc;

use super::audit::{
    Agent, Entry, Filter, Numbering, Prev, SEQ_BITS, Sealed, Stored, hex, push_seal_tail,
};
use super::audit_batch::View;
use super::{Store, StoreError, TenantId};
use crate::search::sql::{Arg, Sql};

/// Records per block, at most; blocks start at multiples of it or after.
pub const BLOCK_BITS: u32 = 6;

/// The runs of `count` records numbered from `first` that make one block each: split
/// wherever a number is a multiple of 64, and at most 64 long.
pub fn runs(first: i64, count: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut start = 0usize;
    std::iter::from_fn(move || {
        if start >= count {
            return None;
        }
        let seq = first + start as i64;
        let room = (1i64 << BLOCK_BITS) - (seq & ((1 << BLOCK_BITS) - 1));
        let end = (start + room as usize).min(count);
        let run = start..end;
        start = end;
        Some(run)
    })
}

/// Appends one record to a block's bytes: its number (8 bytes, big-endian), the hash
/// before it and its own (32 bytes each), the length of its bytes (4) and the bytes.
pub fn push(block: &mut Vec<u8>, record: &Sealed<'_>) {
    let prev = match record.prev {
        Prev::Head(head) => &raw_hash(head),
        Prev::Record(seal) => seal.raw(),
    };
    push_parts(block, record.seq, (prev, record.hash.raw()), record.tail);
}

fn push_parts(block: &mut Vec<u8>, seq: i64, (prev, hash): (&[u8; 32], &[u8; 32]), tail: &[u8]) {
    block.extend_from_slice(&seq.to_be_bytes());
    block.extend_from_slice(prev);
    block.extend_from_slice(hash);
    block.extend_from_slice(&(tail.len() as u32).to_be_bytes());
    block.extend_from_slice(tail);
}

/// The first byte of a compressed block: then the records' length (4 bytes, big-endian)
/// and their LZ4 block. An uncompressed block starts with its first number's top byte,
/// always 0 (numbers have 44 bits).
const LZ4: u8 = 1;

/// The most bytes a block's records may take once uncompressed (64 records of up to a
/// megabyte each, far past any request's), so that a block changed behind the server's
/// back cannot make a reader allocate what it says.
const MAX_RECORDS_BYTES: usize = 64 << 20;

/// The bytes stored for the records `raw` (as [`push`] laid them out), written in `room`
/// (kept from block to block: it is grown, and zeroed, once).
pub fn compress<'a>(raw: &[u8], room: &'a mut Vec<u8>) -> &'a [u8] {
    use lz4_flex::block::{compress_into, get_maximum_output_size};
    const HEAD: usize = 5;
    let most = HEAD + get_maximum_output_size(raw.len());
    if room.len() < most {
        room.resize(most, 0);
    }
    room[0] = LZ4;
    room[1..HEAD].copy_from_slice(&(raw.len() as u32).to_be_bytes());
    match compress_into(raw, &mut room[HEAD..]) {
        Ok(length) => &room[..HEAD + length],
        // Only if the room above were too small: the records are stored as they are.
        Err(_) => {
            room.clear();
            room.extend_from_slice(raw);
            room
        }
    }
}

/// The records of a stored block, uncompressed; None when the block does not hold what
/// its head says.
fn uncompress(block: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let Some((&LZ4, rest)) = block.split_first() else {
        return Some(std::borrow::Cow::Borrowed(block));
    };
    let (length, compressed) = rest.split_first_chunk::<4>()?;
    let length = u32::from_be_bytes(*length) as usize;
    // LZ4 makes at most 255 bytes of one.
    if length > MAX_RECORDS_BYTES || length > compressed.len().saturating_mul(255) {
        return None;
    }
    let mut raw = vec![0; length];
    match lz4_flex::block::decompress_into(compressed, &mut raw) {
        Ok(written) if written == length => Some(std::borrow::Cow::Owned(raw)),
        _ => None,
    }
}

/// A block of `records` (stored records, as a tenant import or a test has them),
/// compressed as the server stores it.
pub fn encode(records: &[Stored]) -> Vec<u8> {
    compress(&encode_uncompressed(records), &mut Vec::new()).to_vec()
}

/// A block of `records` as blocks were stored before compression.
pub fn encode_uncompressed(records: &[Stored]) -> Vec<u8> {
    let mut block = Vec::new();
    let mut tail = Vec::new();
    for record in records {
        tail.clear();
        push_seal_tail(&mut tail, &record.entry);
        let hex = |hash: &Option<String>| raw_hash(hash.as_deref().unwrap_or_default());
        push_parts(
            &mut block,
            record.seq,
            (&hex(&record.prev), &hex(&record.hash)),
            &tail,
        );
    }
    block
}

/// The records of a block of tenant `tenant` keyed from `first` to `last`, those numbered
/// outside that range left out (see the module's doc).
pub fn decode(
    tenant: i64,
    (first, last): (i64, i64),
    block: &[u8],
) -> Result<Vec<Stored>, StoreError> {
    // Only a block changed behind the server's back: `audit verify` says which.
    let bad = || {
        StoreError::Database(format!(
            "the audit block of tenant {tenant}'s records {first} to {last} cannot be read \
             (changed or cut behind the server's back)"
        ))
    };
    let raw = uncompress(block).ok_or_else(bad)?;
    let mut records = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let (seq, after) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
        let (prev, after) = after.split_first_chunk::<32>().ok_or_else(bad)?;
        let (hash, after) = after.split_first_chunk::<32>().ok_or_else(bad)?;
        let (length, after) = after.split_first_chunk::<4>().ok_or_else(bad)?;
        let (tail, after) = after
            .split_at_checked(u32::from_be_bytes(*length) as usize)
            .ok_or_else(bad)?;
        rest = after;
        let seq = i64::from_be_bytes(*seq);
        if !(first..=last).contains(&seq) {
            continue;
        }
        records.push(Stored {
            tenant,
            seq,
            entry: entry_of(View::of(tail)),
            prev: Some(hex(prev)),
            hash: Some(hex(hash)),
        });
    }
    Ok(records)
}

/// A record's fields, owned.
fn entry_of(view: View<'_>) -> Entry {
    let owned = |text: Option<&str>| text.map(str::to_owned);
    Entry {
        recorded: view.recorded,
        event: view.event.to_owned(),
        action: view.action,
        status: view.status,
        agent: Arc::new(Agent {
            user: owned(view.user),
            fhir_user: owned(view.fhir_user),
            client: owned(view.client),
            token: owned(view.token),
            address: owned(view.address),
            user_agent: owned(view.user_agent),
            request_id: owned(view.request_id),
            purpose: owned(view.purpose),
            reason: owned(view.reason),
        }),
        entity: owned(view.entity),
        query: owned(view.query),
        via: owned(view.via),
        patients: view.patients().map(str::to_owned).collect(),
    }
}

/// A hash's 32 bytes from its hex (zeros where it is not hex: a record is sealed with
/// hashes this server made, so that never happens but in a tampered trail, and there the
/// walk reports the record).
fn raw_hash(hex: &str) -> [u8; 32] {
    let mut raw = [0u8; 32];
    let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    for (n, pair) in hex.as_bytes().chunks_exact(2).take(32).enumerate() {
        raw[n] = digit(pair[0]) << 4 | digit(pair[1]);
    }
    raw
}

/// Blocks read per statement.
const BLOCKS_PER_QUERY: i64 = 16;

impl Store {
    /// Up to `limit` records of the tenant's blocks numbered `from..below` that `keep`
    /// takes, oldest first or newest first. Nothing on PostgreSQL, which keeps rows.
    pub(super) async fn audit_block_scan(
        &self,
        tenant: TenantId,
        (mut from, mut below): (i64, i64),
        newest_first: bool,
        (limit, keep): (usize, &(dyn Fn(&Stored) -> bool + Sync)),
    ) -> Result<Vec<Stored>, StoreError> {
        let Store::Sqlite(sqlite) = self else {
            return Ok(Vec::new());
        };
        from = from.max(0);
        let mut found = Vec::new();
        // As many blocks as `limit` records fill, then twice as many each time (a filter
        // may take few of a block's records).
        let mut per_query = (limit.div_ceil(1 << BLOCK_BITS) as i64).clamp(1, BLOCKS_PER_QUERY);
        while from < below && found.len() < limit {
            let mut sql = Sql::default();
            sql.push("SELECT key, last, records FROM audit_block WHERE ");
            let start = from & !((1 << BLOCK_BITS) - 1);
            Numbering::Key.push_range(&mut sql, tenant, Some(start), Some(below));
            sql.push(" AND last >= ");
            sql.bind(Arg::Int(from));
            sql.push(if newest_first {
                " ORDER BY key DESC LIMIT "
            } else {
                " ORDER BY key LIMIT "
            });
            sql.bind(Arg::Int(per_query));
            let blocks = sqlite.select_blocks(sql).await?;
            for (key, last, block) in &blocks {
                let mut records = decode(tenant.get(), (first_of(*key), *last), block)?;
                records.retain(|r| (from..below).contains(&r.seq) && keep(r));
                if newest_first {
                    records.reverse();
                }
                found.extend(records);
            }
            match blocks.last() {
                Some((key, last, _)) if blocks.len() as i64 == per_query => {
                    per_query = (per_query * 2).min(BLOCKS_PER_QUERY);
                    if newest_first {
                        below = first_of(*key);
                    } else {
                        from = last + 1;
                    }
                }
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// The records of the tenant's blocks numbered `seqs` that `keep` takes, newest first.
    pub(super) async fn audit_block_numbers(
        &self,
        tenant: TenantId,
        seqs: &[i64],
        keep: &(dyn Fn(&Stored) -> bool + Sync),
    ) -> Result<Vec<Stored>, StoreError> {
        let Store::Sqlite(sqlite) = self else {
            return Ok(Vec::new());
        };
        let mut slots: Vec<i64> = seqs.iter().map(|seq| seq >> BLOCK_BITS).collect();
        slots.sort_unstable();
        slots.dedup();
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        // Each slot of 64 numbers a range of the key.
        let mut sql = Sql::default();
        sql.push("SELECT key, last, records FROM audit_block WHERE ");
        for (n, slot) in slots.iter().enumerate() {
            sql.push(if n == 0 { "(" } else { " OR (" });
            let start = slot << BLOCK_BITS;
            Numbering::Key.push_range(
                &mut sql,
                tenant,
                Some(start),
                Some(start + (1 << BLOCK_BITS)),
            );
            sql.push(")");
        }
        let mut found = Vec::new();
        for (key, last, block) in sqlite.select_blocks(sql).await? {
            let records = decode(tenant.get(), (first_of(key), last), &block)?;
            found.extend(
                records
                    .into_iter()
                    .filter(|r| seqs.contains(&r.seq) && keep(r)),
            );
        }
        found.sort_by_key(|record| std::cmp::Reverse(record.seq));
        Ok(found)
    }

    /// The last number at or below `seq` that no block runs past (pruning stops at a
    /// block's end).
    pub(super) async fn audit_block_end(
        &self,
        tenant: TenantId,
        seq: i64,
    ) -> Result<i64, StoreError> {
        let Store::Sqlite(sqlite) = self else {
            return Ok(seq);
        };
        let mut sql = Sql::default();
        sql.push("SELECT key, last, x'' FROM audit_block WHERE ");
        let start = seq & !((1 << BLOCK_BITS) - 1);
        Numbering::Key.push_range(&mut sql, tenant, Some(start), Some(seq + 1));
        sql.push(" AND last > ");
        sql.bind(Arg::Int(seq));
        Ok(match sqlite.select_blocks(sql).await?.first() {
            Some((key, _, _)) => first_of(*key) - 1,
            None => seq,
        })
    }
}

/// A record as a row of an exported `audit_log` (`store::tenant_copy`: its columns after
/// the tid), so that a tenant's records move the same from rows and from blocks.
pub fn exported(record: &Stored) -> Vec<Option<String>> {
    let entry = &record.entry;
    let agent = &*entry.agent;
    let patients = (!entry.patients.is_empty()).then(|| entry.patients.join(" "));
    vec![
        Some(record.seq.to_string()),
        Some(entry.recorded.to_string()),
        Some(entry.event.clone()),
        Some(entry.action.to_owned()),
        Some(entry.status.to_string()),
        agent.user.clone(),
        agent.fhir_user.clone(),
        agent.client.clone(),
        agent.token.clone(),
        agent.address.clone(),
        agent.user_agent.clone(),
        entry.entity.clone(),
        entry.query.clone(),
        entry.via.clone(),
        patients,
        agent.request_id.clone(),
        agent.purpose.clone(),
        agent.reason.clone(),
        record.prev.clone(),
        record.hash.clone(),
    ]
}

/// The tenant's blocks in order, for an export: key, last number, records.
pub(super) fn select_all(tenant: TenantId) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT key, last, records FROM audit_block WHERE ");
    Numbering::Key.push_range(&mut sql, tenant, None, None);
    sql.push(" ORDER BY key");
    sql
}

/// A block's first number, from its key.
pub(super) fn first_of(key: i64) -> i64 {
    key & ((1 << SEQ_BITS) - 1)
}

/// Whether `record` is one that `filter` asks for (its number aside): what
/// `audit::search_sql` asks of a row, asked of a block's record.
pub fn matches(filter: &Filter, record: &Stored) -> bool {
    let entry = &record.entry;
    let agent = &*entry.agent;
    let is = |value: &Option<String>, wanted: &str| value.as_deref() == Some(wanted);
    let agent_ok = filter.agent.as_deref().is_none_or(|wanted| {
        is(&agent.fhir_user, wanted) || is(&agent.user, wanted) || is(&agent.client, wanted)
    });
    let entity_ok = filter.entity.as_deref().is_none_or(|wanted| {
        entry.entity.as_deref().is_some_and(|entity| {
            entity == wanted
                || entity
                    .strip_prefix(wanted)
                    .is_some_and(|rest| rest.starts_with("/_history/"))
        })
    });
    agent_ok
        && entity_ok
        && filter.event.as_deref().is_none_or(|e| entry.event == e)
        && filter
            .purpose
            .as_deref()
            .is_none_or(|p| is(&agent.purpose, p))
        && filter.since.is_none_or(|since| entry.recorded >= since)
        && filter.until.is_none_or(|until| entry.recorded < until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_break_at_multiples_of_64() {
        let split: Vec<_> = runs(60, 140).collect();
        assert_eq!(split, [0..4, 4..68, 68..132, 132..140]);
        assert_eq!(
            runs(0, 64).map(|r| (r.start, r.end)).collect::<Vec<_>>(),
            [(0, 64)]
        );
        assert_eq!(runs(5, 0).count(), 0);
    }

    fn record(seq: i64) -> Stored {
        Stored {
            tenant: 3,
            seq,
            entry: Entry {
                recorded: 1_000 + seq,
                event: "read".into(),
                action: "R",
                status: 200,
                agent: Arc::new(Agent {
                    client: Some("app".into()),
                    request_id: Some(format!("r{seq}")),
                    ..Agent::default()
                }),
                entity: Some(format!("Patient/{seq}")),
                query: None,
                via: None,
                patients: vec![seq.to_string()],
            },
            prev: Some(format!("{:064x}", seq - 1)),
            hash: Some(format!("{seq:064x}")),
        }
    }

    #[test]
    fn a_block_reads_back_its_records() {
        let records: Vec<Stored> = (64..70).map(record).collect();
        let block = encode(&records);
        assert_eq!(decode(3, (64, 69), &block).unwrap(), records);
        // Out of the block's range: not read.
        assert_eq!(decode(3, (65, 68), &block).unwrap(), records[1..5]);
        // Cut short: an error, never a panic.
        for cut in [1, 3, 5, 8, 40, block.len() - 1] {
            assert!(decode(3, (64, 69), &block[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// Blocks changed at random, thousands of ways (bytes flipped, cut, grown), compressed
    /// and not: each decodes to records or to an error, never to a panic or a runaway
    /// allocation.
    #[test]
    fn mangled_blocks_never_panic() {
        let records: Vec<Stored> = (64..128).map(record).collect();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for block in [encode(&records), encode_uncompressed(&records)] {
            for _ in 0..3_000 {
                let mut mangled = block.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % mangled.len();
                    match next() % 3 {
                        0 => mangled[at] = next() as u8,
                        1 => mangled.truncate(at.max(1)),
                        _ => mangled.splice(at..at, [next() as u8; 7]).for_each(drop),
                    }
                }
                let _ = decode(3, (64, 127), &mangled);
            }
        }
    }

    #[test]
    fn blocks_are_compressed_and_older_ones_still_read() {
        let records: Vec<Stored> = (64..128).map(record).collect();
        let raw = encode_uncompressed(&records);
        let stored = encode(&records);
        assert_eq!(raw[0], 0);
        assert_eq!(stored[0], LZ4);
        assert!(
            stored.len() * 2 < raw.len(),
            "{} of {}",
            stored.len(),
            raw.len()
        );
        assert_eq!(decode(3, (64, 127), &stored).unwrap(), records);
        assert_eq!(decode(3, (64, 127), &raw).unwrap(), records);
        // The uncompressed length is checked before anything is allocated, and the
        // records must fill it exactly.
        let mut lying = stored.clone();
        lying[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(3, (64, 127), &lying).is_err());
        let mut short = stored.clone();
        let length = u32::from_be_bytes([short[1], short[2], short[3], short[4]]);
        short[1..5].copy_from_slice(&(length + 1).to_be_bytes());
        assert!(decode(3, (64, 127), &short).is_err());
        // Garbage after the marker: an error, never a panic.
        let mut garbage = stored.clone();
        for byte in &mut garbage[5..] {
            *byte = byte.wrapping_mul(31).wrapping_add(7);
        }
        assert!(decode(3, (64, 127), &garbage).is_err());
    }
}
