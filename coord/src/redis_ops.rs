//! Membership and leases in Redis.
//!
//! Keys, all under the configured prefix:
//! - `nodes` (sorted set): node id → the time its announcement lapses, in
//!   ms on Redis's clock (`TIME`), so a node's own clock never decides
//!   whether it is alive;
//! - `members` (hash): node id → its [`Member`] record as JSON;
//! - `lease:{facility}` (string with a TTL): the node id holding the lease;
//! - `epochs` (hash): facility → the store epoch its owner claimed, for
//!   `GET /v1/cluster`.
//!
//! Every change of a lease is one script (compare, then set), so two
//! nodes racing for a facility cannot both win the same lease. Lapsed
//! members are swept by whoever lists them.
//!
//! This module must never block longer than its timeout per call, and
//! never trust what it reads: a malformed record is skipped, not fatal.

use std::collections::BTreeMap;
use std::time::Duration;

use parkme_cluster::{Member, NodeId};
use parkme_engine::FacilityId;
use redis::Script;
use redis::aio::ConnectionManager;

use crate::error::CoordError;

const ANNOUNCE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return now
";

const MEMBERS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local out = {}
for _, id in ipairs(live) do
  local record = redis.call('HGET', KEYS[2], id)
  if record then table.insert(out, record) end
end
return out
";

const LEAVE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
";

/// Takes a lease if it is absent (`ARGV[1] == ''`) or still held by the
/// expected (gone) holder.
const TAKE: &str = r"
local cur = redis.call('GET', KEYS[1])
if (cur == false and ARGV[1] == '') or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Renews each lease held by `ARGV[1]`; re-takes one that lapsed (nobody
/// took it meanwhile); reports 0 for one another process holds.
const RENEW: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  if cur == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  elseif cur == false then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = 2
  else
    out[i] = 0
  end
end
return out
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours; its TTL starts again.
    Renewed,
    /// It had lapsed and nobody took it: ours again.
    Retaken,
    /// Another process holds it.
    Lost,
}

/// A handle to the coordination keys of one cluster (one prefix).
#[derive(Clone)]
pub struct Coordination {
    conn: ConnectionManager,
    prefix: String,
    lease: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for Coordination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordination")
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Coordination {
    /// `lease` is both the lease TTL and the membership TTL; `timeout`
    /// bounds every call.
    pub fn new(conn: ConnectionManager, prefix: &str, lease: Duration, timeout: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            lease,
            timeout,
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn lease_key(&self, facility: &FacilityId) -> String {
        format!("{}lease:{facility}", self.prefix)
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CoordError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(CoordError::from),
            Err(_) => Err(CoordError::Timeout(self.timeout)),
        }
    }

    /// Announces (or refreshes) this node for one lease period.
    pub async fn announce(&self, member: &Member) -> Result<(), CoordError> {
        let record = serde_json::to_string(member)
            .map_err(|e| CoordError::Redis(format!("encoding a member record: {e}")))?;
        let mut conn = self.conn.clone();
        let script = Script::new(ANNOUNCE);
        let mut call = script.prepare_invoke();
        call.key(self.key("nodes"))
            .key(self.key("members"))
            .arg(member.id.to_string())
            .arg(self.lease_ms())
            .arg(record);
        let _: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// Removes this node's announcement at once (a clean exit).
    pub async fn leave(&self, id: &NodeId) -> Result<(), CoordError> {
        let mut conn = self.conn.clone();
        let script = Script::new(LEAVE);
        let mut call = script.prepare_invoke();
        call.key(self.key("nodes"))
            .key(self.key("members"))
            .arg(id.to_string());
        let _: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// The members whose announcement has not lapsed, in id order.
    pub async fn members(&self) -> Result<Vec<Member>, CoordError> {
        let mut conn = self.conn.clone();
        let script = Script::new(MEMBERS);
        let mut call = script.prepare_invoke();
        call.key(self.key("nodes")).key(self.key("members"));
        let records: Vec<String> = self.bounded(call.invoke_async(&mut conn)).await?;
        let mut members: Vec<Member> = records
            .iter()
            .filter_map(|r| match serde_json::from_str::<Member>(r) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a malformed member record in redis");
                    None
                }
            })
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(members)
    }

    /// The current holder of each of `facilities`' leases (absent: free).
    pub async fn leases(
        &self,
        facilities: &[FacilityId],
    ) -> Result<BTreeMap<FacilityId, NodeId>, CoordError> {
        if facilities.is_empty() {
            return Ok(BTreeMap::new());
        }
        let keys: Vec<String> = facilities.iter().map(|f| self.lease_key(f)).collect();
        let mut conn = self.conn.clone();
        let mut mget = redis::cmd("MGET");
        mget.arg(&keys);
        let holders: Vec<Option<String>> = self.bounded(mget.query_async(&mut conn)).await?;
        Ok(facilities
            .iter()
            .zip(holders)
            .filter_map(|(f, holder)| {
                let holder = holder?;
                match holder.parse::<NodeId>() {
                    Ok(id) => Some((f.clone(), id)),
                    Err(e) => {
                        tracing::warn!(facility = %f, error = %e, "skipping a malformed lease holder in redis");
                        None
                    }
                }
            })
            .collect())
    }

    /// Takes `facility`'s lease for `me` if it is free (`expected` None)
    /// or still held by `expected`. Returns whether it was taken.
    pub async fn take(
        &self,
        facility: &FacilityId,
        expected: Option<&NodeId>,
        me: &NodeId,
    ) -> Result<bool, CoordError> {
        let mut conn = self.conn.clone();
        let script = Script::new(TAKE);
        let mut call = script.prepare_invoke();
        call.key(self.lease_key(facility))
            .arg(expected.map(NodeId::to_string).unwrap_or_default())
            .arg(me.to_string())
            .arg(self.lease_ms());
        let taken: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(taken == 1)
    }

    /// Renews every lease of `facilities` held by `me`, in one round trip.
    pub async fn renew(
        &self,
        facilities: &[FacilityId],
        me: &NodeId,
    ) -> Result<Vec<Renewal>, CoordError> {
        if facilities.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let script = Script::new(RENEW);
        let mut call = script.prepare_invoke();
        for facility in facilities {
            call.key(self.lease_key(facility));
        }
        call.arg(me.to_string()).arg(self.lease_ms());
        let outcomes: Vec<i64> = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                1 => Renewal::Renewed,
                2 => Renewal::Retaken,
                _ => Renewal::Lost,
            })
            .collect())
    }

    /// Releases `facility`'s lease if `me` still holds it.
    pub async fn release(&self, facility: &FacilityId, me: &NodeId) -> Result<bool, CoordError> {
        let mut conn = self.conn.clone();
        let script = Script::new(RELEASE);
        let mut call = script.prepare_invoke();
        call.key(self.lease_key(facility)).arg(me.to_string());
        let released: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(released == 1)
    }

    /// Records the store epoch `facility`'s new owner claimed.
    pub async fn set_epoch(&self, facility: &FacilityId, epoch: u64) -> Result<(), CoordError> {
        let mut conn = self.conn.clone();
        let mut hset = redis::cmd("HSET");
        hset.arg(self.key("epochs"))
            .arg(facility.as_str())
            .arg(epoch);
        let _: i64 = self.bounded(hset.query_async(&mut conn)).await?;
        Ok(())
    }

    /// The store epoch each facility's owner last claimed.
    pub async fn epochs(&self) -> Result<BTreeMap<FacilityId, u64>, CoordError> {
        let mut conn = self.conn.clone();
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(self.key("epochs"));
        let all: BTreeMap<String, u64> = self.bounded(hgetall.query_async(&mut conn)).await?;
        Ok(all
            .into_iter()
            .filter_map(|(f, e)| FacilityId::parse(&f).ok().map(|f| (f, e)))
            .collect())
    }

    /// The pub/sub channel on which `facility`'s owner publishes its
    /// deltas for the other nodes' subscribers.
    pub fn deltas_channel(&self, facility: &FacilityId) -> String {
        self.key(&format!("deltas:{facility}"))
    }

    /// The facility a [`Self::deltas_channel`] name is about.
    pub fn deltas_facility(&self, channel: &str) -> Option<FacilityId> {
        let prefix = self.key("deltas:");
        FacilityId::parse(channel.strip_prefix(&prefix)?).ok()
    }

    /// Publishes `payloads` to `channel` in order, in one round trip.
    pub async fn publish_all(&self, channel: &str, payloads: &[Vec<u8>]) -> Result<(), CoordError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(payload.as_slice())
                .ignore();
        }
        let () = self.bounded(pipe.query_async(&mut conn)).await?;
        Ok(())
    }

    /// The pub/sub channel on which released facilities are announced.
    pub fn hint_channel(&self) -> String {
        self.key("hints")
    }

    /// Tells the other nodes a facility was just released, so its next
    /// owner takes it now rather than at its next tick. Best effort.
    pub async fn hint_released(&self, facility: &FacilityId) {
        let mut conn = self.conn.clone();
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.hint_channel()).arg(facility.as_str());
        if let Err(e) = self.bounded::<i64>(publish.query_async(&mut conn)).await {
            tracing::debug!(facility = %facility, error = %e, "could not publish a release hint");
        }
    }
}
