//! Contract §9's standard read views against the real binary, each
//! checked against the published schemas kept in `tests/data/` (see the
//! SOURCE.md there): `GET /v1/facilities/{fid}/ngsi-ld` against the FIWARE
//! dataModel.Parking JSON Schemas (the `jsonschema` crate, formats
//! checked, the common schema read from its local copy and no other
//! remote reference allowed), and `GET /v1/datex2/parking-status` against
//! the DATEX II v3.6 XSDs (`xmllint`, from Debian's libxml2-utils, which
//! scripts/install-test-deps installs; a missing xmllint fails the test).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::{Value, json};

use crate::helpers::http::{Api, NO_LIMITS, Reply, layout, server_with_facility, spot_zone};
use crate::helpers::ws::{JSON, await_ack, send_sensor, sensor, spot};
use crate::helpers::{TestServer, poll_until};

const SDM_CONTEXT: &str =
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld";
const CORE_CONTEXT: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld";
const COMMON_SCHEMA: &str = "https://smart-data-models.github.io/data-models/common-schema.json";
const ENTITY_TYPES: [&str; 3] = ["OffStreetParking", "ParkingGroup", "ParkingSpot"];

fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Resolves the Smart Data Models common schema to its local copy and
/// refuses every other remote reference: tests never use the network.
struct LocalSchemas {
    common: Value,
}

impl Retrieve for LocalSchemas {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        if uri.as_str().trim_end_matches('#') == COMMON_SCHEMA {
            Ok(self.common.clone())
        } else {
            Err(format!("no local copy of {uri}; tests do not fetch schemas").into())
        }
    }
}

/// One validator per entity type, from the published schemas.
fn fiware_validators() -> BTreeMap<&'static str, Validator> {
    let dir = data_dir("fiware-parking");
    let common = read_json(&dir.join("common-schema.json"));
    ENTITY_TYPES
        .into_iter()
        .map(|kind| {
            let schema = read_json(&dir.join(kind).join("schema.json"));
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .with_retriever(LocalSchemas {
                    common: common.clone(),
                })
                .build(&schema)
                .unwrap_or_else(|e| panic!("the {kind} schema compiles: {e}"));
            (kind, validator)
        })
        .collect()
}

/// The errors of `entity` against its type's schema (an unknown type is
/// one).
fn schema_errors(validators: &BTreeMap<&str, Validator>, entity: &Value) -> Vec<String> {
    let kind = entity["type"].as_str().unwrap_or_default();
    let Some(validator) = validators.get(kind) else {
        return vec![format!("no published schema for type {kind:?}")];
    };
    validator
        .iter_errors(entity)
        .map(|e| format!("{kind} {}: {e} at {}", entity["id"], e.instance_path()))
        .collect()
}

/// Asserts every entity validates against its type's schema.
#[track_caller]
fn assert_valid_entities(entities: &[Value]) {
    let validators = fiware_validators();
    let errors: Vec<String> = entities
        .iter()
        .flat_map(|entity| schema_errors(&validators, entity))
        .collect();
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));
}

/// What `xmllint --noout --nonet --schema DATEXII_3_D2Payload.xsd` says
/// against `xml`, `None` when it validates.
fn datex2_errors(xml: &str) -> Option<String> {
    let schema = data_dir("datex2-v3.6").join("DATEXII_3_D2Payload.xsd");
    let mut file = tempfile::NamedTempFile::new().expect("a temp file");
    file.write_all(xml.as_bytes()).expect("the XML is written");
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(&schema)
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "xmllint could not run ({e}): install Debian's libxml2-utils \
                 (scripts/install-test-deps does); this test never skips"
            )
        });
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

#[track_caller]
fn assert_valid_datex2(xml: &str) {
    if let Some(errors) = datex2_errors(xml) {
        panic!(
            "the publication does not validate against the DATEX II v3.6 schemas:\n{errors}\n{xml}"
        );
    }
}

#[track_caller]
fn assert_content_type(reply: &Reply, want: &str) {
    let got = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(got, want, "content type of {reply:?}");
}

async fn ngsi_ld(api: &Api, fid: &str) -> Vec<Value> {
    let reply = api
        .get(&format!("/v1/facilities/{fid}/ngsi-ld"), None)
        .await;
    assert_content_type(&reply, "application/ld+json");
    reply
        .assert_status(200)
        .as_array()
        .cloned()
        .unwrap_or_else(|| {
            panic!("a JSON array of entities: {reply:?}");
        })
}

async fn datex2(api: &Api) -> String {
    let reply = api.get("/v1/datex2/parking-status", None).await;
    assert_eq!(reply.status.as_u16(), 200, "{reply:?}");
    assert_content_type(&reply, "application/xml");
    reply.text
}

fn by_id<'a>(entities: &'a [Value], id: &str) -> &'a Value {
    entities
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no entity {id} in {entities:?}"))
}

fn a_spot_and_a_counter_zone() -> Vec<Value> {
    vec![
        spot_zone("A", "A-", 3, "standard"),
        json!({"id": "P", "name": "Counted", "capacity": 5}),
    ]
}

#[tokio::test]
async fn ngsi_ld_entities_validate_against_the_fiware_parking_schemas() {
    let (_server, api, _) = server_with_facility(&[], a_spot_and_a_counter_zone()).await;
    let entities = ngsi_ld(&api, "f1").await;
    assert_valid_entities(&entities);

    let types: Vec<&str> = entities.iter().filter_map(|e| e["type"].as_str()).collect();
    let count = |kind: &str| types.iter().filter(|t| **t == kind).count();
    assert_eq!(
        (
            count("OffStreetParking"),
            count("ParkingGroup"),
            count("ParkingSpot")
        ),
        (1, 2, 3),
        "one site, a group per zone, a spot per spot of the spot zone: {types:?}"
    );
    let site = by_id(&entities, "urn:ngsi-ld:OffStreetParking:f1");
    assert_eq!(site["name"], "Test Garage");
    assert_eq!(site["totalSpotNumber"], 8);
    assert_eq!(site["availableSpotNumber"], 8);
    assert_eq!(site["occupiedSpotNumber"], 0);
    assert_eq!(
        site["location"],
        json!({"type": "Point", "coordinates": [2.3522, 48.8566]}),
        "GeoJSON order is [lon, lat]"
    );
    let counted = by_id(&entities, "urn:ngsi-ld:ParkingGroup:f1:P");
    assert_eq!(counted["totalSpotNumber"], 5);
    assert_eq!(counted["refParkingSite"], "urn:ngsi-ld:OffStreetParking:f1");
    let spot = by_id(&entities, "urn:ngsi-ld:ParkingSpot:f1:A-002");
    assert_eq!(spot["refParkingGroup"], "urn:ngsi-ld:ParkingGroup:f1:A");
    assert_eq!(spot["refParkingSite"], "urn:ngsi-ld:OffStreetParking:f1");
    for entity in &entities {
        assert_eq!(entity["@context"], json!([SDM_CONTEXT, CORE_CONTEXT]));
        let modified = entity["dateModified"].as_str().unwrap_or_default();
        assert!(
            modified.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(modified).is_ok(),
            "dateModified is RFC 3339 UTC: {entity}"
        );
    }

    // The validation is not vacuous: the schemas refuse what they should.
    let validators = fiware_validators();
    let mut wrong = spot.clone();
    wrong["status"] = json!("parked");
    assert!(!schema_errors(&validators, &wrong).is_empty(), "{wrong}");
    let mut wrong = site.clone();
    wrong["location"] = json!({"type": "Point", "coordinates": "2.35,48.85"});
    assert!(!schema_errors(&validators, &wrong).is_empty(), "{wrong}");
}

#[tokio::test]
async fn ngsi_ld_spot_status_follows_the_spot_state() {
    let (server, api, key) =
        server_with_facility(&[], vec![spot_zone("A", "A-", 4, "standard")]).await;
    let booked = api
        .book(
            "f1",
            &server.user_token("ngsi-user"),
            json!({"plate": "NGSI-1", "spot": "A-001"}),
        )
        .await;
    booked.assert_status(201);
    api.put(
        "/v1/facilities/f1/spots/A-002/service",
        Some(server.admin_token()),
        json!({"out_of_service": true}),
    )
    .await
    .assert_status(200);
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut ws, JSON, &[spot(1, "A-004", true)]).await;
    assert!(await_ack(&mut ws, 1).await.is_empty());

    let entities = ngsi_ld(&api, "f1").await;
    assert_valid_entities(&entities);
    let status = |sid: &str| {
        by_id(&entities, &format!("urn:ngsi-ld:ParkingSpot:f1:{sid}"))["status"].clone()
    };
    assert_eq!(status("A-001"), "occupied", "RESERVED is occupied");
    assert_eq!(status("A-002"), "closed", "OUT_OF_SERVICE is closed");
    assert_eq!(status("A-003"), "free", "AVAILABLE is free");
    assert_eq!(status("A-004"), "occupied", "OCCUPIED is occupied");
    let group = by_id(&entities, "urn:ngsi-ld:ParkingGroup:f1:A");
    assert_eq!(group["totalSpotNumber"], 4, "{group}");
    assert_eq!(group["availableSpotNumber"], 1, "{group}");
    assert_eq!(
        group["occupiedSpotNumber"], 2,
        "reserved + occupied: {group}"
    );
}

#[tokio::test]
async fn ngsi_ld_spot_status_of_a_silent_sensor_is_unknown() {
    let (_server, api, _) = server_with_facility(
        &[("PARKME_SENSOR_STALE_SECS", "1")],
        vec![spot_zone("A", "A-", 1, "standard")],
    )
    .await;
    let spot = "urn:ngsi-ld:ParkingSpot:f1:A-001";
    poll_until(
        "the silent spot shows as unknown",
        Duration::from_secs(15),
        || async { by_id(&ngsi_ld(&api, "f1").await, spot)["status"] == "unknown" },
    )
    .await;
    let entities = ngsi_ld(&api, "f1").await;
    assert_valid_entities(&entities);
    let group = by_id(&entities, "urn:ngsi-ld:ParkingGroup:f1:A");
    assert_eq!(
        (
            &group["totalSpotNumber"],
            &group["availableSpotNumber"],
            &group["occupiedSpotNumber"]
        ),
        (&json!(1), &json!(0), &json!(0)),
        "UNKNOWN counts in the total only: {group}"
    );
}

#[tokio::test]
async fn ngsi_ld_of_an_unknown_facility_is_404() {
    let (_server, api, _) = server_with_facility(&[], a_spot_and_a_counter_zone()).await;
    api.get("/v1/facilities/nowhere/ngsi-ld", None)
        .await
        .assert_error(404, "unknown_facility");
    api.get("/v1/facilities/not%20an%20id/ngsi-ld", None)
        .await
        .assert_error(404, "unknown_facility");
}

#[tokio::test]
async fn datex2_parking_status_validates_against_the_datex_ii_v3_schemas() {
    let (server, api, _) = server_with_facility(&[], a_spot_and_a_counter_zone()).await;
    api.put_facility(
        server.admin_token(),
        "f2",
        layout(vec![spot_zone("B", "B-", 2, "ev")]),
    )
    .await;
    api.put(
        "/v1/facilities/f2/spots/B-001/service",
        Some(server.admin_token()),
        json!({"out_of_service": true}),
    )
    .await
    .assert_status(200);
    let xml = datex2(&api).await;
    assert_valid_datex2(&xml);

    assert!(
        xml.contains("xsi:type=\"prk:ParkingStatusPublication\""),
        "{xml}"
    );
    assert_eq!(
        xml.matches("xsi:type=\"prk:PlaceStatus\"").count(),
        2,
        "a place status per facility: {xml}"
    );
    assert_eq!(
        xml.matches("<prk:parkingStatusInformation").count(),
        5,
        "and a status per zone: {xml}"
    );
    for id in ["f1", "f1:A", "f1:P", "f2", "f2:B"] {
        assert!(xml.contains(&format!("id=\"{id}\"")), "{id} in {xml}");
    }
    assert!(
        xml.contains("<prk:numberOfVacantSpaces>8</prk:numberOfVacantSpaces>"),
        "f1 has 8 vacant spaces: {xml}"
    );

    // The validation is not vacuous: the schemas refuse what they should.
    let without_lang = xml.replacen(" lang=\"en\"", "", 1);
    assert!(datex2_errors(&without_lang).is_some(), "{without_lang}");
    let bad_status = xml.replacen(">spacesAvailable<", ">roomy<", 1);
    assert!(datex2_errors(&bad_status).is_some(), "{bad_status}");
}

#[tokio::test]
async fn names_with_xml_special_characters_are_escaped_and_still_validate() {
    let name = "Garage <Nord> & \"Süd\" 'x' ]]> \u{1}";
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    let mut facility = layout(vec![json!({
        "id": "Z",
        "name": "</com:value><evil/>",
        "spots": [{"id": "Z-1"}],
    })]);
    facility["name"] = json!(name);
    api.put_facility(server.admin_token(), "esc", facility)
        .await;

    let xml = datex2(&api).await;
    assert_valid_datex2(&xml);
    assert!(
        xml.contains("Garage &lt;Nord&gt; &amp; &quot;Süd&quot; &apos;x&apos; ]]&gt; \u{FFFD}"),
        "escaped, the control character replaced: {xml}"
    );
    assert!(xml.contains("&lt;/com:value&gt;&lt;evil/&gt;"), "{xml}");
    assert!(!xml.contains("<evil"), "{xml}");

    let entities = ngsi_ld(&api, "esc").await;
    assert_valid_entities(&entities);
    assert_eq!(
        by_id(&entities, "urn:ngsi-ld:OffStreetParking:esc")["name"],
        name
    );
}

#[tokio::test]
async fn datex2_parking_status_of_a_node_without_facilities_is_204() {
    let server = TestServer::start(NO_LIMITS).await;
    let reply = Api::new(&server)
        .get("/v1/datex2/parking-status", None)
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{reply:?}");
    assert!(reply.text.is_empty(), "{reply:?}");
}
