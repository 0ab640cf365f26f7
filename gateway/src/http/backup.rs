//! `GET /v1/admin/backup` (admin): a backup body (`parkme_backup::format`)
//! of this server's store, streamed while it serves. `parkme backup` calls
//! it when the embedded store it was asked for is held by this process,
//! and writes the file (header included) itself.
//!
//! The export runs in its own task and writes into a bounded pipe, so a
//! slow reader slows the export instead of growing memory; a reader that
//! goes away ends it. A failure mid-way ends the stream without the
//! body's end marker, which the reader reports. This module must never
//! answer before the caller was checked as the admin.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use parkme_backup::{BodyWriter, ExportOptions, Silent};
use tokio::io::AsyncReadExt;

use crate::extract::Admin;
use crate::state::AppState;

/// The media type of a backup stream (documented in `/openapi.json`).
pub const CONTENT_TYPE: &str = "application/vnd.parkme.backup-body";

/// Bytes in flight between the export and the socket.
const PIPE: usize = 256 << 10;
/// Bytes per chunk of the response.
const CHUNK: usize = 64 << 10;

#[utoipa::path(get, path = "/v1/admin/backup", operation_id = "download_backup", tag = "operations",
    summary = "A backup stream (contract §8), as `parkme backup` writes it",
    security(("admin" = [])),
    responses((status = 200, description = "The backup file, streamed", content_type = "application/vnd.parkme.backup-body", body = Vec<u8>)))]
pub async fn download(_admin: Admin, State(app): State<AppState>) -> Response {
    let storage = Arc::clone(app.node().storage());
    let options = ExportOptions {
        booking_retention_ms: app.node().booking_retention_ms(),
        parkme_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let (writer, reader) = tokio::io::duplex(PIPE);
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut body = BodyWriter::new(writer, Arc::new(Silent));
        match parkme_backup::export(&*storage, &options, &mut body).await {
            Ok(()) => {
                let counts = body.counts().clone();
                let bytes = body.bytes();
                let _ = body.finish().await;
                tracing::info!(
                    zones = counts.zones,
                    bookings = counts.bookings,
                    bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "backup streamed"
                );
            }
            Err(e) => tracing::warn!(error = %e, "backup stream ended early"),
        }
    });
    let chunks = futures_util::stream::unfold(reader, |mut reader| async move {
        let mut buffer = vec![0u8; CHUNK];
        match reader.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buffer)), reader))
            }
            Err(e) => Some((Err(e), reader)),
        }
    });
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}
