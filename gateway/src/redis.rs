//! Redis coordination for multi-node deployments: health of the configured
//! Redis. (Cross-node fan-out and shared rate limits build on this.)

use crate::app::AppState;

/// `None` when no Redis is configured; else whether it answers PING.
pub async fn health(app: &AppState) -> Option<bool> {
    let client = app.redis()?;
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    Some(matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), ping).await,
        Ok(Ok(_))
    ))
}
