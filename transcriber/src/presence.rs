//! Who was in the call: each participant's stay as the bot saw it (their display name or first
//! audio when they came, their leaving), kept with the transcript under the same seal and
//! deleted with it. Stored in the stream's parts as it changes, so a transcriber that restarts
//! mid-meeting keeps it (decision 0041).

use serde::{Deserialize, Serialize};

/// One participant's stay in the call, on the transcript's clock (ms from the stream's start,
/// as the transcriber received the bot's frames).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The stream's participant id (opaque).
    pub participant: String,
    /// The name the meeting showed, when it told (filled in when the transcript is stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub joined_ms: u64,
    /// `None`: still in the call when the bot left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_ms: Option<u64>,
}

/// At most this many stays are kept for one meeting (a meeting has a few hundred people at
/// most; a bot that reports more is not believed past it).
pub const MAX_PRESENCE: usize = 1024;

/// Adds `more` to `into`: one entry per stay (participant and join time), a stay known to have
/// ended keeps its end and a known name is kept; ordered by join time, then participant.
pub fn merge_presence(into: &mut Vec<Presence>, more: impl IntoIterator<Item = Presence>) {
    let mut at: std::collections::HashMap<(String, u64), usize> = Default::default();
    for (i, p) in into.iter().enumerate() {
        at.entry((p.participant.clone(), p.joined_ms)).or_insert(i);
    }
    for p in more {
        match at.get(&(p.participant.clone(), p.joined_ms)) {
            Some(&i) => {
                let q = &mut into[i];
                if q.left_ms.is_none() {
                    q.left_ms = p.left_ms;
                }
                if q.name.is_none() {
                    q.name = p.name;
                }
            }
            None if into.len() < MAX_PRESENCE => {
                at.insert((p.participant.clone(), p.joined_ms), into.len());
                into.push(p);
            }
            None => {}
        }
    }
    into.sort_by(|a, b| (a.joined_ms, &a.participant).cmp(&(b.joined_ms, &b.participant)));
}

/// A participant is in the call (named, or heard): opens a stay at `at_ms` unless one is open.
/// Returns whether anything changed.
pub fn arrive(stays: &mut Vec<Presence>, participant: &str, at_ms: u64) -> bool {
    if stays
        .iter()
        .any(|p| p.participant == participant && p.left_ms.is_none())
        || stays.len() >= MAX_PRESENCE
    {
        return false;
    }
    stays.push(Presence {
        participant: participant.into(),
        name: None,
        joined_ms: at_ms,
        left_ms: None,
    });
    true
}

/// A participant was heard at `at_ms`: a participant the bot named nobody for is in the call
/// from their first audio. Audio never reopens a stay: frames still in flight when someone
/// leaves arrive after their leaving, and a rejoin is announced by a name. Returns whether
/// anything changed.
pub fn heard(stays: &mut Vec<Presence>, participant: &str, at_ms: u64) -> bool {
    if stays.iter().any(|p| p.participant == participant) {
        return false;
    }
    arrive(stays, participant, at_ms)
}

/// A participant left at `at_ms`: closes their open stay (a leave never announced is ignored).
/// Returns whether anything changed.
pub fn leave(stays: &mut [Presence], participant: &str, at_ms: u64) -> bool {
    match stays
        .iter_mut()
        .find(|p| p.participant == participant && p.left_ms.is_none())
    {
        Some(p) => {
            p.left_ms = Some(at_ms.max(p.joined_ms));
            true
        }
        None => false,
    }
}

/// Gives each stay without a name the one `names` holds for its participant.
pub fn name(stays: &mut [Presence], names: &std::collections::BTreeMap<String, String>) {
    for p in stays.iter_mut().filter(|p| p.name.is_none()) {
        p.name = names.get(&p.participant).cloned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_participant_who_leaves_and_comes_back_has_two_stays() {
        let mut s = Vec::new();
        assert!(arrive(&mut s, "a", 100));
        assert!(!arrive(&mut s, "a", 200), "already in the call");
        assert!(leave(&mut s, "a", 5_000));
        assert!(!leave(&mut s, "a", 6_000), "already gone");
        assert!(arrive(&mut s, "a", 7_000));
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].joined_ms, s[0].left_ms), (100, Some(5_000)));
        assert_eq!((s[1].joined_ms, s[1].left_ms), (7_000, None));
    }

    #[test]
    fn audio_arriving_after_a_leave_does_not_bring_the_participant_back() {
        let mut s = Vec::new();
        assert!(heard(&mut s, "a", 0), "first heard: in the call");
        assert!(leave(&mut s, "a", 35_000));
        assert!(!heard(&mut s, "a", 35_020), "a frame still in flight");
        assert_eq!(s.len(), 1);
        assert!(arrive(&mut s, "a", 60_000), "named again: back in the call");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_leave_never_ends_before_its_join() {
        let mut s = Vec::new();
        arrive(&mut s, "a", 900);
        leave(&mut s, "a", 100);
        assert_eq!(s[0].left_ms, Some(900));
    }

    #[test]
    fn merging_keeps_one_entry_per_stay_with_its_end_and_name() {
        let mut a = Vec::new();
        arrive(&mut a, "x", 10);
        arrive(&mut a, "y", 20);
        let mut b = a.clone();
        leave(&mut b, "x", 30);
        name(&mut b, &[("y".to_string(), "Yosef".to_string())].into());
        merge_presence(&mut a, b);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].left_ms, Some(30));
        assert_eq!(a[1].name.as_deref(), Some("Yosef"));
    }

    #[test]
    fn a_bot_reporting_endless_participants_is_capped() {
        let mut s = Vec::new();
        for i in 0..(MAX_PRESENCE + 50) {
            arrive(&mut s, &format!("p{i}"), i as u64);
        }
        assert_eq!(s.len(), MAX_PRESENCE);
        let more: Vec<_> = (0..10)
            .map(|i| Presence {
                participant: format!("q{i}"),
                name: None,
                joined_ms: 0,
                left_ms: None,
            })
            .collect();
        merge_presence(&mut s, more);
        assert_eq!(s.len(), MAX_PRESENCE);
    }

    proptest! {
        /// Whatever order a bot's joins and leaves come in, each participant has at most one
        /// open stay, every stay ends no earlier than it began, and merging a list into itself
        /// changes nothing.
        #[test]
        fn any_sequence_of_joins_and_leaves_stays_consistent(
            events in proptest::collection::vec((0u8..4, any::<bool>(), 0u64..10_000), 0..200)
        ) {
            let mut s = Vec::new();
            for (who, join, at) in events {
                let who = format!("p{who}");
                if join { arrive(&mut s, &who, at); } else { leave(&mut s, &who, at); }
            }
            for w in 0..4 {
                let open = s.iter().filter(|p| p.participant == format!("p{w}") && p.left_ms.is_none()).count();
                prop_assert!(open <= 1);
            }
            prop_assert!(s.iter().all(|p| p.left_ms.is_none_or(|l| l >= p.joined_ms)));
            let mut m = s.clone();
            merge_presence(&mut m, s.clone());
            let mut sorted = s.clone();
            merge_presence(&mut sorted, Vec::new());
            prop_assert_eq!(m, sorted);
        }
    }
}
