//! Platform profiles: how a meeting platform's web client is driven, as data.
//!
//! A profile (TOML, one file per platform) says which links it takes and how to rewrite them
//! into the web client's join URL, the steps that get the bot to the door (name, mic and camera
//! off, the join click), how the page shows each state (lobby, admitted, denied, removed,
//! ended), where the participant list and the active speaker are, how to post in the chat, and
//! how its audio arrives (one track per participant, or one mixed track). The built-in profiles
//! are compiled in; `bot.browser.profiles_dir` holds files that replace them by platform name or
//! add new ones, read at start, so a platform's UI change is a file edit, not a rebuild.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The profiles shipped with this build (`bot/profiles/*.toml`).
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "google-meet",
        include_str!("../../profiles/google-meet.toml"),
    ),
    ("teams", include_str!("../../profiles/teams.toml")),
    ("zoom", include_str!("../../profiles/zoom.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile {file}: {message}")]
    Invalid { file: String, message: String },
    #[error("cannot read the profiles directory {dir}: {message}")]
    Dir { dir: String, message: String },
}

/// Something on the page: elements matching `selector` (CSS), and of those (or of the whole
/// page when no selector is given) the ones whose text, `aria-label`, `title` or value matches
/// the case-insensitive regex `text`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Wait until the target is on the page.
    Wait,
    /// Click the target.
    Click,
    /// Focus the target and type `value` into it (`{display_name}` is the bot's name).
    Type,
}

/// One step towards the door. A step waits for its target up to `timeout_seconds`; an
/// `optional` step that finds nothing is skipped (e.g. the name field only anonymous users see).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step is for, in failure reasons and screenshots ("type name", "join").
    pub name: String,
    #[serde(rename = "do")]
    pub action: Action,
    #[serde(flatten)]
    pub target: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default)]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// A link rule: `pattern` (regex with named groups) and the join URL built from it (`{group}`
/// is replaced by the group's text as it stood in the link). `query` adds parameters whose template
/// is not empty after substitution (e.g. Zoom's `pwd` only when the link had one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlRule {
    pub pattern: String,
    pub join_url: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
}

/// How the page shows each state; each is a list of targets of which any may match. They are
/// checked in the order removed, denied, ended, admitted, lobby.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct States {
    #[serde(default)]
    pub lobby: Vec<Target>,
    pub admitted: Vec<Target>,
    #[serde(default)]
    pub denied: Vec<Target>,
    #[serde(default)]
    pub removed: Vec<Target>,
    #[serde(default)]
    pub ended: Vec<Target>,
}

/// The participant list. Each element matching `item` is one participant (the bot itself,
/// recognised by its display name, is left out); its id is `id_attribute`'s value (else its
/// position), its name the text of `name` inside it (else its own text). Where the page shows
/// only a number, `count` (a target whose text holds the number, the bot included) stands in.
/// `speaking` marks the participants talking now (for mixed audio); `track_attribute` names an
/// attribute holding the id of the participant's MediaStream or track, where the page has one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participants {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_attribute: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chat {
    /// Clicked first when the chat panel is closed (skipped when not found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<Target>,
    pub input: Target,
    /// Clicked to send; without it, Enter is pressed in the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<Target>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioMode {
    /// Every remote audio track is one participant.
    #[default]
    PerTrack,
    /// One mixed track; each moment's audio belongs to whoever the page shows speaking.
    Mixed,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audio {
    #[serde(default)]
    pub mode: AudioMode,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// The join page must load within this.
    pub page_load_seconds: u64,
    /// A step's default wait for its target.
    pub step_seconds: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            page_load_seconds: 30,
            step_seconds: 20,
        }
    }
}

/// One platform's profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The platform's name ("google-meet"), in reasons and for overriding by file.
    pub platform: String,
    pub url: Vec<UrlRule>,
    pub join: Vec<Step>,
    pub states: States,
    #[serde(default)]
    pub participants: Participants,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<Chat>,
    /// Clicked when the bot leaves (then the page is closed either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leave: Option<Target>,
    #[serde(default)]
    pub audio: Audio,
    #[serde(default)]
    pub timeouts: Timeouts,
}

/// A loaded profile with its link patterns compiled.
#[derive(Debug)]
pub struct Loaded {
    pub profile: Profile,
    rules: Vec<(Regex, UrlRule)>,
}

fn invalid(file: &str, message: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        file: file.into(),
        message: message.into(),
    }
}

impl Loaded {
    /// Parses and checks a profile: the TOML shape, every regex (link patterns and text
    /// targets), that each target says what to look for, and that templates name only groups
    /// their pattern has.
    pub fn parse(file: &str, text: &str) -> Result<Loaded, ProfileError> {
        let profile: Profile = toml::from_str(text).map_err(|e| invalid(file, e.to_string()))?;
        if profile.url.is_empty() {
            return Err(invalid(file, "url: at least one link rule is needed"));
        }
        if profile.states.admitted.is_empty() {
            return Err(invalid(
                file,
                "states.admitted: at least one target is needed",
            ));
        }
        let mut rules = Vec::new();
        for (i, r) in profile.url.iter().enumerate() {
            let re = Regex::new(&r.pattern)
                .map_err(|e| invalid(file, format!("url[{i}].pattern: {e}")))?;
            let names: Vec<&str> = re.capture_names().flatten().collect();
            for t in std::iter::once(&r.join_url).chain(r.query.values()) {
                for g in placeholders(t) {
                    if !names.contains(&g.as_str()) {
                        return Err(invalid(
                            file,
                            format!(
                                "url[{i}]: template names {{{g}}}, which the pattern does not capture"
                            ),
                        ));
                    }
                }
            }
            rules.push((re, r.clone()));
        }
        let mut targets: Vec<(String, &Target)> = Vec::new();
        for (i, s) in profile.join.iter().enumerate() {
            targets.push((format!("join[{i}] ({})", s.name), &s.target));
            if s.action == Action::Type && s.value.is_none() {
                return Err(invalid(
                    file,
                    format!("join[{i}] ({}): type needs a value", s.name),
                ));
            }
        }
        let st = &profile.states;
        for (name, list) in [
            ("lobby", &st.lobby),
            ("admitted", &st.admitted),
            ("denied", &st.denied),
            ("removed", &st.removed),
            ("ended", &st.ended),
        ] {
            for (i, t) in list.iter().enumerate() {
                targets.push((format!("states.{name}[{i}]"), t));
            }
        }
        if let Some(c) = &profile.chat {
            targets.push(("chat.input".into(), &c.input));
            if let Some(t) = &c.open {
                targets.push(("chat.open".into(), t));
            }
            if let Some(t) = &c.send {
                targets.push(("chat.send".into(), t));
            }
        }
        for (name, t) in [
            ("leave", &profile.leave),
            ("participants.open", &profile.participants.open),
            ("participants.count", &profile.participants.count),
        ] {
            if let Some(t) = t {
                targets.push((name.into(), t));
            }
        }
        for (name, t) in targets {
            if t.selector.is_none() && t.text.is_none() {
                return Err(invalid(
                    file,
                    format!("{name}: give a selector, a text, or both"),
                ));
            }
            if let Some(x) = &t.text {
                Regex::new(x).map_err(|e| invalid(file, format!("{name}.text: {e}")))?;
            }
        }
        Ok(Loaded { profile, rules })
    }

    /// The web client's join URL for `link`, or `None` when this profile does not take it.
    pub fn join_url(&self, link: &str) -> Option<String> {
        for (re, rule) in &self.rules {
            let Some(c) = re.captures(link.trim()) else {
                continue;
            };
            let fill = |t: &str| {
                let mut out = String::new();
                let mut rest = t;
                while let Some(open) = rest.find('{') {
                    out.push_str(&rest[..open]);
                    let after = &rest[open + 1..];
                    match after.find('}') {
                        Some(close) => {
                            let g = &after[..close];
                            // Captures come from a link, already URL-encoded; patterns keep
                            // them free of separators.
                            out.push_str(c.name(g).map(|m| m.as_str()).unwrap_or(""));
                            rest = &after[close + 1..];
                        }
                        None => {
                            out.push('{');
                            rest = after;
                        }
                    }
                }
                out.push_str(rest);
                out
            };
            let mut url = fill(&rule.join_url);
            let mut sep = if url.contains('?') { '&' } else { '?' };
            for (k, t) in &rule.query {
                let v = fill(t);
                if v.is_empty() {
                    continue;
                }
                url.push(sep);
                url.push_str(k);
                url.push('=');
                url.push_str(&v);
                sep = '&';
            }
            return Some(url);
        }
        None
    }
}

fn placeholders(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push(after[..close].to_string());
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    out
}

/// Every profile this bot knows, in the order links are tried.
#[derive(Debug, Clone, Default)]
pub struct Profiles(Vec<Arc<Loaded>>);

impl Profiles {
    /// The built-in profiles, each replaced by `<dir>/<platform>.toml` where that exists, plus
    /// any other `*.toml` there as a new platform.
    pub fn load(dir: Option<&Path>) -> Result<Profiles, ProfileError> {
        let mut by_name: BTreeMap<String, Arc<Loaded>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for (name, text) in BUILT_IN {
            let l = Loaded::parse(&format!("built-in {name}.toml"), text)?;
            order.push(l.profile.platform.clone());
            by_name.insert(l.profile.platform.clone(), Arc::new(l));
        }
        if let Some(dir) = dir {
            let err = |e: std::io::Error| ProfileError::Dir {
                dir: dir.display().to_string(),
                message: e.to_string(),
            };
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .map_err(err)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(err)?;
                let l = Loaded::parse(&f.display().to_string(), &text)?;
                let name = l.profile.platform.clone();
                if !order.contains(&name) {
                    order.push(name.clone());
                }
                by_name.insert(name, Arc::new(l));
            }
        }
        Ok(Profiles(
            order.iter().filter_map(|n| by_name.remove(n)).collect(),
        ))
    }

    /// The profile that takes `link`, with the join URL it makes of it.
    pub fn for_link(&self, link: &str) -> Option<(Arc<Loaded>, String)> {
        self.0
            .iter()
            .find_map(|p| p.join_url(link).map(|u| (p.clone(), u)))
    }

    pub fn get(&self, platform: &str) -> Option<Arc<Loaded>> {
        self.0
            .iter()
            .find(|p| p.profile.platform == platform)
            .cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|p| p.profile.platform.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn builtin() -> Profiles {
        Profiles::load(None).expect("built-in profiles parse")
    }

    #[test]
    fn built_in_profiles_parse_and_cover_meet_teams_and_zoom() {
        assert_eq!(builtin().names(), ["google-meet", "teams", "zoom"]);
    }

    #[test]
    fn zoom_links_become_web_client_links_with_their_passcode() {
        let p = builtin();
        let (z, url) = p
            .for_link("https://us02web.zoom.us/j/81234567890?pwd=AbC.12&from=addon")
            .unwrap();
        assert_eq!(z.profile.platform, "zoom");
        assert_eq!(url, "https://app.zoom.us/wc/join/81234567890?pwd=AbC.12");
        let (_, url) = p.for_link("https://zoom.us/j/81234567890").unwrap();
        assert_eq!(url, "https://app.zoom.us/wc/join/81234567890");
        let (_, url) = p
            .for_link("https://company.zoom.us/wc/join/81234567890?pwd=x")
            .unwrap();
        assert_eq!(url, "https://app.zoom.us/wc/join/81234567890?pwd=x");
    }

    #[test]
    fn meet_and_teams_links_are_recognised_and_others_are_not() {
        let p = builtin();
        let (m, url) = p
            .for_link("https://meet.google.com/abc-defg-hij?authuser=2")
            .unwrap();
        assert_eq!(m.profile.platform, "google-meet");
        assert_eq!(url, "https://meet.google.com/abc-defg-hij");
        let link = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjA2%40thread.v2/0?context=%7b%22Tid%22%3a%22x%22%7d";
        let (t, url) = p.for_link(link).unwrap();
        assert_eq!(t.profile.platform, "teams");
        assert!(
            url.starts_with("https://teams.microsoft.com/l/meetup-join/"),
            "{url}"
        );
        assert!(url.contains("anon=true"), "anonymous join: {url}");
        let (_, url) = p
            .for_link("https://teams.live.com/meet/9876543210?p=abc")
            .unwrap();
        assert!(
            url.starts_with("https://teams.live.com/meet/9876543210"),
            "{url}"
        );
        assert!(p.for_link("https://example.com/j/123").is_none());
        assert!(
            p.for_link("https://meet.google.com.evil.example/abc-defg-hij")
                .is_none()
        );
    }

    #[test]
    fn a_profile_file_replaces_the_built_in_one_of_its_platform() {
        let dir = tempfile::tempdir().unwrap();
        let text = BUILT_IN[2]
            .1
            .replace("app.zoom.us/wc/join", "zoom.example/wc/join");
        std::fs::write(dir.path().join("my-zoom.toml"), text).unwrap();
        let p = Profiles::load(Some(dir.path())).unwrap();
        assert_eq!(p.names(), ["google-meet", "teams", "zoom"]);
        let (_, url) = p.for_link("https://zoom.us/j/1234567890").unwrap();
        assert_eq!(url, "https://zoom.example/wc/join/1234567890");
    }

    #[test]
    fn bad_profiles_are_refused_with_the_file_and_field() {
        let bad = |t: &str| Loaded::parse("x.toml", t).unwrap_err().to_string();
        let base = BUILT_IN[0].1;
        assert!(bad("platform = 1").contains("x.toml"));
        let e = bad(&base.replacen("pattern = '", "pattern = '(", 1));
        assert!(e.contains("url[0].pattern"), "{e}");
        let e = bad(&base.replacen("join_url = '", "join_url = '{nope}", 1));
        assert!(e.contains("{nope}"), "{e}");
        let e = bad(&format!("{base}\n[leave2]\n"));
        assert!(e.contains("leave2"), "{e}");
    }

    proptest! {
        #[test]
        fn any_link_or_profile_text_gives_an_answer_not_a_panic(s in "\\PC{0,300}") {
            let p = builtin();
            let _ = p.for_link(&s);
            let _ = Loaded::parse("fuzz.toml", &s);
        }

        #[test]
        fn zoom_meeting_ids_survive_normalisation(id in "[0-9]{9,11}", pwd in "[A-Za-z0-9._-]{0,32}") {
            let p = builtin();
            let link = if pwd.is_empty() { format!("https://zoom.us/j/{id}") } else { format!("https://zoom.us/j/{id}?pwd={pwd}") };
            let (_, url) = p.for_link(&link).unwrap();
            let want = format!("https://app.zoom.us/wc/join/{id}");
            prop_assert!(url.starts_with(&want));
            prop_assert_eq!(url.contains("pwd="), !pwd.is_empty());
        }
    }
}
