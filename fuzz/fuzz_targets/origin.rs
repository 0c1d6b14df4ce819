//! URL -> origin (`origin::parse`), the `authority_prefix` the manager memoises origins by, and
//! `Manager::find`, which uses that memo.
#![no_main]

use libfuzzer_sys::fuzz_target;
use servicepoint::Manager;
use servicepoint::origin::{Scheme, authority_prefix, parse};
use std::sync::OnceLock;

fn manager() -> &'static Manager {
    static MANAGER: OnceLock<Manager> = OnceLock::new();
    MANAGER.get_or_init(|| {
        let m = Manager::new();
        // Bounded: finding new origins evicts old points.
        m.set_max_service_points(8).unwrap();
        m
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = std::str::from_utf8(data) else {
        return;
    };
    let whole = parse(uri);
    let prefix = authority_prefix(uri);
    if let Some(p) = prefix {
        assert!(uri.trim().starts_with(p), "prefix {p:?} of {uri:?}");
        assert!(p.contains("://"));
        if let Ok(t) = &whole {
            let from_prefix = parse(p).unwrap_or_else(|e| {
                panic!(
                    "{uri:?} parses but its prefix {p:?} does not: {}",
                    e.message
                )
            });
            assert_eq!(from_prefix.origin, t.origin, "prefix {p:?} of {uri:?}");
        }
    }
    let Ok(t) = whole else {
        return;
    };
    let o = &t.origin;
    assert!(t.path_and_query.starts_with('/'), "{:?}", t.path_and_query);
    assert!(!t.path_and_query.contains('#'));
    assert!(!o.host.is_empty());
    assert_eq!(o.host, o.host.to_ascii_lowercase());
    assert!(
        !o.host.contains(['/', '?', '#', '@', ' ']),
        "host {:?}",
        o.host
    );
    if o.host.starts_with('[') {
        assert!(o.host.ends_with(']'));
        assert!(o.connect_host().parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        assert!(!o.host.contains(':'), "host {:?}", o.host);
    }
    assert!(matches!(o.scheme, Scheme::Http | Scheme::Https));
    // The origin's own address parses back to it.
    let shown = o.to_string();
    let again = parse(&shown).unwrap_or_else(|e| panic!("{shown:?} from {uri:?}: {}", e.message));
    assert_eq!(&again.origin, o, "{shown:?} from {uri:?}");
    // The manager (through its prefix memo) finds the point of the same origin.
    let point = manager()
        .find(uri)
        .unwrap_or_else(|e| panic!("find {uri:?}: {}", e.message));
    assert_eq!(&point.origin, o, "find {uri:?}");
    let by_origin = manager().find_origin(o).unwrap();
    assert_eq!(&by_origin.origin, o);
});
