//! Upgrading a database that an older server left: the migrations carry the data over, the
//! server rebuilds the search index before it serves, and nothing is lost or mixed up
//! between tenants. The old database is made here with the old migrations' own SQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure

mod common;

use common::{Backend, JSON, Server, resource_ids};
use serde_json::{Value, json};

/// The schema before the compact keys (migrations 1 and 2), with two tenants' data: a
/// Patient with two versions in `default`, one in `acme`.
fn old_database(backend: Backend) -> String {
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let migration = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/../migrations/{folder}/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("the old migration is readable")
    };
    let bytes = |resource: &Value| {
        let hex: String = resource
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        match backend {
            Backend::Sqlite => format!("X'{hex}'"),
            Backend::Postgres => format!("'\\x{hex}'::bytea"),
        }
    };
    let version = |tenant: &str, id: &str, version: i64, family: &str| {
        let body = json!({
            "resourceType": "Patient", "id": id,
            "meta": {"versionId": version.to_string(), "lastUpdated": "2023-11-14T22:13:20.000Z"},
            "name": [{"family": family}]
        });
        format!(
            "INSERT INTO resource_versions (tenant, type, id, version, last_updated, method, deleted, body) \
             VALUES ('{tenant}', 'Patient', '{id}', {version}, {}, '{}', 0, {});",
            1_700_000_000_000_000_i64 + version,
            if version == 1 { "POST" } else { "PUT" },
            bytes(&body)
        )
    };
    [
        migration("0001_init.sql"),
        migration("0002_search_index.sql"),
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         applied_at BIGINT NOT NULL);
         INSERT INTO schema_migrations VALUES (1, 'init', 0), (2, 'search_index', 0);
         INSERT INTO tenants (id, name, created_at) VALUES ('acme', 'Acme', 5);"
            .to_owned(),
        version("default", "p1", 1, "Chalmers"),
        version("default", "p1", 2, "Chalmers-Smith"),
        version("acme", "a1", 1, "Windsor"),
        "INSERT INTO resources (tenant, type, id, version, last_updated, deleted) VALUES
         ('default', 'Patient', 'p1', 2, 1700000000000002, 0),
         ('acme', 'Patient', 'a1', 1, 1700000000000001, 0);"
            .to_owned(),
    ]
    .join("\n")
}

async fn an_old_database_is_upgraded_and_reindexed(backend: Backend) {
    let Some(server) = Server::start_prepared(backend, &[], &[], &old_database(backend)).await
    else {
        return;
    };
    let acme = server.tenant_base("acme");
    let (status, patient) = server
        .get_json_url(&format!("{}/Patient/p1", server.base))
        .await;
    assert_eq!(status, 200, "{patient}");
    assert_eq!(patient["meta"]["versionId"], "2");
    let (_, history) = server
        .get_json_url(&format!("{}/Patient/p1/_history", server.base))
        .await;
    assert_eq!(history["total"], 2);

    // The index was rebuilt at start, per tenant.
    let (_, found) = server
        .get_json_url(&format!("{}/Patient?name=chalmers", server.base))
        .await;
    assert_eq!(resource_ids(&found), ["p1"]);
    let (_, found) = server
        .get_json_url(&format!("{}/Patient?name=windsor", server.base))
        .await;
    assert!(
        resource_ids(&found).is_empty(),
        "another tenant's data: {found}"
    );
    let (_, found) = server
        .get_json_url(&format!("{acme}/Patient?name=windsor"))
        .await;
    assert_eq!(resource_ids(&found), ["a1"]);
    assert!(server.log().contains("search index rebuilt"));

    // Writes and new tenants work on the upgraded schema.
    server.create_tenant("beta").await;
    let beta = server.tenant_base("beta");
    let created = server
        .create(&beta, &common::patient("Windsor", "b-1"))
        .await;
    let (_, found) = server
        .get_json_url(&format!("{beta}/Patient?name=windsor"))
        .await;
    assert_eq!(resource_ids(&found), [created["id"].as_str().unwrap()]);
    let response = server
        .client
        .put(format!("{acme}/Patient/a1"))
        .header("content-type", JSON)
        .body(
            json!({"resourceType": "Patient", "id": "a1", "name": [{"family": "Tudor"}]})
                .to_string(),
        )
        .send()
        .await
        .expect("update answers");
    assert_eq!(response.status(), 200);
    let (_, found) = server
        .get_json_url(&format!("{acme}/Patient?name=tudor"))
        .await;
    assert_eq!(resource_ids(&found), ["a1"]);
}
both_backends!(an_old_database_is_upgraded_and_reindexed);
