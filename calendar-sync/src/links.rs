//! Finding the meeting link in an event: structured conference fields first, then the location,
//! then the description (HTML or text). Tracking wrappers (Outlook safelinks, Google redirects,
//! Proofpoint URL Defense) are unwrapped first.

use meetbot_core::model::Platform;
use url::Url;

/// A join link and the platform it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MeetingLink {
    pub url: String,
    pub platform: Platform,
}

/// Where a candidate link was found; decides whether an unknown https link counts as a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A provider's conference field (`conferenceData`, `onlineMeeting`): trusted as is.
    Conference,
    /// The event's location: an https link there is taken as a generic WebRTC room.
    Location,
    /// Free text: only links of known meeting platforms count (documents are linked there too).
    Description,
}

fn host_is(host: &str, domain: &str) -> bool {
    host == domain || host.ends_with(&format!(".{domain}"))
}

/// The platform of a join URL, or `None` if it is not a meeting link this knows.
pub fn classify(url: &Url) -> Option<Platform> {
    let host = url.host_str()?.to_ascii_lowercase();
    let path = url.path().to_ascii_lowercase();
    if host_is(&host, "zoom.us") || host_is(&host, "zoomgov.com") {
        // /j/ID meetings, /w/ID webinars, /s/ID host start, /my/NAME personal rooms, web client.
        let joinable = [
            "/j/",
            "/w/",
            "/s/",
            "/my/",
            "/wc/join/",
            "/wc/",
            "/webinar/register/",
        ];
        return joinable
            .iter()
            .any(|p| path.starts_with(p))
            .then_some(Platform::Zoom);
    }
    if host == "meet.google.com" {
        let code = path.trim_start_matches('/');
        let ok = code.len() >= 10 && code.split('-').count() == 3 || code.starts_with("lookup/");
        return ok.then_some(Platform::GoogleMeet);
    }
    if host == "teams.microsoft.com" || host == "teams.live.com" || host == "gov.teams.microsoft.us"
    {
        let ok = path.starts_with("/l/meetup-join/")
            || path.starts_with("/meet/")
            || path.starts_with("/l/meet/");
        return ok.then_some(Platform::Teams);
    }
    if host_is(&host, "webex.com") {
        let ok = path.starts_with("/meet/")
            || path.starts_with("/join/")
            || path.contains("j.php")
            || path.starts_with("/wbxmjs/joinservice/")
            || path.contains("/webappng/sites/");
        return ok.then_some(Platform::Webex);
    }
    if host == "meet.jit.si" || host_is(&host, "8x8.vc") {
        return (path.len() > 1).then_some(Platform::Jitsi);
    }
    if host_is(&host, "whereby.com") && path.len() > 1 {
        return Some(Platform::WebRtc);
    }
    None
}

/// Unwraps tracking redirects, repeatedly (a safelink around a Google redirect, ...).
pub fn unwrap_tracking(url: Url) -> Url {
    let mut current = url;
    for _ in 0..4 {
        let Some(host) = current.host_str().map(str::to_ascii_lowercase) else {
            break;
        };
        let inner = if host.ends_with("safelinks.protection.outlook.com") {
            query_param(&current, "url")
        } else if (host == "www.google.com" || host == "google.com") && current.path() == "/url" {
            query_param(&current, "q").or_else(|| query_param(&current, "url"))
        } else if host == "urldefense.com" && current.path().starts_with("/v3/__") {
            // https://urldefense.com/v3/__<url>__;<signature>
            let p = current.as_str();
            p.find("/v3/__").and_then(|i| {
                let rest = &p[i + 6..];
                rest.find("__;")
                    .map(|j| rest[..j].to_string())
                    .or_else(|| rest.strip_suffix("__").map(String::from))
            })
        } else {
            None
        };
        match inner.and_then(|s| Url::parse(&s).ok()) {
            Some(u) if u.scheme() == "https" || u.scheme() == "http" => current = u,
            _ => break,
        }
    }
    current
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Every URL in `text` (HTML entities decoded, tags ignored), tracking wrappers unwrapped.
pub fn urls_in(text: &str) -> Vec<Url> {
    let decoded = html_escape::decode_html_entities(text);
    let mut finder = linkify::LinkFinder::new();
    finder.kinds(&[linkify::LinkKind::Url]);
    finder
        .links(&decoded)
        .filter_map(|l| Url::parse(l.as_str()).ok())
        .filter(|u| u.scheme() == "https" || u.scheme() == "http")
        .map(unwrap_tracking)
        .collect()
}

/// The meeting link of a text from `source`, if it has one.
pub fn link_in(text: &str, source: Source) -> Option<MeetingLink> {
    let urls = urls_in(text);
    if let Some((u, p)) = urls.iter().find_map(|u| classify(u).map(|p| (u, p))) {
        return Some(MeetingLink {
            url: u.to_string(),
            platform: p,
        });
    }
    match source {
        Source::Conference => urls.first().map(|u| MeetingLink {
            url: u.to_string(),
            platform: Platform::Unknown,
        }),
        Source::Location => urls
            .iter()
            .find(|u| u.scheme() == "https" || is_loopback_http(u))
            .map(|u| MeetingLink {
                url: u.to_string(),
                platform: Platform::WebRtc,
            }),
        Source::Description => None,
    }
}

/// An http link to a room on this machine (`meetbot dev`'s demo room): plain http is taken as a
/// room only on a loopback address, where nothing crosses a network.
fn is_loopback_http(u: &Url) -> bool {
    u.scheme() == "http"
        && match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        }
}

/// The call a join link leads to, the same text for every form of the link that the invitees'
/// calendars hold: scheme, case, tracking parameters, fragments, passcodes and per-invitee
/// context dropped; Zoom by meeting number (any vanity host), Meet by code, Teams by thread and
/// message id. Used only as an input to a meeting's blind index, never to join.
pub fn canonical(link: &str) -> String {
    let Ok(url) = Url::parse(link.trim()) else {
        return link.trim().to_string();
    };
    let url = unwrap_tracking(url);
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
    let path = url.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match classify(&url) {
        Some(Platform::Zoom) => {
            // /j/ID, /w/ID, /s/ID, /wc/join/ID, /wc/ID/join: the meeting number is the call.
            if let Some(id) = segments
                .iter()
                .find(|s| s.len() >= 9 && s.bytes().all(|b| b.is_ascii_digit()))
            {
                return format!("zoom:{id}");
            }
            format!("zoom:{}", path.to_ascii_lowercase())
        }
        Some(Platform::GoogleMeet) => {
            format!("meet:{}", path.trim_start_matches('/').to_ascii_lowercase())
        }
        Some(Platform::Teams) => {
            // /l/meetup-join/<thread>/<message id>?context=...: the context names the invitee's
            // tenant and organiser, the same for every invitee but not needed for the call.
            let decoded = percent_decode(path);
            let parts: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
            match parts.as_slice() {
                ["l", "meetup-join", thread, msg, ..] => format!("teams:{thread}/{msg}"),
                ["meet", id, ..] | ["l", "meet", id, ..] => format!("teams:meet/{id}"),
                _ => format!("teams:{decoded}"),
            }
        }
        _ => {
            let mut q: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| {
                    let k = k.to_ascii_lowercase();
                    !(k.starts_with("utm_") || k == "pwd" || k == "passcode" || k == "context")
                })
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            q.sort();
            let q: Vec<String> = q.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{host}{path}?{}", q.join("&"))
        }
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// The best link among candidate texts, tried in order (conference fields, location, body).
pub fn best_link<'a>(
    candidates: impl IntoIterator<Item = (&'a str, Source)>,
) -> Option<MeetingLink> {
    candidates
        .into_iter()
        .find_map(|(text, source)| link_in(text, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_links_ignore_host_case_tracking_passcodes_and_invitee_context() {
        let zoom = canonical("https://us02web.zoom.us/j/81234567890?pwd=abc#success");
        assert_eq!(zoom, "zoom:81234567890");
        assert_eq!(canonical("https://ACME.zoom.us/j/81234567890/"), zoom);
        assert_eq!(canonical("https://zoom.us/wc/join/81234567890?pwd=x"), zoom);
        assert_ne!(canonical("https://zoom.us/j/81234567891"), zoom);
        assert_eq!(
            canonical("https://meet.google.com/abc-defg-hij?authuser=1"),
            canonical("https://MEET.GOOGLE.COM/abc-defg-hij")
        );
        let teams = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjY2%40thread.v2/0?context=%7b%22Tid%22%3a%22a%22%7d";
        let teams_other_ctx = "https://teams.microsoft.com/l/meetup-join/19%3Ameeting_NjY2%40thread.v2/0?context=%7B%22Tid%22%3A%22a%22%2C%22Oid%22%3A%22b%22%7D";
        assert_eq!(canonical(teams), canonical(teams_other_ctx));
        assert_eq!(canonical(teams), "teams:19:meeting_NjY2@thread.v2/0");
        let safelink = format!(
            "https://nam02.safelinks.protection.outlook.com/?url={}&data=x",
            url::form_urlencoded::byte_serialize(teams.as_bytes()).collect::<String>()
        );
        assert_eq!(canonical(&safelink), canonical(teams));
        assert_eq!(
            canonical("https://rooms.example.org/r/7?b=2&a=1&utm_source=mail"),
            canonical("https://Rooms.example.org/r/7/?a=1&b=2")
        );
        assert_ne!(
            canonical("https://rooms.example.org/r/7"),
            canonical("https://rooms.example.org/r/8")
        );
    }

    fn p(text: &str, s: Source) -> Option<(String, Platform)> {
        link_in(text, s).map(|l| (l.url, l.platform))
    }

    #[test]
    fn zoom_meetings_webinars_and_vanity_domains() {
        assert_eq!(
            p(
                "Join https://us02web.zoom.us/j/81234567890?pwd=abc",
                Source::Description
            )
            .unwrap()
            .1,
            Platform::Zoom
        );
        assert_eq!(
            p(
                "https://acme-corp.zoom.us/w/91234567890?tk=x",
                Source::Description
            )
            .unwrap()
            .1,
            Platform::Zoom
        );
        assert_eq!(
            p("https://zoom.us/my/dr.okafor", Source::Description)
                .unwrap()
                .1,
            Platform::Zoom
        );
        assert_eq!(
            p("https://zoomgov.com/j/1600000000", Source::Description)
                .unwrap()
                .1,
            Platform::Zoom
        );
        assert_eq!(
            p("see https://zoom.us/pricing", Source::Description),
            None,
            "not a join link"
        );
    }

    #[test]
    fn meet_teams_webex_jitsi() {
        assert_eq!(
            p("https://meet.google.com/abc-defg-hij", Source::Description)
                .unwrap()
                .1,
            Platform::GoogleMeet
        );
        let teams = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjA1%40thread.v2/0?context=%7b%22Tid%22%3a%22x%22%7d";
        assert_eq!(p(teams, Source::Description).unwrap().1, Platform::Teams);
        assert_eq!(
            p(
                "https://teams.microsoft.com/meet/2345678901234?p=AbCdEf",
                Source::Description
            )
            .unwrap()
            .1,
            Platform::Teams
        );
        assert_eq!(
            p(
                "https://acme.webex.com/acme/j.php?MTID=m0123456789abcdef",
                Source::Description
            )
            .unwrap()
            .1,
            Platform::Webex
        );
        assert_eq!(
            p("https://acme.webex.com/meet/jdoe", Source::Description)
                .unwrap()
                .1,
            Platform::Webex
        );
        assert_eq!(
            p("https://meet.jit.si/WeeklyStandupRoom", Source::Description)
                .unwrap()
                .1,
            Platform::Jitsi
        );
    }

    #[test]
    fn a_teams_link_only_in_an_html_body_is_found() {
        let html = r#"<html><body><div>Agenda: Q3 numbers</div><a href="https://teams.microsoft.com/l/meetup-join/19%3ameeting_ZmY%40thread.v2/0?context=%7b%7d" target="_blank" rel="noreferrer noopener"><span>Join the meeting now</span></a><a href="https://aka.ms/JoinTeamsMeeting">Learn more</a></body></html>"#;
        let l = link_in(html, Source::Description).unwrap();
        assert_eq!(l.platform, Platform::Teams);
        assert!(
            l.url.starts_with(
                "https://teams.microsoft.com/l/meetup-join/19%3ameeting_ZmY%40thread.v2/0"
            ),
            "{}",
            l.url
        );
    }

    #[test]
    fn html_entities_in_links_are_decoded() {
        let html = r#"<a href="https://us02web.zoom.us/j/812345?pwd=ab&amp;uname=x">Zoom</a>"#;
        assert_eq!(
            link_in(html, Source::Description).unwrap().url,
            "https://us02web.zoom.us/j/812345?pwd=ab&uname=x"
        );
    }

    #[test]
    fn tracking_wrappers_are_unwrapped() {
        let safelink = "https://nam12.safelinks.protection.outlook.com/?url=https%3A%2F%2Fus02web.zoom.us%2Fj%2F81234567890%3Fpwd%3Dabc&data=05%7C01&sdata=x&reserved=0";
        assert_eq!(
            link_in(safelink, Source::Description).unwrap().url,
            "https://us02web.zoom.us/j/81234567890?pwd=abc"
        );
        let google = "https://www.google.com/url?q=https://meet.google.com/abc-defg-hij&sa=D&ust=1";
        assert_eq!(
            link_in(google, Source::Description).unwrap().platform,
            Platform::GoogleMeet
        );
        let pp = "https://urldefense.com/v3/__https://acme.webex.com/meet/jdoe__;!!abc$";
        assert_eq!(
            link_in(pp, Source::Description).unwrap().url,
            "https://acme.webex.com/meet/jdoe"
        );
    }

    #[test]
    fn unknown_https_links_count_only_in_the_location() {
        assert_eq!(
            p(
                "https://rooms.example-clinic.org/telehealth/42",
                Source::Location
            )
            .unwrap()
            .1,
            Platform::WebRtc
        );
        assert_eq!(
            p("Slides: https://docs.example.com/deck", Source::Description),
            None
        );
        assert_eq!(p("Room 4B, 2nd floor", Source::Location), None);
    }

    #[test]
    fn plain_http_counts_as_a_room_only_on_a_loopback_address() {
        for link in [
            "http://127.0.0.1:8095/rooms/demo",
            "http://localhost:8095/rooms/demo",
        ] {
            assert_eq!(
                p(link, Source::Location).map(|l| l.1),
                Some(Platform::WebRtc),
                "{link}"
            );
        }
        // linkify does not find bracketed IPv6 hosts in text; a parsed one is still loopback.
        assert!(is_loopback_http(
            &Url::parse("http://[::1]:8095/rooms/demo").unwrap()
        ));
        assert!(!is_loopback_http(
            &Url::parse("https://127.0.0.1/rooms/demo").unwrap()
        ));
        assert_eq!(p("http://rooms.example.org/r/1", Source::Location), None);
        assert_eq!(p("http://10.0.0.5/r/1", Source::Location), None);
        assert_eq!(p("http://127.0.0.1/rooms/x", Source::Description), None);
    }

    #[test]
    fn known_platform_wins_over_other_links_in_the_same_text() {
        let text = "Docs https://docs.example.com/x then https://meet.google.com/abc-defg-hij";
        assert_eq!(p(text, Source::Location).unwrap().1, Platform::GoogleMeet);
    }

    proptest! {
        #[test]
        fn link_extraction_never_panics(s in ".{0,400}") {
            for src in [Source::Conference, Source::Location, Source::Description] {
                let _ = link_in(&s, src);
            }
        }

        #[test]
        fn link_extraction_never_panics_on_url_shaped_text(
            host in "[a-z0-9.-]{1,30}",
            path in "[a-zA-Z0-9/%?&=._~:;!$-]{0,60}",
            wrap in 0u8..4,
        ) {
            let u = format!("https://{host}/{path}");
            let text = match wrap {
                0 => u,
                1 => format!("https://x.safelinks.protection.outlook.com/?url={u}&data=1"),
                2 => format!("https://urldefense.com/v3/__{u}__;!!x"),
                _ => format!("<a href=\"{u}\">x</a>"),
            };
            let _ = link_in(&text, Source::Location);
        }
    }
}
