//! URI -> origin key: the identity of a service point (scheme, host, port), as .NET's
//! `FindServicePoint` keys it. Parsing and normalisation are the `url` crate's.

use crate::error::{Error, ErrorKind, Result};
use std::fmt;
use std::sync::Arc;
use url::{Host, Url};

/// The schemes a service point can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Lower-case scheme and host with the port filled in; path, query and user info are not part
/// of it, so every URL of one origin maps to the same key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub scheme: Scheme,
    /// Host as used on the wire: lower-case name, IPv4 literal, or bracketed IPv6 literal.
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Host name to resolve (IPv6 literals without brackets).
    pub fn connect_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The `Host` header value: the port appears only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Origin {
    /// `scheme://host[:port]`, the default port omitted (the service point's address).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host_header())
    }
}

/// A parsed request URL: its origin plus the request target (path and query).
#[derive(Clone, Debug)]
pub struct Target {
    pub origin: Origin,
    /// Origin-form request target, e.g. `/a/b?x=1`; never empty.
    pub path_and_query: String,
}

/// The `scheme://authority` prefix of a URL, as the WHATWG URL parser delimits it (the
/// authority ends at `/`, `\\`, `?` or `#`), after trimming surrounding whitespace. The origin
/// of a URL depends on this prefix alone, so parsing the prefix gives the same origin as
/// parsing the whole URL; the manager memoises origins by it.
pub fn authority_prefix(uri: &str) -> Option<&str> {
    let uri = uri.trim();
    let start = uri.find("://")? + 3;
    let end = uri[start..]
        .find(['/', '\\', '?', '#'])
        .map_or(uri.len(), |i| start + i);
    // An empty authority (`http:///host/`, which the URL parser reads past) or control
    // characters the parser strips: no shortcut, parse the whole URL.
    if end == start || uri[..end].bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    Some(&uri[..end])
}

/// Parses an absolute http or https URL. Shared: a description made from a remembered URL
/// costs no copy of it.
pub fn parse(uri: &str) -> Result<Arc<Target>> {
    // A program sends the same URLs again and again (a new request description each time,
    // as the README's example does): the url crate's parse is the larger part of creating
    // one, so each thread remembers its recent results (no lock, bounded).
    thread_local! {
        static RECENT: std::cell::RefCell<std::collections::HashMap<String, Arc<Target>>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    const RECENT_MAX: usize = 256;
    if let Some(t) = RECENT.with(|r| r.borrow().get(uri).cloned()) {
        return Ok(t);
    }
    let target = Arc::new(parse_uncached(uri)?);
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        if r.len() >= RECENT_MAX {
            r.clear();
        }
        r.insert(uri.to_string(), Arc::clone(&target));
    });
    Ok(target)
}

fn parse_uncached(uri: &str) -> Result<Target> {
    let url = Url::parse(uri.trim())
        .map_err(|e| Error::new(ErrorKind::InvalidUrl, format!("invalid URL '{uri}': {e}")))?;
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(Error::new(
                ErrorKind::UnsupportedScheme,
                format!("unsupported scheme '{other}' in '{uri}' (only http and https)"),
            ));
        }
    };
    let host = match url.host() {
        Some(Host::Domain(d)) if !d.is_empty() => d.to_ascii_lowercase(),
        Some(Host::Ipv4(a)) => a.to_string(),
        Some(Host::Ipv6(a)) => format!("[{a}]"),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidUrl,
                format!("URL '{uri}' has no host"),
            ));
        }
    };
    let port = url.port().unwrap_or(scheme.default_port());
    let mut path_and_query = url.path().to_string();
    if path_and_query.is_empty() {
        path_and_query.push('/');
    }
    if let Some(q) = url.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    Ok(Target {
        origin: Origin { scheme, host, port },
        path_and_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_for_case_default_port_path_and_user_info() {
        let a = parse("HTTP://Example.COM/a?b=1").unwrap().origin.clone();
        let b = parse("http://user:pw@example.com:80/other#frag")
            .unwrap()
            .origin
            .clone();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "http://example.com");
    }

    #[test]
    fn non_default_port_and_ipv6() {
        let t = parse("http://[::1]:8080").unwrap();
        assert_eq!(t.origin.to_string(), "http://[::1]:8080");
        assert_eq!(t.origin.connect_host(), "::1");
        assert_eq!(t.path_and_query, "/");
        assert_eq!(parse("https://h").unwrap().origin.port, 443);
    }

    #[test]
    fn prefix_gives_the_same_origin_as_the_whole_url() {
        for uri in [
            "http://Example.com:80/a?b#c",
            "  HTTP://user:pw@host:8080?q",
            "http://h\\path",
            "https://[::1]#frag",
            "http://h",
        ] {
            let prefix = authority_prefix(uri).unwrap();
            assert_eq!(
                parse(prefix).unwrap().origin.clone(),
                parse(uri).unwrap().origin.clone(),
                "{uri}"
            );
        }
        assert_eq!(authority_prefix("no scheme"), None);
    }

    #[test]
    fn errors_have_kinds() {
        assert_eq!(
            parse("ftp://x/").unwrap_err().kind,
            ErrorKind::UnsupportedScheme
        );
        assert_eq!(parse("not a url").unwrap_err().kind, ErrorKind::InvalidUrl);
        assert_eq!(parse("http://").unwrap_err().kind, ErrorKind::InvalidUrl);
    }
}
