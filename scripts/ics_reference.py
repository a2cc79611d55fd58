"""The reference ICS reader beside ours: python `icalendar` + `recurring-ical-events`.
Floating times are read in the calendar's X-WR-TIMEZONE (else UTC) and all-day dates stand for
midnight UTC, as ours reads them, so that the two compare.

Reads calendar-sync/tests/fixtures/ics/manifest.json and writes, for each fixture, the instances
overlapping its window in the shape of the expected files (expected/<name>.json) to OUT_DIR/<name>.json,
or {"error": ...} when the library refuses the file. Run by scripts/ics-reference.sh.
"""

import datetime
import json
import pathlib
import sys

import icalendar
import recurring_ical_events
import zoneinfo

UTC = datetime.timezone.utc


def instant(v, floating):
    """DATE -> midnight UTC; floating -> in `floating`; aware -> UTC."""
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=floating)
        return v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.datetime(v.year, v.month, v.day, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(ev, cal):
    if str(cal.get("METHOD", "")).strip().upper() == "CANCEL":
        return "cancelled"
    s = str(ev.get("STATUS", "")).strip().upper()
    return {"CANCELLED": "cancelled", "TENTATIVE": "tentative"}.get(s, "confirmed")


def read(path, window):
    cal = icalendar.Calendar.from_ical(path.read_bytes())
    floating = UTC
    if "X-WR-TIMEZONE" in cal:
        try:
            floating = zoneinfo.ZoneInfo(str(cal["X-WR-TIMEZONE"]).strip())
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    frm = datetime.datetime.fromisoformat(window[0].replace("Z", "+00:00"))
    to = datetime.datetime.fromisoformat(window[1].replace("Z", "+00:00"))
    out = []
    for ev in recurring_ical_events.of(cal).between(frm, to):
        start = ev["DTSTART"].dt
        end = ev["DTEND"].dt if "DTEND" in ev else start
        uid = ev.get("UID")
        out.append(
            {
                "uid": str(uid) if uid is not None else None,
                "starts_at": instant(start, floating),
                "ends_at": instant(end, floating),
                "all_day": not isinstance(start, datetime.datetime),
                "status": status(ev, cal),
                "title": str(ev.get("SUMMARY", "")),
            }
        )
    out.sort(key=lambda i: (i["starts_at"], i["uid"] or "", i["ends_at"]))
    return out


def main():
    fixtures = pathlib.Path(sys.argv[1])
    out_dir = pathlib.Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in json.loads((fixtures / "manifest.json").read_text()):
        try:
            result = {"instances": read(fixtures / f["name"], f["window"])}
        except Exception as e:  # noqa: BLE001 - the library refusing a file is a result
            result = {"error": f"{type(e).__name__}: {e}"[:300]}
        (out_dir / (f["name"] + ".json")).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
