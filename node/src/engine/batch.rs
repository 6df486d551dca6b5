//! Publishing many of this hub's records at once (`hubcat import`, `POST /v1/import`).
//!
//! Each record becomes its own signed Automerge change, exactly as [`Catalogue::publish`]
//! makes it (one change per upsert keeps Automerge's sync incremental), but the whole batch is
//! verified in one batch verification and made durable with one store append and one flush:
//! a publish costs a flush (about 90 µs here) while an import of thousands of rows pays it
//! once per batch. A store append is one sled batch, so after a crash either every change of a
//! batch is in the log or none is; a record is never half-written.

use super::*;

/// What became of one record of a batch: its id (`slot@z6Mk…`), or why it was refused.
pub type BatchRow = Result<String, EngineError>;

impl Catalogue {
    /// Validate, sign and publish `records` as this hub's own, each as its own signed change,
    /// made durable together. A record that does not validate, names another publisher, or
    /// whose slot holds another kind of record is refused alone (its row is the error) and
    /// changes nothing; the others are published, in order (a later record with the same id
    /// updates an earlier one). With `dry_run` every check runs and nothing is signed or kept.
    ///
    /// `Err` means the batch as a whole failed (storage): then none of it was kept.
    pub fn publish_batch(
        &self,
        records: &[Record],
        dry_run: bool,
    ) -> Result<Vec<BatchRow>, EngineError> {
        let own_did = self.hub.to_did();
        let own = DocId::Hub(self.hub);
        let now = hubcat_protocol::now_ms();
        let mut rows: Vec<Option<BatchRow>> = Vec::with_capacity(records.len());
        let mut made: Vec<(usize, Change)> = Vec::new();
        let mut state = self.lock();
        self.can_sign(&state)?;
        let before = {
            let State {
                docs,
                records: views,
                federation,
                ..
            } = &mut *state;
            let ds = docs
                .entry(own.clone())
                .or_insert_with(|| DocState::new_in(self.own_doc(), federation.as_ref()));
            // Changes are made on the Automerge document itself: bring it up to date first.
            ds.settle(views, BTreeSet::new(), true);
            let before = ds.doc.heads();
            for (i, record) in records.iter().enumerate() {
                let checked = record.validate().map_err(EngineError::from).and_then(|()| {
                    match &record.meta().publisher {
                        Some(p) if *p != own_did => Err(EngineError::Invalid(RecordError::field(
                            "publisher",
                            format!("this node publishes as {own_did}, not {p}"),
                        ))),
                        _ => Ok(()),
                    }
                });
                if let Err(e) = checked {
                    rows.push(Some(Err(e)));
                    continue;
                }
                // An upsert that fails leaves the document as it was (layout checks run
                // before its transaction; a failing operation rolls the transaction back).
                match ds.doc.upsert(record, now) {
                    Ok(change) => {
                        made.push((i, change));
                        rows.push(None);
                    }
                    Err(e) => rows.push(Some(Err(e.into()))),
                }
            }
            before
        };
        let mut slots = Vec::with_capacity(made.len());
        for (_, change) in &made {
            match layout::check_change(&own, change) {
                Ok(s) => slots.push(s.into_iter().next()),
                Err(e) => {
                    self.roll_back_own(&mut state, &before)?;
                    return Err(EngineError::Internal(format!(
                        "a change made for the batch does not pass the layout check: {e}"
                    )));
                }
            }
        }
        let id_of = |slot: &Option<Slot>| -> Result<String, EngineError> {
            slot.as_ref()
                .map(|s| RecordId::new(self.hub, s.clone()).to_string())
                .ok_or_else(|| EngineError::Internal("upsert wrote no slot".into()))
        };
        if dry_run || made.is_empty() {
            self.roll_back_own(&mut state, &before)?;
            for ((i, _), slot) in made.iter().zip(&slots) {
                rows[*i] = Some(id_of(slot));
            }
            return Ok(rows.into_iter().map(finished).collect());
        }
        let envelopes: Vec<SignedChange> = made
            .iter()
            .map(|(_, c)| change::sign(&self.key(), &own, c))
            .collect();
        let announced = envelopes.clone();
        let mut verified = Vec::with_capacity(envelopes.len());
        for (index, r) in change::verify_batch_with(envelopes, now, &self.authors)
            .into_iter()
            .enumerate()
        {
            match r {
                Ok(v) => verified.push((index, v)),
                Err(e) => {
                    self.roll_back_own(&mut state, &before)?;
                    return Err(EngineError::Refused(e));
                }
            }
        }
        match self.commit(&mut state, verified) {
            Ok(outcome) if outcome.refused.is_empty() && outcome.held.is_empty() => {}
            Ok(outcome) => {
                self.roll_back_own(&mut state, &before)?;
                let detail = outcome
                    .refused
                    .into_iter()
                    .chain(outcome.held)
                    .map(|r| r.detail)
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(EngineError::Internal(detail));
            }
            Err(e) => {
                self.roll_back_own(&mut state, &before)?;
                return Err(e);
            }
        }
        drop(state);
        for envelope in announced {
            // Nobody listening (no network) is fine.
            let _ = self.local_tx.send(envelope);
        }
        for ((i, _), slot) in made.iter().zip(&slots) {
            rows[*i] = Some(id_of(slot));
        }
        Ok(rows.into_iter().map(finished).collect())
    }

    /// Put this hub's document back at `heads` (a fork keeps history up to there; the actor
    /// stays ours).
    fn roll_back_own(&self, state: &mut State, heads: &[ChangeHash]) -> Result<(), EngineError> {
        let own = DocId::Hub(self.hub);
        if let Some(ds) = state.docs.get_mut(&own) {
            let mut doc = CatalogueDoc::from_automerge(
                ds.doc.id().clone(),
                ds.doc
                    .automerge()
                    .fork_at(heads)
                    .map_err(|e| EngineError::Internal(e.to_string()))?,
            );
            doc.set_actor(&self.key().id(), self.actor_suffix);
            ds.doc = doc;
        }
        Ok(())
    }
}

fn finished(row: Option<BatchRow>) -> BatchRow {
    row.unwrap_or_else(|| Err(EngineError::Internal("row left without an outcome".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::service;
    use crate::store::SledStore;

    fn practice(slug: &str) -> Record {
        Record::from_value(serde_json::json!({"kind": "practice", "id": slug,
            "title": {"en": "A practice"}, "description": {"en": "Done somewhere."},
            "practice_type": "app", "maturity": "pilot"}))
        .expect("valid")
    }

    #[test]
    fn a_batch_publishes_each_record_as_its_own_change_and_refuses_bad_ones_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = [9u8; 32];
        let store = Arc::new(SledStore::open(dir.path()).expect("store"));
        let c = Catalogue::open(store.clone(), HubKey::from_secret_bytes(&key).expect("key"))
            .expect("open");
        c.publish(&service("taken", "A service in the slot"))
            .expect("publish");
        let digest = c.status().digest;
        let mut foreign = service("foreign", "Not ours");
        foreign.meta_mut().publisher = Some(
            HubKey::from_secret_bytes(&[8; 32])
                .expect("key")
                .id()
                .to_did(),
        );
        let batch = vec![
            service("a", "First"),
            practice("taken"),
            foreign,
            service("b", "Second"),
            service("a", "First, updated"),
        ];
        // A dry run reports the same outcome and keeps nothing.
        let dry = c.publish_batch(&batch, true).expect("dry run");
        assert_eq!(c.status().digest, digest);
        assert_eq!(c.record_count(), 1);
        let rows = c.publish_batch(&batch, false).expect("batch");
        for (d, r) in dry.iter().zip(&rows) {
            assert_eq!(d.as_ref().ok(), r.as_ref().ok());
        }
        assert!(matches!(rows[1], Err(EngineError::Conflict(_))), "{rows:?}");
        match &rows[2] {
            Err(EngineError::Invalid(e)) => assert_eq!(e.field.as_deref(), Some("publisher")),
            other => panic!("expected a publisher refusal, got {other:?}"),
        }
        let ids: Vec<&String> = rows.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(c.record_count(), 3);
        assert_eq!(c.get("a").expect("a").record.title(None), "First, updated");
        // One signed change per published row (plus the first publish).
        assert_eq!(store.change_count(), 4);
        drop(c);
        let c =
            Catalogue::open(store, HubKey::from_secret_bytes(&key).expect("key")).expect("reopen");
        assert_eq!(c.record_count(), 3);
        assert_eq!(c.get("b").expect("b").record.title(None), "Second");
        c.publish(&service("c", "After the batch"))
            .expect("publish after a batch and a reopen");
    }
}
