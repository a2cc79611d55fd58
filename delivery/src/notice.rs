//! What a summary delivery says, and how each channel shows it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionItem {
    pub owner: Option<String>,
    pub text: String,
}

/// A meeting's summary, as delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub meeting_id: String,
    pub title: String,
    pub overview: String,
    #[serde(default)]
    pub decisions: Vec<String>,
    #[serde(default)]
    pub action_items: Vec<ActionItem>,
    /// Where the full transcript can be read (the API), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Slack's mrkdwn control characters escaped (https://api.slack.com/reference/surfaces/formatting#escaping).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Slack's limit on a section block's text.
const SLACK_SECTION_MAX: usize = 3000;

fn cut(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Notice {
    fn item_line(a: &ActionItem) -> String {
        match &a.owner {
            Some(o) => format!("{o}: {}", a.text),
            None => a.text.clone(),
        }
    }

    /// The plain-text form (email's text part, Slack's notification fallback).
    pub fn text(&self) -> String {
        let mut out = format!("Meeting summary: {}\n\n{}\n", self.title, self.overview);
        if !self.decisions.is_empty() {
            out.push_str("\nDecisions\n");
            for d in &self.decisions {
                out.push_str(&format!("- {d}\n"));
            }
        }
        if !self.action_items.is_empty() {
            out.push_str("\nAction items\n");
            for a in &self.action_items {
                out.push_str(&format!("- {}\n", Self::item_line(a)));
            }
        }
        if let Some(l) = &self.link {
            out.push_str(&format!("\nFull transcript: {l}\n"));
        }
        out
    }

    /// The HTML form (email's HTML part); every value escaped.
    pub fn html(&self) -> String {
        let mut out = format!(
            "<!doctype html><html><body><h1>Meeting summary: {}</h1><p>{}</p>",
            html_escape(&self.title),
            html_escape(&self.overview)
        );
        let list = |title: &str, items: Vec<String>| {
            if items.is_empty() {
                return String::new();
            }
            let lis: String = items
                .iter()
                .map(|i| format!("<li>{}</li>", html_escape(i)))
                .collect();
            format!("<h2>{title}</h2><ul>{lis}</ul>")
        };
        out.push_str(&list("Decisions", self.decisions.clone()));
        out.push_str(&list(
            "Action items",
            self.action_items.iter().map(Self::item_line).collect(),
        ));
        if let Some(l) = &self.link {
            out.push_str(&format!(
                "<p><a href=\"{}\">Full transcript</a></p>",
                html_escape(l)
            ));
        }
        out.push_str("</body></html>");
        out
    }

    /// Block Kit blocks (header, overview, decisions, action items, context).
    pub fn slack_blocks(&self) -> serde_json::Value {
        let section = |text: String| {
            serde_json::json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": cut(text, SLACK_SECTION_MAX)}
            })
        };
        let mut blocks = vec![
            serde_json::json!({
                "type": "header",
                "text": {"type": "plain_text", "text": cut(format!("Meeting summary: {}", self.title), 150)}
            }),
            section(slack_escape(&self.overview)),
        ];
        if !self.decisions.is_empty() {
            let lines: Vec<String> = self
                .decisions
                .iter()
                .map(|d| format!("• {}", slack_escape(d)))
                .collect();
            blocks.push(section(format!("*Decisions*\n{}", lines.join("\n"))));
        }
        if !self.action_items.is_empty() {
            let lines: Vec<String> = self
                .action_items
                .iter()
                .map(|a| format!("• {}", slack_escape(&Self::item_line(a))))
                .collect();
            blocks.push(section(format!("*Action items*\n{}", lines.join("\n"))));
        }
        if let Some(l) = &self.link {
            blocks.push(serde_json::json!({
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": format!("<{}|Full transcript>", slack_escape(l))}]
            }));
        }
        serde_json::Value::Array(blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn notice() -> Notice {
        Notice {
            meeting_id: "m1".into(),
            title: "Budget <review> & plan".into(),
            overview: "We agreed on the budget.".into(),
            decisions: vec!["Approve the Q3 budget".into()],
            action_items: vec![ActionItem {
                owner: Some("Sarah".into()),
                text: "send the contract by Friday".into(),
            }],
            link: None,
        }
    }

    #[test]
    fn every_form_carries_the_decisions_and_the_action_items_and_escapes_markup() {
        let n = notice();
        assert!(n.text().contains("- Sarah: send the contract by Friday"));
        let html = n.html();
        assert!(html.contains("Budget &lt;review&gt; &amp; plan"));
        assert!(!html.contains("<review>"));
        let blocks = n.slack_blocks().to_string();
        assert!(blocks.contains("*Action items*"));
        assert!(blocks.contains("Sarah: send the contract by Friday"));
        assert!(blocks.contains("\"type\":\"header\""));
    }

    proptest! {
        #[test]
        fn any_text_renders_without_panicking_and_stays_within_slack_limits(t in "\\PC{0,4000}") {
            let n = Notice { title: t.clone(), overview: t.clone(), decisions: vec![t.clone()], ..notice() };
            let b = n.slack_blocks();
            for block in b.as_array().unwrap() {
                if let Some(text) = block["text"]["text"].as_str() {
                    prop_assert!(text.chars().count() <= SLACK_SECTION_MAX);
                }
            }
            let _ = n.html();
        }
    }
}
