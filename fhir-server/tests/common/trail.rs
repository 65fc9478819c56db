//! SQLite's audit trail behind the server's back: read, and written again in either
//! layout (rows of `audit_log`, as a trail written before migration 0016 is, or blocks,
//! `store::audit_block`), sealed as it was: as a tamperer, or an older server, leaves it.

use fhir_server::store::audit::Stored;
use fhir_server::store::audit_block;

use super::Server;

/// Bits of a record's number in a key (`store::audit::SEQ_BITS`).
const SEQ_BITS: u32 = fhir_server::store::audit::SEQ_BITS;

/// The default tenant's tid and every record of its trail, as the store reads them.
pub async fn records(server: &Server) -> (i64, Vec<Stored>) {
    let store = fhir_server::store::Store::open(&server.database_url, 1, None)
        .await
        .unwrap();
    let tenant = store.tenant_id("default").await.unwrap().unwrap();
    let records = store.audit_records(tenant, -1, 1_000_000).await.unwrap();
    (tenant.get(), records)
}

fn open(server: &Server) -> rusqlite::Connection {
    rusqlite::Connection::open(&server.database_url).unwrap()
}

/// The default tenant's rows and blocks removed, and `records` written as rows.
pub fn write_rows(server: &Server, tid: i64, records: &[Stored]) {
    let mut conn = open(server);
    let tx = conn.transaction().unwrap();
    clear(&tx, tid);
    let columns = fhir_server::store::audit::INSERT_COLUMNS;
    let placeholders = vec!["?"; 22].join(", ");
    let mut insert = tx
        .prepare(&format!(
            "INSERT INTO audit_log (key, {columns}) VALUES ({placeholders})"
        ))
        .unwrap();
    for record in records {
        let mut values: Vec<rusqlite::types::Value> =
            vec![((tid << SEQ_BITS) | record.seq).into(), tid.into()];
        values.extend(
            audit_block::exported(record)
                .into_iter()
                .map(rusqlite::types::Value::from),
        );
        insert.execute(rusqlite::params_from_iter(values)).unwrap();
    }
    drop(insert);
    tx.commit().unwrap();
}

/// The default tenant's rows and blocks removed, and `records` written as blocks: a run
/// of records in one slot of 64 numbers one block, keyed by its first record's number.
pub fn write_blocks(server: &Server, tid: i64, records: &[Stored]) {
    write_blocks_as(server, tid, records, audit_block::encode);
}

/// [`write_blocks`], the blocks uncompressed, as a server wrote them before it compressed
/// them.
pub fn write_uncompressed_blocks(server: &Server, tid: i64, records: &[Stored]) {
    write_blocks_as(server, tid, records, audit_block::encode_uncompressed);
}

fn write_blocks_as(
    server: &Server,
    tid: i64,
    records: &[Stored],
    encode: fn(&[Stored]) -> Vec<u8>,
) {
    let mut conn = open(server);
    let tx = conn.transaction().unwrap();
    clear(&tx, tid);
    for run in records.chunk_by(|a, b| a.seq >> 6 == b.seq >> 6 && b.seq > a.seq) {
        let (first, last) = (run[0].seq, run[run.len() - 1].seq);
        tx.execute(
            "INSERT INTO audit_block (key, last, records) VALUES (?1, ?2, ?3)",
            rusqlite::params![(tid << SEQ_BITS) | first, last, encode(run)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn clear(tx: &rusqlite::Transaction<'_>, tid: i64) {
    let (low, high) = (tid << SEQ_BITS, (tid + 1) << SEQ_BITS);
    for table in ["audit_log", "audit_block"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE key >= ?1 AND key < ?2"),
            [low, high],
        )
        .unwrap();
    }
}

/// The first byte of each of the trail's blocks (0 uncompressed, 1 compressed:
/// `store::audit_block`), in order.
pub fn block_kinds(server: &Server) -> Vec<u8> {
    let conn = open(server);
    let mut select = conn
        .prepare("SELECT records FROM audit_block ORDER BY key")
        .unwrap();
    select
        .query_map([], |row| row.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|block| block.unwrap()[0])
        .collect()
}

/// Blocks and rows of the default tenant's trail on SQLite.
pub fn layout(server: &Server) -> (i64, i64) {
    let conn = open(server);
    let count = |table: &str| {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
    };
    (count("audit_block"), count("audit_log"))
}

/// Record `seq` edited in its block, sealed as it was, the block written back in place
/// (the server may append meanwhile: nothing else is touched).
pub fn edit_in_block(server: &Server, tid: i64, seq: i64, edit: impl FnOnce(&mut Stored)) {
    let conn = open(server);
    let (key, last, block): (i64, i64, Vec<u8>) = conn
        .query_row(
            "SELECT key, last, records FROM audit_block \
             WHERE key >= ?1 AND key <= ?2 AND last >= ?3 ORDER BY key DESC LIMIT 1",
            [tid << SEQ_BITS, (tid << SEQ_BITS) | seq, seq],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    let first = key & ((1 << SEQ_BITS) - 1);
    let mut records = audit_block::decode(tid, (first, last), &block).unwrap();
    let record = records.iter_mut().find(|r| r.seq == seq).unwrap();
    edit(record);
    conn.execute(
        "UPDATE audit_block SET records = ?1 WHERE key = ?2",
        rusqlite::params![audit_block::encode(&records), key],
    )
    .unwrap();
}
