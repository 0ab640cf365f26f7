//! Contract §9, `GET /openapi.json`: an OpenAPI 3.1 document of every
//! route, and every answer the server sends conforms to it. The checker is
//! schemathesis (PyPI), an outside tool: it reads the document the binary
//! serves, drives the binary with requests it generates from it (valid and
//! invalid, with and without each credential) and checks every answer's
//! status, content type, headers and body against the document.
//! `PARKME_SCHEMATHESIS` names its executable (scripts/test installs it).

use std::process::Command;

use crate::helpers::TestServer;
use crate::helpers::http::Api;

/// Generated cases per operation and phase.
const MAX_EXAMPLES: &str = "25";

fn schemathesis() -> String {
    std::env::var("PARKME_SCHEMATHESIS").expect(
        "PARKME_SCHEMATHESIS must name the schemathesis executable (scripts/install-test-deps installs it)",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_as_openapi_3_1() {
    let server = TestServer::start(&[]).await;
    let api = Api::new(&server);
    let reply = api.get("/openapi.json", None).await;
    let doc = reply.assert_status(200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/facilities/{fid}/bookings"]["post"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_conforms_to_the_openapi_document_under_schemathesis() {
    // The demo city gives the document's example ids real facilities;
    // limits high enough that generated traffic is not all 429s.
    let server = TestServer::start(&[
        ("PARKME_DEMO", "true"),
        ("PARKME_RATE_ANON_PER_HOUR", "1000000"),
        ("PARKME_RATE_USER_PER_HOUR", "1000000"),
        ("PARKME_RATE_BOOKINGS_PER_HOUR", "1000000"),
        ("PARKME_RATE_AUTH_FAILURES_PER_HOUR", "1000000"),
    ])
    .await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/schemathesis.toml");
    let report = dir.path().join("junit.xml");
    let url = format!("{}/openapi.json", server.url());
    let output = tokio::task::spawn_blocking({
        let user = server.user_token("conformance-user");
        let admin = server.admin_token().to_owned();
        move || {
            Command::new(schemathesis())
                .arg("--config-file")
                .arg(config)
                .args([
                    "run",
                    &url,
                    "--checks",
                    "all",
                    "--max-examples",
                    MAX_EXAMPLES,
                ])
                // DELETE /v1/bookings/{id} cancels, and the contract keeps
                // the booking readable as CANCELLED (§3): "deleted resource
                // still available" is the promise there, not a defect.
                .args(["--exclude-checks", "use_after_free"])
                .args([
                    "--workers",
                    "2",
                    "--seed",
                    "1",
                    "--no-color",
                    "--generation-database",
                    "none",
                ])
                .arg("--report")
                .arg("junit")
                .arg("--report-junit-path")
                .arg(&report)
                .env("PARKME_ST_ADMIN", admin)
                .env("PARKME_ST_USER", user)
                .output()
                .expect("schemathesis runs")
        }
    })
    .await
    .expect("the schemathesis task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Its summary, kept in the test output for the record.
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found answers that do not conform to /openapi.json:\n{stdout}\n{stderr}"
    );
    let log = server.output().join("\n");
    assert!(
        !log.contains("handler panicked"),
        "a handler panicked:\n{log}"
    );
}
