//! Sensor keys: derived from the node's secret, the facility id and the
//! key's generation, stored only hashed; the one check behind the sensor
//! handshake ([`Node::admit_sensor`]) and rotation with revocation.
//!
//! This module must never store or log a key, only its hash.

use parkme_engine::FacilityId;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{FacilityHandle, FacilityMsg, Node, ask};
use crate::error::ActorError;
use crate::record::hash_key;

/// What a sensor key check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    Valid,
    UnknownFacility,
    /// No key was presented.
    Missing,
    /// The current key of another facility.
    Foreign,
    Wrong,
}

/// A facility's current sensor key, as far as checking it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensorKey {
    /// 0 until the first rotation, one more at each.
    pub generation: u64,
    /// SHA-256 of the key ([`hash_key`]).
    pub hash: [u8; 32],
}

impl SensorKey {
    /// Whether a key with this hash is the current one (constant time).
    pub fn is(&self, hash: &[u8; 32]) -> bool {
        self.hash
            .iter()
            .zip(hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// A sensor admitted by [`Node::admit_sensor`].
#[derive(Debug)]
pub struct SensorGrant {
    /// The hash of the key it presented.
    pub hash: [u8; 32],
    /// The facility's current key: once it is no longer `hash`, the key
    /// this sensor came with was revoked.
    pub current: watch::Receiver<SensorKey>,
}

impl SensorGrant {
    /// Whether the key this sensor came with is still the current one.
    pub fn still_valid(&mut self) -> bool {
        self.current.borrow_and_update().is(&self.hash)
    }
}

impl Node {
    /// Records `new` as `id`'s key in the owner index (dropping `old`).
    pub(super) fn own_key(&self, id: &FacilityId, old: Option<SensorKey>, new: SensorKey) {
        let mut owners = self
            .inner
            .key_owners
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(old) = old
            && old.hash != new.hash
            && owners.get(&old.hash) == Some(id)
        {
            owners.remove(&old.hash);
        }
        owners.insert(new.hash, id.clone());
    }

    /// Makes `new` the key sensors of `handle` must present; sockets that
    /// came with another key are told.
    pub(super) fn install_key(&self, id: &FacilityId, handle: &FacilityHandle, new: SensorKey) {
        let mut old = None;
        handle.sensor_key.send_if_modified(|current| {
            old = Some(*current);
            let changed = *current != new;
            *current = new;
            changed
        });
        self.own_key(id, old, new);
    }

    /// The sensor key of generation `generation`: derived from the node
    /// secret, the facility id and the generation, so the current key can
    /// be handed out again without being stored. Generation 0 is the key
    /// of records written before rotation existed.
    pub(super) fn derive_key(&self, id: &FacilityId, generation: u64) -> String {
        let mut hasher = Sha256::new();
        hasher.update((self.inner.config.key_secret.len() as u64).to_le_bytes());
        hasher.update(&self.inner.config.key_secret);
        hasher.update(b"parkme-sensor-key:");
        hasher.update(id.as_str().as_bytes());
        if generation > 0 {
            hasher.update(b":generation:");
            hasher.update(generation.to_le_bytes());
        }
        format!("sk_{}", hex::encode(&hasher.finalize()[..20]))
    }

    /// The current sensor key of a facility.
    pub fn sensor_key(&self, id: &FacilityId) -> Result<String, ActorError> {
        let handle = self.handle(id)?;
        let generation = handle.sensor_key.borrow().generation;
        Ok(self.derive_key(id, generation))
    }

    /// Gives a facility a new sensor key and revokes the old one at once:
    /// handshakes with it are refused from now on, and open sockets that
    /// came with it are told to close. Returns the new key.
    pub async fn rotate_sensor_key(&self, id: &FacilityId) -> Result<String, ActorError> {
        let handle = self.handle(id)?;
        let _writes = handle.record_writes.lock().await;
        let current = *handle.sensor_key.borrow();
        // A u64 of rotations is never exhausted.
        let generation = current.generation.saturating_add(1);
        let key = self.derive_key(id, generation);
        let new = SensorKey {
            generation,
            hash: hash_key(&key),
        };
        ask(&handle.actor, |reply| FacilityMsg::SetSensorKey {
            generation,
            hash: new.hash,
            reply,
        })
        .await??;
        self.install_key(id, &handle, new);
        tracing::info!(facility = %id, generation, "sensor key rotated");
        Ok(key)
    }

    /// Admits a sensor presenting `key` (if any) to facility `id`: the
    /// one check behind the sensor handshake. On success, the hash it came
    /// with and a watch of the facility's current key, to close the socket
    /// once that key is revoked.
    pub fn admit_sensor(
        &self,
        id: &FacilityId,
        key: Option<&str>,
    ) -> Result<SensorGrant, KeyCheck> {
        let Ok(handle) = self.handle(id) else {
            return Err(KeyCheck::UnknownFacility);
        };
        let key = key.ok_or(KeyCheck::Missing)?;
        match self.check_sensor_key(id, key) {
            KeyCheck::Valid => Ok(SensorGrant {
                hash: hash_key(key),
                current: handle.sensor_key.subscribe(),
            }),
            refused => Err(refused),
        }
    }

    /// The current sensor key of a facility, to watch for revocation.
    pub fn watch_sensor_key(&self, id: &FacilityId) -> Option<watch::Receiver<SensorKey>> {
        self.handle(id).ok().map(|h| h.sensor_key.subscribe())
    }

    /// Checks a presented sensor key against the facility named: one
    /// hash and two lookups, whatever the number of facilities.
    pub fn check_sensor_key(&self, id: &FacilityId, key: &str) -> KeyCheck {
        let Ok(handle) = self.handle(id) else {
            return KeyCheck::UnknownFacility;
        };
        let given = hash_key(key);
        if handle.sensor_key.borrow().is(&given) {
            return KeyCheck::Valid;
        }
        let owner = self
            .inner
            .key_owners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&given)
            .cloned();
        match owner {
            Some(other)
                if other != *id
                    && self
                        .handle(&other)
                        .is_ok_and(|h| h.sensor_key.borrow().is(&given)) =>
            {
                KeyCheck::Foreign
            }
            _ => KeyCheck::Wrong,
        }
    }
}
