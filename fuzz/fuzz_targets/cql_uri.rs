//! The CQL storage URI (`parkme_storage::cql::CqlUri::parse`, from
//! `PARKME_STORAGE`): never panics; what is accepted has `host:port`
//! contact points and a lowercase CQL identifier as keyspace; its
//! `Display` form parses to the same hosts and keyspace.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parkme_storage::cql::CqlUri;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = CqlUri::parse(text) else {
        return;
    };
    assert!(!uri.hosts.is_empty());
    for host in &uri.hosts {
        let (_, port) = host.rsplit_once(':').expect("host:port");
        assert!(port.parse::<u16>().is_ok_and(|p| p != 0), "{host}");
    }
    assert!((1..=48).contains(&uri.keyspace.len()));
    assert!(uri.keyspace.starts_with(|c: char| c.is_ascii_lowercase()));
    assert!(
        uri.keyspace
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "{}",
        uri.keyspace
    );
    let again = CqlUri::parse(&uri.to_string()).expect("the display form parses");
    assert_eq!((again.hosts, again.keyspace), (uri.hosts, uri.keyspace));
});
