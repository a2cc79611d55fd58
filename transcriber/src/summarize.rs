//! The `Summarizer` seam: a transcript in, an overview, key decisions, action items (with an
//! owner when one was said) and topics out.
//!
//! - [`Extractive`] (the default): local, no network, no model: sentences picked and classified
//!   by what they say ("we decided", "I'll send", "Bob, can you ...").
//! - [`ChatSummarizer`]: OpenAI-compatible chat completions (OpenAI, Azure OpenAI) or the
//!   Anthropic Messages API. Long transcripts are summarised in parts, then the parts merged.

use crate::transcript::TranscriptDoc;
use meetbot_core::config::{SummarizerConfig, SummarizerKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionItem {
    #[serde(default)]
    pub owner: Option<String>,
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryDoc {
    #[serde(default)]
    pub overview: String,
    #[serde(default)]
    pub decisions: Vec<String>,
    #[serde(default)]
    pub action_items: Vec<ActionItem>,
    #[serde(default)]
    pub topics: Vec<String>,
}

impl SummaryDoc {
    pub fn to_text(&self) -> String {
        let mut s = format!("Overview\n  {}\n", self.overview);
        s.push_str("Decisions\n");
        for d in &self.decisions {
            s.push_str(&format!("  - {d}\n"));
        }
        s.push_str("Action items\n");
        for a in &self.action_items {
            match &a.owner {
                Some(o) => s.push_str(&format!("  - [{o}] {}\n", a.text)),
                None => s.push_str(&format!("  - {}\n", a.text)),
            }
        }
        s.push_str(&format!("Topics\n  {}\n", self.topics.join(", ")));
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    #[error("the transcript is empty: nothing to summarise")]
    Empty,
    #[error("the summarizer at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the summarizer refused the credentials (HTTP {0}); check the API key")]
    Unauthorized(u16),
    #[error("the summarizer answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("the summarizer's answer was not a summary: {0}")]
    Protocol(String),
    #[error("summarizer configuration: {0}")]
    Config(String),
}

#[async_trait::async_trait]
pub trait Summarizer: Send + Sync {
    fn name(&self) -> &str;
    async fn summarize(&self, t: &TranscriptDoc) -> Result<SummaryDoc, SummarizeError>;
}

pub fn from_config(c: &SummarizerConfig) -> Result<Box<dyn Summarizer>, SummarizeError> {
    Ok(match c.kind {
        SummarizerKind::Extractive => Box::new(Extractive),
        SummarizerKind::Openai | SummarizerKind::Anthropic => Box::new(ChatSummarizer::new(c)?),
    })
}

/// One spoken sentence and who said it.
struct Sentence {
    speaker: String,
    text: String,
}

fn sentences(t: &TranscriptDoc) -> Vec<Sentence> {
    let mut out = Vec::new();
    for seg in &t.segments {
        let who = seg
            .speaker
            .clone()
            .unwrap_or_else(|| seg.participant.clone());
        let mut cur = String::new();
        for c in seg.text.chars() {
            cur.push(c);
            if matches!(c, '.' | '?' | '!') {
                let s = cur.trim().to_string();
                if s.split_whitespace().count() >= 2 {
                    out.push(Sentence {
                        speaker: who.clone(),
                        text: s,
                    });
                }
                cur.clear();
            }
        }
        let s = cur.trim().to_string();
        if s.split_whitespace().count() >= 2 {
            out.push(Sentence {
                speaker: who.clone(),
                text: s,
            });
        }
    }
    out
}

const STOP: &[&str] = &[
    "a",
    "about",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "done",
    "don't",
    "for",
    "from",
    "get",
    "go",
    "going",
    "good",
    "got",
    "had",
    "has",
    "have",
    "he",
    "her",
    "here",
    "him",
    "his",
    "how",
    "i",
    "i'll",
    "i'm",
    "if",
    "in",
    "into",
    "is",
    "it",
    "it's",
    "its",
    "just",
    "know",
    "let",
    "let's",
    "like",
    "make",
    "me",
    "more",
    "my",
    "need",
    "needs",
    "next",
    "no",
    "not",
    "now",
    "of",
    "ok",
    "okay",
    "on",
    "one",
    "or",
    "our",
    "out",
    "over",
    "please",
    "right",
    "said",
    "say",
    "see",
    "she",
    "should",
    "so",
    "some",
    "sure",
    "take",
    "than",
    "thank",
    "thanks",
    "that",
    "that's",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "think",
    "this",
    "those",
    "to",
    "today",
    "too",
    "up",
    "us",
    "very",
    "want",
    "was",
    "we",
    "we'll",
    "we're",
    "well",
    "were",
    "what",
    "when",
    "where",
    "which",
    "who",
    "will",
    "with",
    "would",
    "yeah",
    "yes",
    "you",
    "you'll",
    "your",
    "agreed",
    "decided",
    "decision",
    "action",
    "item",
    "everyone",
    "week",
    "friday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "tomorrow",
    "end",
    "by",
    "meeting",
    "call",
    "also",
    "first",
    "second",
    "last",
    "new",
    "each",
    "every",
    "still",
    "really",
    "things",
    "thing",
    "lot",
];

fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
}

fn is_decision(s: &str) -> bool {
    let l = s.to_lowercase();
    [
        "we decided",
        "we've decided",
        "we have decided",
        "decided to",
        "we agreed",
        "we've agreed",
        "agreed to",
        "agreed that",
        "let's go with",
        "we will go with",
        "we'll go with",
        "the decision is",
        "final decision",
        "is approved",
        "we approve",
        "decision:",
    ]
    .iter()
    .any(|p| l.contains(p))
}

/// An action item and its owner, if the sentence assigns one.
fn action(s: &Sentence, names: &HashSet<String>) -> Option<ActionItem> {
    let l = s.text.to_lowercase();
    let first_person = [
        "i'll ",
        "i will ",
        "i'm going to ",
        "i am going to ",
        "i can take ",
        "i'll take ",
        "let me ",
    ];
    if l.contains("action item") {
        return Some(ActionItem {
            owner: owner_named(&s.text, names),
            text: s.text.clone(),
        });
    }
    if first_person
        .iter()
        .any(|p| l.starts_with(p) || l.contains(&format!(" {p}")))
    {
        return Some(ActionItem {
            owner: Some(s.speaker.clone()),
            text: s.text.clone(),
        });
    }
    let deadline = [
        " by monday",
        " by tuesday",
        " by wednesday",
        " by thursday",
        " by friday",
        " by tomorrow",
        " by next week",
        " by the end of",
        " before the next",
        " by end of",
        " by eod",
        " this week",
        " next week",
    ]
    .iter()
    .any(|p| l.contains(p));
    let request = ["can you ", "could you ", "please ", "would you "]
        .iter()
        .any(|p| l.starts_with(p) || l.contains(&format!(", {p}")) || l.contains(&format!(" {p}")));
    let assigned = owner_named(&s.text, names);
    let will = l.contains(" will ") || l.contains(" needs to ") || l.contains(" need to ");
    if request || (assigned.is_some() && (will || deadline)) || (deadline && will) {
        return Some(ActionItem {
            owner: assigned,
            text: s.text.clone(),
        });
    }
    None
}

/// A capitalised name the sentence addresses or assigns: "Bob will ...", "Alice, can you ...".
fn owner_named(text: &str, names: &HashSet<String>) -> Option<String> {
    let toks: Vec<&str> = text.split_whitespace().collect();
    for (i, t) in toks.iter().enumerate() {
        let w = t.trim_matches(|c: char| !c.is_alphanumeric());
        let cap = w.chars().next().is_some_and(char::is_uppercase) && w.len() > 1;
        if !cap || w == "I" {
            continue;
        }
        let lw = w.to_lowercase();
        if STOP.contains(&lw.as_str()) {
            continue;
        }
        let next = toks
            .get(i + 1)
            .map(|n| n.to_lowercase())
            .unwrap_or_default();
        let addressed = t.ends_with(',');
        let known = names.contains(&lw);
        if known
            || matches!(next.as_str(), "will" | "should" | "needs" | "can" | "to")
            || (addressed && i == 0)
        {
            return Some(w.to_string());
        }
    }
    None
}

/// The local, network-free summarizer.
pub struct Extractive;

impl Extractive {
    pub fn summarize_sync(&self, t: &TranscriptDoc) -> Result<SummaryDoc, SummarizeError> {
        let ss = sentences(t);
        if ss.is_empty() {
            return Err(SummarizeError::Empty);
        }
        let names: HashSet<String> = t
            .segments
            .iter()
            .filter_map(|s| s.speaker.as_ref())
            .flat_map(|n| words(n).collect::<Vec<_>>())
            .collect();
        let mut freq: HashMap<String, usize> = HashMap::new();
        for s in &ss {
            for w in words(&s.text) {
                if w.len() >= 4 && !STOP.contains(&w.as_str()) && !names.contains(&w) {
                    *freq.entry(w).or_default() += 1;
                }
            }
        }
        let mut decisions = Vec::new();
        let mut actions = Vec::new();
        for s in &ss {
            if is_decision(&s.text) {
                decisions.push(s.text.clone());
            } else if let Some(a) = action(s, &names) {
                actions.push(a);
            }
        }
        // Overview: the three sentences densest in the meeting's frequent words, in order.
        let score = |s: &Sentence| -> f64 {
            let ws: Vec<String> = words(&s.text).collect();
            let sum: usize = ws.iter().map(|w| freq.get(w).copied().unwrap_or(0)).sum();
            sum as f64 / (ws.len() as f64).sqrt().max(1.0)
        };
        let mut ranked: Vec<(usize, f64)> =
            ss.iter().enumerate().map(|(i, s)| (i, score(s))).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut pick: Vec<usize> = ranked.iter().take(3).map(|r| r.0).collect();
        pick.sort();
        let overview = pick
            .iter()
            .map(|i| ss[*i].text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let mut by_freq: Vec<(String, usize)> = freq.into_iter().filter(|(_, n)| *n >= 2).collect();
        by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let topics = by_freq.into_iter().take(6).map(|(w, _)| w).collect();
        Ok(SummaryDoc {
            overview,
            decisions,
            action_items: actions,
            topics,
        })
    }
}

#[async_trait::async_trait]
impl Summarizer for Extractive {
    fn name(&self) -> &str {
        "extractive"
    }
    async fn summarize(&self, t: &TranscriptDoc) -> Result<SummaryDoc, SummarizeError> {
        self.summarize_sync(t)
    }
}

/// Chat-model summaries: OpenAI-compatible chat completions or Anthropic Messages.
pub struct ChatSummarizer {
    kind: SummarizerKind,
    client: reqwest::Client,
    url: String,
    model: String,
    key: Option<SecretString>,
    azure: bool,
    max_chunk: usize,
}

const SYSTEM: &str = "You summarise meeting transcripts. Reply with one JSON object and nothing else: \
{\"overview\": string (2-4 sentences), \"decisions\": [string], \"action_items\": [{\"owner\": string or null, \"text\": string}], \"topics\": [string]}. \
Use only what the transcript says; an action item's owner is the person who will do it, if said.";

const MERGE: &str = "You merge partial summaries of consecutive parts of one meeting into one. Reply with one JSON object and nothing else, \
in the same shape as the parts: {\"overview\", \"decisions\", \"action_items\": [{\"owner\", \"text\"}], \"topics\"}. Keep every decision and action item; drop duplicates.";

impl ChatSummarizer {
    pub fn new(c: &SummarizerConfig) -> Result<Self, SummarizeError> {
        let base = c
            .base_url
            .as_deref()
            .ok_or_else(|| {
                SummarizeError::Config("transcriber.summarizer.base_url is not set".into())
            })?
            .trim_end_matches('/');
        let (url, azure) = match (c.kind, &c.azure_deployment, &c.azure_api_version) {
            (SummarizerKind::Openai, Some(d), Some(v)) => (
                format!("{base}/openai/deployments/{d}/chat/completions?api-version={v}"),
                true,
            ),
            (SummarizerKind::Openai, _, _) => (format!("{base}/v1/chat/completions"), false),
            _ => (format!("{base}/v1/messages"), false),
        };
        let model = c
            .model
            .clone()
            .or_else(|| c.azure_deployment.clone())
            .ok_or_else(|| {
                SummarizeError::Config("transcriber.summarizer.model is not set".into())
            })?;
        Ok(ChatSummarizer {
            kind: c.kind,
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(300))
                .build()
                .map_err(|e| SummarizeError::Config(e.to_string()))?,
            url,
            model,
            key: c.api_key.clone().map(SecretString::from),
            azure,
            max_chunk: c.max_chunk_chars,
        })
    }

    async fn ask(&self, system: &str, user: &str) -> Result<SummaryDoc, SummarizeError> {
        let mut req = self.client.post(&self.url);
        let body = match self.kind {
            SummarizerKind::Anthropic => {
                if let Some(k) = &self.key {
                    req = req.header("x-api-key", k.expose_secret());
                }
                req = req.header("anthropic-version", "2023-06-01");
                serde_json::json!({
                    "model": self.model,
                    "max_tokens": 2048,
                    "system": system,
                    "messages": [{"role": "user", "content": user}],
                })
            }
            _ => {
                if let Some(k) = &self.key {
                    req = if self.azure {
                        req.header("api-key", k.expose_secret())
                    } else {
                        req.bearer_auth(k.expose_secret())
                    };
                }
                serde_json::json!({
                    "model": self.model,
                    "temperature": 0,
                    "response_format": {"type": "json_object"},
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": user},
                    ],
                })
            }
        };
        let resp = req
            .json(&body)
            .send()
            .await
            .map_err(|e| SummarizeError::Unreachable {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(SummarizeError::Unauthorized(status));
        }
        let text = resp.text().await.map_err(|e| SummarizeError::Unreachable {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        if !(200..300).contains(&status) {
            return Err(SummarizeError::Http {
                status,
                body: crate::engine::provider_error(&text),
            });
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| SummarizeError::Protocol(crate::engine::json_error(&e)))?;
        let content = match self.kind {
            SummarizerKind::Anthropic => v["content"]
                .as_array()
                .and_then(|a| a.iter().find(|b| b["type"] == "text"))
                .and_then(|b| b["text"].as_str()),
            _ => v["choices"][0]["message"]["content"].as_str(),
        }
        .ok_or_else(|| SummarizeError::Protocol("no text in the answer".into()))?;
        parse_summary_json(content)
    }
}

/// The JSON object in a model's answer (tolerating a Markdown code fence around it).
pub fn parse_summary_json(content: &str) -> Result<SummaryDoc, SummarizeError> {
    let start = content.find('{');
    let end = content.rfind('}');
    let json = match (start, end) {
        (Some(s), Some(e)) if e > s => &content[s..=e],
        _ => {
            return Err(SummarizeError::Protocol(
                "the answer holds no JSON object".into(),
            ));
        }
    };
    serde_json::from_str(json).map_err(|e| SummarizeError::Protocol(crate::engine::json_error(&e)))
}

/// Splits transcript lines into parts of at most `max` characters (a longer line is cut).
pub fn chunks(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let mut line = line.to_string();
        while line.len() >= max {
            let mut cut = max - 1;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            let rest = line.split_off(cut);
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(line);
            line = rest;
        }
        if cur.len() + line.len() + 1 > max && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push_str(&line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

#[async_trait::async_trait]
impl Summarizer for ChatSummarizer {
    fn name(&self) -> &str {
        match self.kind {
            SummarizerKind::Anthropic => "anthropic",
            _ => "openai",
        }
    }

    async fn summarize(&self, t: &TranscriptDoc) -> Result<SummaryDoc, SummarizeError> {
        let text = t.to_text();
        if t.segments.is_empty() {
            return Err(SummarizeError::Empty);
        }
        let parts = chunks(&text, self.max_chunk);
        if parts.len() == 1 {
            return self
                .ask(SYSTEM, &format!("Transcript:\n{}", parts[0]))
                .await;
        }
        let mut partials = BTreeMap::new();
        for (i, p) in parts.iter().enumerate() {
            let s = self
                .ask(
                    SYSTEM,
                    &format!("Transcript, part {} of {}:\n{p}", i + 1, parts.len()),
                )
                .await?;
            partials.insert(i + 1, s);
        }
        let merged = serde_json::to_string(&partials).unwrap_or_default();
        self.ask(MERGE, &format!("Partial summaries by part:\n{merged}"))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::Segment;

    fn doc(lines: &[(&str, &str)]) -> TranscriptDoc {
        TranscriptDoc {
            meeting_id: None,
            language: "en".into(),
            engine: "test".into(),
            segments: lines
                .iter()
                .enumerate()
                .map(|(i, (who, text))| Segment {
                    participant: format!("p{i}"),
                    speaker: Some(who.to_string()),
                    start_ms: i as u64 * 1000,
                    end_ms: i as u64 * 1000 + 900,
                    text: text.to_string(),
                })
                .collect(),
            presence: vec![],
        }
    }

    #[test]
    fn extractive_summary_finds_decisions_and_owned_action_items() {
        let d = doc(&[
            (
                "Alice",
                "Good morning everyone. Let's review the budget for the marketing launch.",
            ),
            (
                "Bob",
                "The budget for the launch is forty thousand dollars.",
            ),
            ("Alice", "We decided to move the launch to March."),
            ("Bob", "I'll send the revised budget to finance by Friday."),
            ("Alice", "Carol, can you book the venue for the launch?"),
            ("Carol", "Sure. The venue and the budget both look fine."),
        ]);
        let s = Extractive.summarize_sync(&d).unwrap();
        assert_eq!(s.decisions, vec!["We decided to move the launch to March."]);
        let owners: Vec<_> = s.action_items.iter().map(|a| a.owner.clone()).collect();
        assert!(owners.contains(&Some("Bob".into())), "{:?}", s.action_items);
        assert!(
            owners.contains(&Some("Carol".into())),
            "{:?}",
            s.action_items
        );
        assert!(s.topics.contains(&"budget".to_string()), "{:?}", s.topics);
        assert!(s.topics.contains(&"launch".to_string()), "{:?}", s.topics);
        assert!(!s.overview.is_empty());
    }

    #[test]
    fn empty_transcript_is_an_error() {
        assert!(matches!(
            Extractive.summarize_sync(&doc(&[])),
            Err(SummarizeError::Empty)
        ));
    }

    #[test]
    fn model_answers_in_code_fences_parse_and_garbage_does_not() {
        let s = parse_summary_json("```json\n{\"overview\":\"o\",\"decisions\":[\"d\"],\"action_items\":[{\"owner\":null,\"text\":\"t\"}],\"topics\":[]}\n```").unwrap();
        assert_eq!(s.decisions, vec!["d"]);
        assert!(parse_summary_json("no json").is_err());
        assert!(parse_summary_json("{\"overview\": 3}").is_err());
    }

    #[test]
    fn long_transcripts_are_cut_into_parts_within_the_limit() {
        let text = "a line of text\n".repeat(1000);
        let parts = chunks(&text, 2000);
        assert!(parts.len() >= 7);
        assert!(parts.iter().all(|p| p.len() <= 2000));
        assert_eq!(parts.concat(), text);
        let long = "é".repeat(3000);
        assert!(chunks(&long, 2000).iter().all(|p| p.len() <= 2000));
    }
}
