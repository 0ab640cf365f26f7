//! A zone's part in a layout change (see [`crate::facility`] for the whole
//! protocol): the check and the hold of `Prepare`, the change of `Commit`,
//! the release of `Abort`, and on start-up the adoption of the layout the
//! facility record declares.
//!
//! This module must never end a hold on its own: only `Commit` or `Abort`
//! does. Past its bounds a hold refuses commands as retryable instead.

use std::time::Duration;

use parkme_engine::{Command, Seq, ZoneLayout, ZoneState};
use parkme_storage::{Epoch, StorageError, ZoneKey};
use ractor::ActorRef;
use tokio::task::JoinHandle;

use super::{
    Reply, ZoneActorState, ZoneChange, ZoneContext, ZoneMsg, full_change, journal_writes,
    storage_error,
};
use crate::error::ActorError;

/// Names one layout change, so a zone never takes one change's `Commit`
/// or `Abort` for another's.
pub type LayoutToken = u64;

/// Longest a zone holds commands for a layout change; after that they are
/// refused as retryable until the change ends.
pub const HOLD_LIMIT: Duration = Duration::from_secs(2);
/// Most commands a zone holds for a layout change; more are refused at once.
pub const MAX_HELD: usize = 1024;

/// A prepared layout change and the commands held meanwhile.
pub(super) struct Hold {
    pub(super) token: LayoutToken,
    /// The layout to adopt; `None` when the zone leaves the layout.
    pub(super) target: Option<ZoneLayout>,
    held: Vec<ZoneMsg>,
    /// [`HOLD_LIMIT`] passed: commands are refused instead of held.
    refusing: bool,
    pub(super) timer: JoinHandle<()>,
}

/// Brings a recovered zone to the layout its facility record declares.
/// The record is a layout change's commit point and zones follow it, so a
/// crash after the record was written but before this zone journaled the
/// change ends here, in the new layout. A zone prepared for the change held
/// every command since its check, so the engine accepts it; should it not
/// (a journal written by a version without that guarantee), the zone keeps
/// its journaled layout, says so, and its facility lists and routes what
/// the zone really holds. Returns how many events it journaled.
pub(super) async fn adopt_declared_layout(
    context: &ZoneContext,
    key: &ZoneKey,
    epoch: Epoch,
    zone: &mut ZoneState,
    declared: &ZoneLayout,
) -> Result<u64, ActorError> {
    if zone.layout() == declared {
        return Ok(0);
    }
    let command = Command::Relayout {
        layout: declared.clone(),
        now: context.clock.now(),
    };
    let applied = match zone.execute(&command) {
        Ok(applied) => applied,
        Err(e) => {
            tracing::error!(zone = %key, error = %e, "zone cannot adopt its declared layout; it keeps its journaled one");
            return Ok(0);
        }
    };
    tracing::info!(zone = %key, seq = zone.seq().0, "zone adopted its declared layout");
    context
        .commit
        .commit(journal_writes(context, key, epoch, zone.seq(), &applied))
        .await?;
    Ok(applied.len() as u64)
}

impl Hold {
    /// Holds a command until the layout change ends, or refuses it once
    /// the hold is over its bounds (a dropped request answers its caller
    /// "retry"; a dropped expiry tick is re-armed on release).
    pub(super) fn keep(&mut self, message: ZoneMsg) {
        if self.refusing || self.held.len() >= MAX_HELD {
            metrics::counter!("parkme_layout_refused_commands_total").increment(1);
            drop(message);
        } else {
            self.held.push(message);
        }
    }
}

impl ZoneActorState {
    /// Phase one of a layout change: the check, then the hold.
    pub(super) fn prepare(
        &mut self,
        myself: &ActorRef<ZoneMsg>,
        token: LayoutToken,
        layout: Option<ZoneLayout>,
        reply: Reply<Seq>,
    ) {
        if self.hold.is_some() {
            let _ = reply.send(Err(ActorError::Unavailable("zone")));
            return;
        }
        let check = match &layout {
            Some(layout) => self
                .zone
                .decide(&Command::Relayout {
                    layout: layout.clone(),
                    now: self.now(),
                })
                .map(drop),
            None => self.zone.check_removal(),
        };
        if let Err(e) = check {
            let _ = reply.send(Err(e.into()));
            return;
        }
        // The check ran on the in-memory state; it holds for the durable
        // state once everything queued before it is durable, and nothing
        // changes the zone from here on.
        let seq = self.zone.seq();
        self.queue(
            None,
            None,
            None,
            Box::new(move |result| {
                let _ = reply.send(result.map(|()| seq).map_err(storage_error));
            }),
        );
        let target = myself.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(HOLD_LIMIT).await;
            let _ = target.send_message(ZoneMsg::HoldExpired { token });
        });
        tracing::debug!(zone = %self.key, token, "layout change prepared");
        self.hold = Some(Hold {
            token,
            target: layout,
            held: Vec::new(),
            refusing: false,
            timer,
        });
    }

    /// Phase two: adopts the committed layout, answers with the zone's full
    /// state once that is durable, then runs what was held.
    pub(super) async fn commit_layout(&mut self, token: LayoutToken, reply: Reply<ZoneChange>) {
        let target = match &self.hold {
            Some(hold) if hold.token == token => hold.target.clone(),
            _ => {
                let _ = reply.send(Err(ActorError::Unavailable("zone")));
                return;
            }
        };
        match target {
            Some(layout) => match self.zone.execute(&Command::Relayout {
                layout,
                now: self.now(),
            }) {
                Ok(applied) => {
                    let change = full_change(&self.key, &self.zone);
                    let done = move |result: Result<(), StorageError>, _| {
                        let _ = reply.send(result.map(|()| change).map_err(storage_error));
                    };
                    self.commit_applied(applied, |_| Vec::new(), done).await;
                }
                Err(e) => {
                    // Cannot happen: nothing changed the zone since its check.
                    tracing::error!(zone = %self.key, error = %e, "prepared layout refused at commit");
                    let _ = reply.send(Err(e.into()));
                }
            },
            // A zone that leaves is stopped, not committed; it keeps
            // holding (and so refusing) until then.
            None => {
                let _ = reply.send(Ok(full_change(&self.key, &self.zone)));
                return;
            }
        }
        self.release().await;
    }

    /// The change was abandoned: the zone runs what it held.
    pub(super) async fn abort_layout(&mut self, token: LayoutToken) {
        if self.hold.as_ref().is_some_and(|h| h.token == token) {
            tracing::debug!(zone = %self.key, token, "layout change abandoned");
            self.release().await;
        }
    }

    /// [`HOLD_LIMIT`] passed: what is held, and what comes until the change
    /// ends, is refused as retryable (a dropped request answers its caller
    /// "retry").
    pub(super) fn expire_hold(&mut self, token: LayoutToken) {
        let Some(hold) = self.hold.as_mut().filter(|h| h.token == token) else {
            return;
        };
        tracing::warn!(zone = %self.key, token, held = hold.held.len(), "layout change still open; refusing commands until it ends");
        metrics::counter!("parkme_layout_refused_commands_total").increment(hold.held.len() as u64);
        hold.refusing = true;
        hold.held.clear();
    }

    /// Ends the hold and runs the held commands in their order.
    pub(super) async fn release(&mut self) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        hold.timer.abort();
        // A tick dropped while refusing must be armed again.
        if let Some((_, handle)) = self.timer.take() {
            handle.abort();
        }
        for message in hold.held {
            self.command(message).await;
        }
    }
}
