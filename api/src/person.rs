//! The right to erasure for one person, by email address: their attendee records go from every
//! meeting's people, their speech segments become "[erased]", and their name and address are
//! replaced by "[erased]" in summaries, across all meetings of the tenant, with a receipt that
//! names them only by a hash.

use crate::error::{ApiError, ApiResult};
use meetbot_calendar_sync::apply::People;
use meetbot_core::TenantId;
use meetbot_core::model::{DeletionReceipt, Meeting, Summary};
use meetbot_store::vault::Tenants;
use meetbot_transcriber::transcript::TranscriptDoc;

pub const ERASED: &str = "[erased]";

/// Lower case, char by char (so that offsets can be mapped back; `str::to_lowercase` would
/// treat a final sigma by its context).
fn lower_chars(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// Replaces every case-insensitive occurrence of any of `needles` in `text`, also where lower
/// case changes the text's byte length ('İ' -> "i̇", 'ẞ' -> 'ß'): matches are found in the
/// lower-cased text and mapped back to the original characters they came from.
fn scrub(text: &str, needles: &[String]) -> String {
    let mut out = text.to_string();
    for n in needles.iter().filter(|n| !n.is_empty()) {
        let nl = lower_chars(n);
        // The lower-cased text, and for each of its bytes the original character's byte range.
        let mut lower = String::with_capacity(out.len());
        let mut from: Vec<(usize, usize)> = Vec::with_capacity(out.len());
        for (o, c) in out.char_indices() {
            let before = lower.len();
            lower.extend(c.to_lowercase());
            from.extend(std::iter::repeat_n(
                (o, o + c.len_utf8()),
                lower.len() - before,
            ));
        }
        let mut result = String::with_capacity(out.len());
        let mut last = 0;
        for (i, _) in lower.match_indices(&nl) {
            let end = i + nl.len();
            // Only whole original characters: the match starts where one's lower case starts
            // and ends where one's ends.
            let starts_whole = i == 0 || from[i - 1] != from[i];
            let ends_whole = end == lower.len() || from[end] != from[end - 1];
            let (o_start, o_end) = (from[i].0, from[end - 1].1);
            if !starts_whole || !ends_whole || o_start < last {
                continue;
            }
            result.push_str(&out[last..o_start]);
            result.push_str(ERASED);
            last = o_end;
        }
        result.push_str(&out[last..]);
        out = result;
    }
    out
}

pub async fn erase_person(
    tenants: &Tenants,
    t: &TenantId,
    email: &str,
    name: Option<&str>,
    requested_by: &str,
) -> ApiResult<DeletionReceipt> {
    let store = tenants.store();
    let vault = tenants.vault(t).await?;
    let email = email.trim().to_lowercase();
    let (mut meetings, mut attendee_records, mut segments, mut summaries) =
        (0u64, 0u64, 0u64, 0u64);
    let mut held = 0u64;
    let all = store.list_meetings(t, None, None).await?;
    // First: the meetings they attended, and every full name those meetings know them by.
    let mut attended = std::collections::HashMap::new();
    let mut full_names: Vec<String> = name.map(String::from).into_iter().collect();
    for m in &all {
        let raw = vault.open::<Meeting>(&m.id, "attendees", &m.attendees)?;
        let Ok(people) = serde_json::from_slice::<People>(&raw) else {
            continue;
        };
        let theirs: Vec<_> = people
            .attendees
            .iter()
            .filter(|a| a.email.eq_ignore_ascii_case(&email))
            .cloned()
            .collect();
        let organizer = people
            .organizer
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case(&email));
        if theirs.is_empty() && !organizer {
            continue;
        }
        full_names.extend(theirs.iter().filter_map(|a| a.name.clone()));
        attended.insert(
            m.id.clone(),
            (people, theirs.len() as u64 + u64::from(organizer)),
        );
    }
    // Everywhere: the address and full names. Where they attended: also their first name.
    let mut strong: Vec<String> = vec![email.clone()];
    strong.extend(full_names.iter().cloned());
    strong.sort_by_key(|n| std::cmp::Reverse(n.len()));
    strong.dedup();
    let mut near = strong.clone();
    near.extend(
        full_names
            .iter()
            .filter_map(|n| n.split_whitespace().next().map(String::from))
            .filter(|f| f.chars().count() > 2),
    );
    near.sort_by_key(|n| std::cmp::Reverse(n.len()));
    near.dedup();
    // A meeting in several calendars keeps its transcript under the copy that held its bot:
    // attending any copy is attending that one.
    let attended_refs: std::collections::HashSet<String> = all
        .iter()
        .filter(|m| attended.contains_key(&m.id))
        .filter_map(|m| m.meeting_ref.clone())
        .collect();
    for mut m in all {
        let here = attended.remove(&m.id);
        let attended_here = here.is_some()
            || m.meeting_ref
                .as_ref()
                .is_some_and(|r| attended_refs.contains(r));
        let needles = if attended_here { &near } else { &strong };
        if let Some((mut people, records)) = here {
            meetings += 1;
            attendee_records += records;
            people
                .attendees
                .retain(|a| !a.email.eq_ignore_ascii_case(&email));
            if people
                .organizer
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case(&email))
            {
                people.organizer = None;
            }
            let json =
                serde_json::to_vec(&people).map_err(|e| ApiError::Internal(e.to_string()))?;
            m.attendees = vault.seal::<Meeting>(&m.id, "attendees", &json)?;
            m.updated_at = chrono::Utc::now();
            // Deleted first: a deletion also clears the old copy from the engine's log.
            store.delete_meeting(t, &m.id).await?;
            store.put_meeting(t, &m).await?;
        }
        let transcript = store.transcript_for_meeting(t, &m.id).await?;
        // Records sealed to the customer's own key cannot be read here: their holder erases
        // within them (counted in the receipt).
        if transcript.as_ref().is_some_and(|tr| tr.held.is_some()) && attended_here {
            held += 1;
        }
        if let Some(tr) = transcript.filter(|tr| tr.held.is_none()) {
            let mut doc =
                TranscriptDoc::open(&vault, &tr).map_err(|e| ApiError::Internal(e.to_string()))?;
            let mut changed = false;
            for s in &mut doc.segments {
                let spoke = s
                    .speaker
                    .as_deref()
                    .is_some_and(|sp| needles.iter().any(|n| sp.eq_ignore_ascii_case(n)));
                if spoke || scrub(&s.participant, &strong) != s.participant {
                    s.speaker = Some(ERASED.into());
                    s.participant = ERASED.into();
                    s.text = ERASED.into();
                    segments += 1;
                    changed = true;
                } else {
                    let text = scrub(&s.text, needles);
                    changed |= text != s.text;
                    s.text = text;
                }
            }
            // Who was in the call: their stay is kept, the name the meeting showed for them
            // goes (also inside a longer label, "Sarah Connor (Guest)"), and so does a
            // participant id made of it (a browser bot's id can be the display name).
            for p in &mut doc.presence {
                let named = p.name.as_deref().is_some_and(|n| {
                    needles.iter().any(|x| n.eq_ignore_ascii_case(x)) || scrub(n, &strong) != n
                });
                if named || scrub(&p.participant, &strong) != p.participant {
                    p.name = Some(ERASED.into());
                    p.participant = ERASED.into();
                    changed = true;
                }
            }
            if changed {
                let resealed = doc
                    .seal(&vault, &tr.id, &m.id, tr.expires_at)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                store.delete_transcript(t, &tr.id).await?;
                store
                    .put_transcript(
                        t,
                        &meetbot_core::model::Transcript {
                            created_at: tr.created_at,
                            ..resealed
                        },
                    )
                    .await?;
            }
        }
        if let Some(s) = store
            .summary_for_meeting(t, &m.id)
            .await?
            .filter(|s| s.held.is_none())
        {
            let doc = crate::routes::open_summary(&vault, &s)?;
            let mut new = doc.clone();
            new.overview = scrub(&doc.overview, needles);
            new.decisions = doc.decisions.iter().map(|d| scrub(d, needles)).collect();
            new.topics = doc.topics.iter().map(|d| scrub(d, needles)).collect();
            for a in &mut new.action_items {
                a.text = scrub(&a.text, needles);
                a.owner = a.owner.as_deref().map(|o| scrub(o, needles));
            }
            if new != doc {
                let json =
                    serde_json::to_vec(&new).map_err(|e| ApiError::Internal(e.to_string()))?;
                let body = vault.seal::<Summary>(&s.id, "body", &json)?;
                store.delete_summary(t, &s.id).await?;
                store.put_summary(t, &Summary { body, ..s }).await?;
                summaries += 1;
            }
        }
    }
    let target = format!(
        "person:{}",
        meetbot_store::vault::sha256_hex(format!("{t}:{email}").as_bytes())
    );
    Ok(meetbot_store::erase::receipt(
        &**store,
        t,
        "person",
        &target,
        requested_by,
        vec![
            ("meetings".into(), meetings),
            ("attendee_records".into(), attendee_records),
            ("transcript_segments".into(), segments),
            ("summaries".into(), summaries),
            ("customer_sealed_untouched".into(), held),
        ],
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_and_addresses_are_replaced_whatever_their_case() {
        let n = vec![
            "sarah connor".to_string(),
            "sarah".to_string(),
            "s@x.test".into(),
        ];
        assert_eq!(
            scrub("Sarah Connor will mail S@X.test; SARAH agrees.", &n),
            "[erased] will mail [erased]; [erased] agrees."
        );
        assert_eq!(scrub("nothing here", &n), "nothing here");
        let accented = vec!["zoë ünal".to_string()];
        assert_eq!(scrub("Zoë Ünal said hi", &accented), "[erased] said hi");
    }

    /// Attack: a person whose name lower-cases to a different byte length ('İ' -> "i̇",
    /// 'ẞ' -> 'ß') stayed in the text after their erasure.
    #[test]
    fn erasure_scrubs_names_whose_lower_case_changes_byte_length() {
        let n = vec!["İlkay Straẞer".to_string(), "i̇lkay".to_string()];
        assert_eq!(
            scrub(
                "Notes by İLKAY STRAẞER and ilkay straßer; İlkay agrees. ok",
                &n
            ),
            "Notes by [erased] and ilkay straßer; [erased] agrees. ok"
        );
        let n = vec!["Şükrü İnce".to_string()];
        assert_eq!(
            scrub("İ said: ŞÜKRÜ İNCE and şükrü i̇nce called", &n),
            "İ said: [erased] and [erased] called"
        );
        let n = vec!["Großmann".to_string()];
        assert_eq!(scrub("GROẞMANN, İstanbul", &n), "[erased], İstanbul");
    }

    proptest! {
        #[test]
        fn scrubbing_never_panics(text in ".{0,80}", needle in ".{0,8}") {
            let _ = scrub(&text, &[needle]);
        }
    }
}
