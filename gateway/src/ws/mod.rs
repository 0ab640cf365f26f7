//! Websockets of contract §4 (sensors) and §5 (apps).

use axum::Router;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
