//! The harness itself: a server starts on each backend and answers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure

mod common;

use common::{Server, json, patient};

async fn create_then_read(server: Server) {
    let created = server.create(&server.base, &patient("Smoke", "s-1")).await;
    let id = created["id"].as_str().unwrap();
    let (status, body) = json(
        server
            .client
            .get(format!("{}/Patient/{id}", server.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["name"][0]["family"], "Smoke");
}
both!(create_then_read);
