//! Erasing one recorded session (a meeting with its transcript, summary, deliveries and bots)
//! or one transcript, each with a deletion receipt in the control database's deletion log.
//!
//! Soft deletion (`Meeting::deleted_at`) hides a session at once; [`purge_deleted`] (run by the
//! retention purge) erases sessions whose soft deletion is older than the recovery window.

use crate::vault::receipt_digest;
use crate::{Result, Store};
use chrono::{DateTime, Utc};
use meetbot_core::TenantId;
use meetbot_core::ids::new_record_id;
use meetbot_core::model::DeletionReceipt;

pub async fn receipt(
    store: &dyn Store,
    t: &TenantId,
    scope: &str,
    target: &str,
    requested_by: &str,
    counts: Vec<(String, u64)>,
) -> Result<DeletionReceipt> {
    let mut r = DeletionReceipt {
        id: new_record_id(),
        tenant_id: t.clone(),
        scope: scope.into(),
        target: target.into(),
        requested_by: requested_by.into(),
        erased_at: Utc::now(),
        counts,
        keys_destroyed: vec![],
        digest: String::new(),
    };
    r.digest = receipt_digest(&r);
    store.record_deletion(&r).await?;
    Ok(r)
}

/// Erases a session: transcript, summary, deliveries, bot jobs, then the meeting itself.
/// `Ok(None)` when the meeting does not exist.
pub async fn erase_session(
    store: &dyn Store,
    t: &TenantId,
    meeting_id: &str,
    requested_by: &str,
) -> Result<Option<DeletionReceipt>> {
    if store.get_meeting(t, meeting_id).await?.is_none() {
        return Ok(None);
    }
    let mut counts = Vec::new();
    let transcripts = match store.transcript_for_meeting(t, meeting_id).await? {
        Some(tr) => u64::from(store.delete_transcript(t, &tr.id).await?),
        None => 0,
    };
    counts.push(("transcripts".to_string(), transcripts));
    // The text of a stream still running or never ended (decision 0041).
    counts.push((
        "transcript_parts".to_string(),
        store.delete_transcript_parts(t, meeting_id, None).await?,
    ));
    let summaries = match store.summary_for_meeting(t, meeting_id).await? {
        Some(s) => u64::from(store.delete_summary(t, &s.id).await?),
        None => 0,
    };
    counts.push(("summaries".to_string(), summaries));
    counts.push((
        "deliveries".to_string(),
        store.delete_deliveries_of(t, meeting_id).await?,
    ));
    counts.push((
        "bot_jobs".to_string(),
        store.delete_bot_jobs_of(t, meeting_id).await?,
    ));
    counts.push((
        "meetings".to_string(),
        u64::from(store.delete_meeting(t, meeting_id).await?),
    ));
    let r = receipt(
        store,
        t,
        "session",
        &format!("meeting:{meeting_id}"),
        requested_by,
        counts,
    )
    .await?;
    tracing::info!(tenant = %t, meeting = %meeting_id, receipt = %r.id, "session erased");
    Ok(Some(r))
}

/// Erases a meeting's transcript only. `Ok(None)` when it has none.
pub async fn erase_transcript(
    store: &dyn Store,
    t: &TenantId,
    meeting_id: &str,
    requested_by: &str,
) -> Result<Option<DeletionReceipt>> {
    let Some(tr) = store.transcript_for_meeting(t, meeting_id).await? else {
        return Ok(None);
    };
    let n = u64::from(store.delete_transcript(t, &tr.id).await?);
    // Parts of a stream still running would otherwise bring the text back at its end.
    let parts = store.delete_transcript_parts(t, meeting_id, None).await?;
    let r = receipt(
        store,
        t,
        "transcript",
        &format!("meeting:{meeting_id}"),
        requested_by,
        vec![
            ("transcripts".to_string(), n),
            ("transcript_parts".to_string(), parts),
        ],
    )
    .await?;
    Ok(Some(r))
}

/// Erases every session with `email` among its people (an external contact, a client): the
/// meetings are found by opening their sealed people lists. One receipt for the client.
pub async fn erase_client(
    tenants: &crate::vault::Tenants,
    t: &TenantId,
    email: &str,
    requested_by: &str,
) -> std::result::Result<DeletionReceipt, crate::vault::VaultError> {
    let store = tenants.store();
    let vault = tenants.vault(t).await?;
    let want = email.trim().to_lowercase();
    let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
    let mut sessions = 0u64;
    let all = store.list_meetings(t, None, None).await?;
    // A meeting in several calendars is one session: the client in any copy's people erases
    // every copy (the transcript is kept under the copy that held the bot).
    let mut hit = std::collections::HashSet::new();
    for m in &all {
        let people = crate::retention::people_of(&vault, m)?;
        if people.iter().any(|e| e.eq_ignore_ascii_case(&want)) {
            hit.insert(m.id.clone());
            hit.extend(m.meeting_ref.clone());
        }
    }
    for m in all {
        let theirs = hit.contains(&m.id) || m.meeting_ref.as_ref().is_some_and(|r| hit.contains(r));
        if !theirs {
            continue;
        }
        if let Some(r) = erase_session(&**store, t, &m.id, requested_by).await? {
            sessions += 1;
            for (c, n) in r.counts {
                *totals.entry(c).or_default() += n;
            }
        }
    }
    totals.insert("sessions".into(), sessions);
    // The target names the client by a hash, not the address: receipts outlive the data.
    let target = format!(
        "client:{}",
        crate::vault::sha256_hex(format!("{t}:{want}").as_bytes())
    );
    Ok(receipt(
        &**store,
        t,
        "client",
        &target,
        requested_by,
        totals.into_iter().collect(),
    )
    .await?)
}

/// Erases every session of `t` soft-deleted before `before`.
pub async fn purge_deleted(
    store: &dyn Store,
    t: &TenantId,
    before: DateTime<Utc>,
) -> Result<Vec<DeletionReceipt>> {
    let mut out = Vec::new();
    for m in store.list_meetings(t, None, None).await? {
        if m.deleted_at.is_some_and(|d| d <= before)
            && let Some(r) = erase_session(store, t, &m.id, "system:retention").await?
        {
            out.push(r);
        }
    }
    Ok(out)
}
