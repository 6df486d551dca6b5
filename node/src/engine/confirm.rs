//! Confirming records: the publisher re-signs a record with only `last_confirmed` changed, so
//! it stops showing as stale everywhere (the change travels like any other).

use hubcat_protocol::{RecordId, Slot};

use super::{Catalogue, EngineError, RecordKey, RecordView};

impl Catalogue {
    /// Confirm one of this hub's records (one signed change); returns the record as now held.
    pub fn confirm(&self, id: &str) -> Result<RecordView, EngineError> {
        let rid = self.resolve(id)?;
        if rid.publisher != self.hub {
            return Err(EngineError::Forbidden(format!(
                "record {rid} belongs to {}; only its publisher may confirm it",
                rid.publisher
            )));
        }
        if !self.lock().records.contains_key(&RecordKey::of(&rid)) {
            return Err(EngineError::NotFound(format!("no record with id `{id}`")));
        }
        let now = hubcat_protocol::now_ms();
        let slot = rid.slot.clone();
        self.local_change(|doc| Ok((doc.confirm(&slot, now)?, slot.clone())))?;
        self.get_own(&slot)
    }

    /// Confirm every record this hub publishes, one signed change each (one Automerge change
    /// per record, as for any upsert); returns their ids. Stops at the first failure, keeping
    /// the confirmations made before it.
    pub fn confirm_all(&self) -> Result<Vec<String>, EngineError> {
        let own = self.hub;
        let slots: Vec<Slot> = {
            let state = self.lock();
            let mut slots: Vec<Slot> = state
                .records
                .keys()
                .filter(|k| k.publisher == *own.as_bytes())
                .map(|k| k.slot.clone())
                .collect();
            slots.sort();
            slots
        };
        let mut done = Vec::with_capacity(slots.len());
        for slot in slots {
            let now = hubcat_protocol::now_ms();
            self.local_change(|doc| Ok((doc.confirm(&slot, now)?, slot.clone())))?;
            done.push(RecordId::new(own, slot).to_string());
        }
        Ok(done)
    }
}
