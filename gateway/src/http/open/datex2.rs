//! Every facility's current status as one DATEX II version 3
//! `ParkingStatusPublication` (contract §9), valid against the v3.6
//! schemas (`d2:payload` of `DATEXII_3_D2Payload.xsd`).
//!
//! Which v3 classes: v3 has no `ParkingSiteStatus` (that was v2). Its
//! parking table is a hierarchy of a `Place` (the facility) holding areas
//! and spaces, and its statuses are `PlaceStatus` for a place, `SpaceStatus`
//! for one space (a single `occupied` flag, no counts) and the
//! `ParkingStatusInformation` that both extend, which carries the
//! `occupancy` counts. So a facility is a `PlaceStatus` (which also says
//! `spacesAvailable`/`full`), and a zone, an area of that place with
//! counts of its own, is a plain `ParkingStatusInformation`: `SpaceStatus`
//! would describe one space, not a group of them. Each status references
//! its element by id: the facility id, and `{facility}:{zone}` for a zone
//! (the ids of the parking table ParkMe does not publish yet).
//!
//! Counts, per facility and per zone: `numberOfSpacesOverride` every spot
//! (unit) whatever its state, `numberOfVacantSpaces` the `AVAILABLE` ones,
//! `numberOfOccupiedSpaces` the `OCCUPIED` plus `RESERVED` ones, and
//! `occupancy` the occupied share (percent) of the spaces that are vacant
//! or occupied (`OUT_OF_SERVICE` and `UNKNOWN` ones count in the total
//! only). The facility's or zone's name is its `statusDescription`.
//!
//! This module must never do I/O nor read a clock, and never write text
//! but through the XML writer (names are user input: escaped, and
//! characters XML cannot carry replaced).

use std::borrow::Cow;
use std::io;

use parkme_engine::Millis;
use parkme_protocol::rest::{Counts, Facility, rfc3339};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

/// The media type of the answer.
pub const CONTENT_TYPE: &str = "application/xml";

/// The publication's language (of its fixed texts; names are as given).
const LANG: &str = "en";
/// `publicationCreator`: ParkMe does not know its operator's country, so
/// the ISO 3166 user-assigned code for "unknown" stands in.
const CREATOR_COUNTRY: &str = "XX";
const CREATOR_ID: &str = "parkme";

const NAMESPACES: [(&str, &str); 5] = [
    ("xmlns:d2", "http://datex2.eu/schema/3/d2Payload"),
    ("xmlns:com", "http://datex2.eu/schema/3/common"),
    ("xmlns:fac", "http://datex2.eu/schema/3/facilities"),
    ("xmlns:prk", "http://datex2.eu/schema/3/parking"),
    ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
];

/// How full a place is, as `PlaceStatus.status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceState {
    SpacesAvailable,
    Full,
    /// No space is vacant or occupied: all out of service or unknown.
    Unknown,
}

impl PlaceState {
    pub fn of(counts: &Counts) -> PlaceState {
        if counts.available > 0 {
            PlaceState::SpacesAvailable
        } else if occupied(counts) > 0 {
            PlaceState::Full
        } else {
            PlaceState::Unknown
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PlaceState::SpacesAvailable => "spacesAvailable",
            PlaceState::Full => "full",
            PlaceState::Unknown => "unknown",
        }
    }
}

/// Occupied as DATEX II (and NGSI-LD) count it: a reserved spot is taken.
fn occupied(counts: &Counts) -> u32 {
    counts.occupied.saturating_add(counts.reserved)
}

/// The occupied share, in percent, of the spaces vacant or occupied;
/// `None` when there are none.
pub fn occupancy_percent(counts: &Counts) -> Option<f64> {
    let occupied = f64::from(occupied(counts));
    let usable = occupied + f64::from(counts.available);
    (usable > 0.0).then(|| 100.0 * occupied / usable)
}

/// `text` with every character XML 1.0 cannot carry (control characters
/// other than tab, newline and carriage return; U+FFFE, U+FFFF) replaced
/// by U+FFFD. Escaping `<`, `&` and quotes is the writer's job.
pub fn xml_chars(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    };
    if text.chars().all(allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| if allowed(c) { c } else { '\u{FFFD}' })
                .collect(),
        )
    }
}

/// The publication of `facilities` at `at`, or `None` when there is no
/// facility: DATEX II wants at least one status in a publication.
pub fn parking_status(facilities: &[Facility], at: Millis) -> io::Result<Option<Vec<u8>>> {
    if facilities.is_empty() {
        return Ok(None);
    }
    let time = rfc3339(at);
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    writer
        .create_element("d2:payload")
        .with_attributes(NAMESPACES)
        .with_attributes([
            ("xsi:type", "prk:ParkingStatusPublication"),
            ("lang", LANG),
            ("modelBaseVersion", "3"),
        ])
        .write_inner_content(|w| {
            text_element(w, "com:publicationTime", &time)?;
            w.create_element("com:publicationCreator")
                .write_inner_content(|w| {
                    text_element(w, "com:country", CREATOR_COUNTRY)?;
                    text_element(w, "com:nationalIdentifier", CREATOR_ID)
                })?;
            for facility in facilities {
                let place = Status {
                    id: facility.id.clone(),
                    name: &facility.name,
                    counts: &facility.totals.overall,
                    place: true,
                };
                place.write(w, &time)?;
                for zone in &facility.zones {
                    Status {
                        id: format!("{}:{}", facility.id, zone.id),
                        name: &zone.name,
                        counts: &zone.counts.overall,
                        place: false,
                    }
                    .write(w, &time)?;
                }
            }
            Ok(())
        })?;
    Ok(Some(writer.into_inner()))
}

/// One `parkingStatusInformation`: a facility's (`place`) or a zone's.
struct Status<'a> {
    id: String,
    name: &'a str,
    counts: &'a Counts,
    place: bool,
}

impl Status<'_> {
    fn write(&self, w: &mut Writer<Vec<u8>>, time: &str) -> io::Result<()> {
        let mut element = w.create_element("prk:parkingStatusInformation");
        if self.place {
            element = element.with_attribute(("xsi:type", "prk:PlaceStatus"));
        }
        element.write_inner_content(|w| {
            w.create_element("fac:reference")
                .with_attributes([
                    ("targetClass", "fac:FacilityObject"),
                    ("id", self.id.as_str()),
                ])
                .write_empty()?;
            text_element(w, "fac:lastUpdated", time)?;
            w.create_element("fac:statusDescription")
                .write_inner_content(|w| {
                    w.create_element("com:values").write_inner_content(|w| {
                        text_element(w, "com:value", &xml_chars(self.name))
                    })?;
                    Ok(())
                })?;
            w.create_element("prk:occupancy").write_inner_content(|w| {
                let counts = self.counts;
                text_element(w, "prk:numberOfSpacesOverride", &counts.total.to_string())?;
                text_element(w, "prk:numberOfVacantSpaces", &counts.available.to_string())?;
                text_element(
                    w,
                    "prk:numberOfOccupiedSpaces",
                    &occupied(counts).to_string(),
                )?;
                if let Some(percent) = occupancy_percent(counts) {
                    text_element(w, "prk:occupancy", &format!("{percent:.1}"))?;
                }
                Ok(())
            })?;
            if self.place {
                text_element(w, "prk:status", PlaceState::of(self.counts).as_str())?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// `<name>text</name>`, the text escaped by the writer.
fn text_element(w: &mut Writer<Vec<u8>>, name: &str, text: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(text))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use parkme_actors::{FacilityView, ZoneView};
    use parkme_engine::{FacilityId, Seq, SpotState, ZoneId};

    use super::*;
    use crate::http::open::fixtures::counts;

    fn facility(name: &str, zone_name: &str, states: &[SpotState]) -> Facility {
        let zone = counts(states);
        crate::wire::facility(&FacilityView {
            id: FacilityId::parse("f1").expect("facility id"),
            name: name.into(),
            timezone: "UTC".into(),
            location: None,
            seq: Seq(1),
            totals: zone.clone(),
            zones: vec![ZoneView {
                id: ZoneId::parse("A").expect("zone id"),
                name: zone_name.into(),
                capacity: None,
                reservable: 0,
                counts: zone,
            }],
        })
    }

    fn publish(facilities: &[Facility]) -> String {
        let bytes = parking_status(facilities, Millis(0))
            .expect("writes to memory")
            .expect("a publication");
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn no_facility_is_no_publication() {
        assert_eq!(parking_status(&[], Millis(0)).ok(), Some(None));
    }

    #[test]
    fn a_facility_and_its_zone_carry_their_counts() {
        use SpotState::*;
        let xml = publish(&[facility(
            "Garage",
            "Level A",
            &[Available, Reserved, Occupied, OutOfService, Unknown],
        )]);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
        assert!(
            xml.contains("xsi:type=\"prk:ParkingStatusPublication\""),
            "{xml}"
        );
        assert_eq!(xml.matches("<prk:parkingStatusInformation").count(), 2);
        assert_eq!(xml.matches("xsi:type=\"prk:PlaceStatus\"").count(), 1);
        assert!(xml.contains("id=\"f1\""), "{xml}");
        assert!(xml.contains("id=\"f1:A\""), "{xml}");
        assert_eq!(
            xml.matches("<prk:numberOfSpacesOverride>5<").count(),
            2,
            "{xml}"
        );
        assert_eq!(xml.matches("<prk:numberOfVacantSpaces>1<").count(), 2);
        assert_eq!(xml.matches("<prk:numberOfOccupiedSpaces>2<").count(), 2);
        assert_eq!(xml.matches("<prk:occupancy>66.7<").count(), 2);
        assert!(xml.contains("<prk:status>spacesAvailable</prk:status>"));
        assert!(xml.contains("<com:publicationTime>1970-01-01T00:00:00.000Z<"));
    }

    #[test]
    fn names_are_escaped_and_characters_xml_cannot_carry_are_replaced() {
        let xml = publish(&[facility("A <b> & \"c\" 'd'", "x\u{1}y</com:value>", &[])]);
        assert!(
            xml.contains("A &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;"),
            "{xml}"
        );
        assert!(xml.contains("x\u{FFFD}y&lt;/com:value&gt;"), "{xml}");
        assert!(!xml.contains('\u{1}'));
    }

    #[test]
    fn a_place_is_full_when_nothing_is_vacant_and_unknown_when_nothing_is_known() {
        use SpotState::*;
        assert_eq!(
            PlaceState::of(&Counts::from(&counts(&[Reserved]).overall)),
            PlaceState::Full
        );
        assert_eq!(
            PlaceState::of(&Counts::from(&counts(&[OutOfService, Unknown]).overall)),
            PlaceState::Unknown
        );
        assert_eq!(
            occupancy_percent(&Counts::from(&counts(&[Unknown]).overall)),
            None
        );
        assert_eq!(
            occupancy_percent(&Counts::from(&counts(&[Occupied]).overall)),
            Some(100.0)
        );
    }

    #[test]
    fn xml_chars_keeps_what_xml_carries() {
        assert!(matches!(xml_chars("tab\tnew\nline é ✓"), Cow::Borrowed(_)));
        assert_eq!(xml_chars("\u{0}\u{FFFF}"), "\u{FFFD}\u{FFFD}");
    }
}
