//! HTTP proxies as policy: a proxy URL (with `user:password`), the bypass list, the
//! conventional environment variables (read only when the program opts in), and which proxy
//! an origin goes through. Pure functions over values; the manager holds the settings and the
//! exchange does the wire work (absolute-form requests, `CONNECT` tunnels).
//!
//! Identity (.NET's `FindServicePoint(uri, proxy)`): plain http through a proxy is pooled per
//! proxy (one service point, the proxy's, for every origin behind it); https goes through a
//! tunnel pooled per (proxy, origin).

use crate::error::{Error, ErrorKind, Result};
use crate::origin::{Origin, Scheme};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

/// The bypass list a manager starts with: loopback names and addresses go direct, as in .NET
/// (`FindServicePoint` skips the proxy for loopback) and browsers.
pub const DEFAULT_BYPASS: &str = "localhost, 127.0.0.0/8, ::1";

/// A parsed proxy URL: `http://[user[:password]@]host[:port]` (the scheme may be left out;
/// port 80 by default). Equal proxies (host, port and credentials) share service points.
#[derive(Clone, Debug)]
pub struct Proxy {
    /// Where connections go: `http://host:port`.
    pub origin: Origin,
    /// `Basic <base64(user:password)>`, the `Proxy-Authorization` value, when a user is given.
    pub authorization: Option<String>,
    /// The URL normalised, credentials included (what a getter returns).
    url: String,
}

impl PartialEq for Proxy {
    fn eq(&self, other: &Self) -> bool {
        self.origin == other.origin && self.authorization == other.authorization
    }
}
impl Eq for Proxy {}
impl Hash for Proxy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.origin.hash(state);
        self.authorization.hash(state);
    }
}

impl fmt::Display for Proxy {
    /// `http://host:port`, never the password (messages and logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proxy {}:{}", self.origin.host, self.origin.port)
    }
}

impl Proxy {
    /// Parses a proxy URL. Only `http://` proxies are supported (https to the origin goes
    /// through them in a `CONNECT` tunnel); user and password are percent-decoded.
    pub fn parse(text: &str) -> Result<Proxy> {
        let text = text.trim();
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let invalid = |why: &str| {
            Error::new(
                ErrorKind::InvalidUrl,
                format!("invalid proxy URL '{}': {why}", redact(text)),
            )
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(Error::new(
                ErrorKind::UnsupportedScheme,
                format!(
                    "proxy scheme '{}' is not supported (only http:// proxies)",
                    url.scheme()
                ),
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a proxy URL has no path, query or fragment"));
        }
        let target = crate::origin::parse(&format!(
            "http://{}:{}/",
            url.host_str().ok_or_else(|| invalid("no host"))?,
            url.port().unwrap_or(80)
        ))
        .map_err(|e| invalid(&e.message))?;
        let user = percent_decode(url.username()).map_err(|_| invalid("bad user name"))?;
        let password = url
            .password()
            .map(percent_decode)
            .transpose()
            .map_err(|_| invalid("bad password"))?;
        let authorization = (!user.is_empty() || password.is_some()).then(|| {
            let pair = format!("{user}:{}", password.as_deref().unwrap_or(""));
            format!("Basic {}", base64(pair.as_bytes()))
        });
        let credentials = match (url.username(), url.password()) {
            ("", None) => String::new(),
            (u, None) => format!("{u}@"),
            (u, Some(p)) => format!("{u}:{p}@"),
        };
        let origin = target.origin.clone();
        let url = format!("http://{credentials}{}:{}", origin.host, origin.port);
        Ok(Proxy {
            origin,
            authorization,
            url,
        })
    }

    /// The URL as normalised, with its credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host:port` of an origin, as a `CONNECT` request names it.
    pub fn authority(origin: &Origin) -> String {
        format!("{}:{}", origin.host, origin.port)
    }
}

/// A URL with its password replaced, for messages.
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &text[..s + 3], &text[at..]),
        (None, Some(at)) => format!("***{}", &text[at..]),
        _ => text.to_string(),
    }
}

fn percent_decode(s: &str) -> std::result::Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(())?;
            let hex = std::str::from_utf8(hex).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One entry of a bypass list.
#[derive(Clone, Debug, PartialEq)]
enum Rule {
    /// `*`: every origin goes direct.
    All,
    /// `<local>`: host names without a dot (.NET's BypassProxyOnLocal).
    Local,
    /// `example.com`, `.example.com`, `*.example.com`: the host and its subdomains.
    Domain { name: String, port: Option<u16> },
    /// An IP address or a CIDR block: `10.1.2.3`, `10.0.0.0/8`, `::1`, `[fd00::]/8`.
    Net {
        net: IpAddr,
        bits: u8,
        port: Option<u16>,
    },
}

/// A bypass list (curl's `NO_PROXY` syntax, plus .NET's `<local>`): entries separated by
/// commas, semicolons or spaces. Matching is on the URL's host as written (no DNS lookup).
#[derive(Clone, Debug, PartialEq)]
pub struct Bypass {
    rules: Vec<Rule>,
    text: String,
}

impl Default for Bypass {
    fn default() -> Self {
        Bypass::parse(DEFAULT_BYPASS).expect("the default bypass list parses")
    }
}

impl Bypass {
    pub fn parse(list: &str) -> Result<Bypass> {
        let mut rules = Vec::new();
        let mut kept = Vec::new();
        for entry in list
            .split([',', ';', ' ', '\t', '\n'])
            .filter(|e| !e.is_empty())
        {
            rules.push(parse_rule(entry)?);
            kept.push(entry);
        }
        Ok(Bypass {
            rules,
            text: kept.join(", "),
        })
    }

    /// The list, normalised (entries joined by ", ").
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, origin: &Origin) -> bool {
        let host = origin.connect_host();
        let ip = host.parse::<IpAddr>().ok();
        self.rules.iter().any(|rule| match rule {
            Rule::All => true,
            Rule::Local => ip.is_none() && !host.contains('.'),
            Rule::Domain { name, port } => {
                port.is_none_or(|p| p == origin.port)
                    && ip.is_none()
                    && (host == name
                        || host
                            .strip_suffix(name.as_str())
                            .is_some_and(|rest| rest.ends_with('.')))
            }
            Rule::Net { net, bits, port } => {
                port.is_none_or(|p| p == origin.port) && ip.is_some_and(|a| in_net(a, *net, *bits))
            }
        })
    }
}

fn parse_rule(entry: &str) -> Result<Rule> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("bypass list entry '{entry}': {why}"),
        )
    };
    if entry == "*" {
        return Ok(Rule::All);
    }
    if entry.eq_ignore_ascii_case("<local>") {
        return Ok(Rule::Local);
    }
    // Split off a port: `[v6]:p`, `host:p`; a bare IPv6 address has several colons.
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let close = rest.find(']').ok_or_else(|| bad("unclosed '['"))?;
        let after = &rest[close + 1..];
        let (suffix, port) = match after.split_once(':') {
            Some((s, p)) => (s, Some(p)),
            None => (after, None),
        };
        (format!("{}{suffix}", &rest[..close]), port)
    } else if entry.matches(':').count() == 1 {
        let (h, p) = entry.split_once(':').expect("one colon");
        (h.to_string(), Some(p))
    } else {
        (entry.to_string(), None)
    };
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| bad("bad port")))
        .transpose()?;
    let (addr, bits) = match host.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (host.as_str(), None),
    };
    if let Ok(net) = addr.parse::<IpAddr>() {
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|&b| b <= max)
                .ok_or_else(|| bad("bad prefix length"))?,
            None => max,
        };
        return Ok(Rule::Net { net, bits, port });
    }
    if bits.is_some() {
        return Err(bad("a prefix length needs an IP address"));
    }
    let name = host
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .to_ascii_lowercase();
    if name.is_empty() || name.contains(['*', '/', '@']) {
        return Err(bad("not a host name, domain, IP address or '*'"));
    }
    Ok(Rule::Domain { name, port })
}

fn in_net(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, n, width) = match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u32::from(a) as u128, u32::from(n) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        (IpAddr::V6(a), IpAddr::V4(_)) => match a.to_ipv4_mapped() {
            Some(v4) => return in_net(IpAddr::V4(v4), net, bits),
            None => return false,
        },
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - bits as u32;
    (a >> shift) == (n >> shift)
}

/// The proxies the conventional environment variables name: `http_proxy` for http URLs,
/// `https_proxy` for https, `all_proxy` for both when the specific one is unset, and
/// `no_proxy` (lower case first, then upper case, as curl). `HTTP_PROXY` in upper case is
/// ignored when `GATEWAY_INTERFACE` is set (a CGI program, where a request's `Proxy:` header
/// would become it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvProxies {
    pub http: Option<Arc<Proxy>>,
    pub https: Option<Arc<Proxy>>,
    pub no_proxy: Option<Bypass>,
}

impl EnvProxies {
    /// Reads the variables through `get` (the process environment in use, a table in tests).
    /// An unparsable proxy variable is an error naming it.
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<EnvProxies> {
        let var = |lower: &str, allow_upper: bool| {
            get(lower)
                .or_else(|| {
                    allow_upper
                        .then(|| get(&lower.to_ascii_uppercase()))
                        .flatten()
                })
                .filter(|v| !v.trim().is_empty())
        };
        let cgi = get("GATEWAY_INTERFACE").is_some();
        let proxy = |name: &str, allow_upper: bool| -> Result<Option<Arc<Proxy>>> {
            var(name, allow_upper)
                .map(|v| {
                    Proxy::parse(&v).map(Arc::new).map_err(|e| {
                        Error::new(
                            e.kind,
                            format!("environment variable {name}: {}", e.message),
                        )
                    })
                })
                .transpose()
        };
        let all = proxy("all_proxy", true)?;
        let http = proxy("http_proxy", !cgi)?.or_else(|| all.clone());
        let https = proxy("https_proxy", true)?.or(all);
        let no_proxy = var("no_proxy", true)
            .map(|v| Bypass::parse(&v))
            .transpose()?;
        Ok(EnvProxies {
            http,
            https,
            no_proxy,
        })
    }

    /// Reads the process's environment.
    pub fn from_process() -> Result<EnvProxies> {
        EnvProxies::read(|name| std::env::var(name).ok())
    }
}

/// A manager's proxy settings.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The manager-wide proxy (`None`: direct, or the environment's when enabled).
    pub proxy: Option<Arc<Proxy>>,
    pub bypass: Bypass,
    /// `Some` when the program opted in to the environment variables (read then).
    pub env: Option<EnvProxies>,
}

/// A request's own proxy choice.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Override {
    /// The manager's settings decide.
    #[default]
    Manager,
    /// Direct, whatever the manager says.
    Direct,
    /// This proxy (the manager's bypass list still applies).
    Proxy(Arc<Proxy>),
}

impl Override {
    /// `None` → the manager's, `""` → direct, else a proxy URL.
    pub fn parse(text: Option<&str>) -> Result<Override> {
        Ok(match text.map(str::trim) {
            None => Override::Manager,
            Some("") => Override::Direct,
            Some(url) => Override::Proxy(Arc::new(Proxy::parse(url)?)),
        })
    }
}

/// Which proxy `origin` goes through, or `None` for a direct connection.
pub fn choose(settings: &Settings, choice: &Override, origin: &Origin) -> Option<Arc<Proxy>> {
    let candidate = match choice {
        Override::Direct => return None,
        Override::Proxy(p) => Some(Arc::clone(p)),
        Override::Manager => settings.proxy.clone(),
    };
    if let Some(p) = candidate {
        return (!settings.bypass.matches(origin)).then_some(p);
    }
    let env = settings.env.as_ref()?;
    let p = match origin.scheme {
        Scheme::Http => env.http.clone()?,
        Scheme::Https => env.https.clone()?,
    };
    let bypassed =
        settings.bypass.matches(origin) || env.no_proxy.as_ref().is_some_and(|b| b.matches(origin));
    (!bypassed).then_some(p)
}

/// How a service point reaches its server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Route {
    #[default]
    Direct,
    /// Plain http through a proxy: absolute-form requests on connections to the proxy. The
    /// point is the proxy's (its origin is the proxy's), shared by every origin behind it.
    Forward(Arc<Proxy>),
    /// https through a `CONNECT` tunnel, then TLS with the origin: one point per
    /// (proxy, origin).
    Tunnel(Arc<Proxy>),
}

impl Route {
    /// The route to `origin` through `proxy`, and the origin of the point that serves it.
    pub fn to(origin: &Origin, proxy: Option<Arc<Proxy>>) -> (Route, Origin) {
        match proxy {
            None => (Route::Direct, origin.clone()),
            Some(p) if origin.scheme == Scheme::Http => {
                (Route::Forward(Arc::clone(&p)), p.origin.clone())
            }
            Some(p) => (Route::Tunnel(p), origin.clone()),
        }
    }

    pub fn proxy(&self) -> Option<&Arc<Proxy>> {
        match self {
            Route::Direct => None,
            Route::Forward(p) | Route::Tunnel(p) => Some(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> Origin {
        crate::origin::parse(url).unwrap().origin.clone()
    }

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://u%40x:p%3Aw@Proxy.Example:3128/").unwrap();
        assert_eq!(p.origin.to_string(), "http://proxy.example:3128");
        assert_eq!(
            p.authorization.as_deref(),
            Some(format!("Basic {}", base64(b"u@x:p:w")).as_str())
        );
        assert_eq!(p.url(), "http://u%40x:p%3Aw@proxy.example:3128");
        assert!(!p.to_string().contains("p%3Aw"));
        let bare = Proxy::parse("10.0.0.1:8080").unwrap();
        assert_eq!(bare.origin.to_string(), "http://10.0.0.1:8080");
        assert_eq!(bare.authorization, None);
        assert_eq!(Proxy::parse("http://h").unwrap().origin.port, 80);
        assert_eq!(
            Proxy::parse("http://user@h")
                .unwrap()
                .authorization
                .as_deref(),
            Some("Basic dXNlcjo=")
        );
        for (bad, kind) in [
            ("socks5://h:1080", ErrorKind::UnsupportedScheme),
            ("https://h:443", ErrorKind::UnsupportedScheme),
            ("http://h/path", ErrorKind::InvalidUrl),
            ("http://", ErrorKind::InvalidUrl),
            ("http://u:%zz@h", ErrorKind::InvalidUrl),
        ] {
            let e = Proxy::parse(bad).unwrap_err();
            assert_eq!(e.kind, kind, "{bad}");
        }
        assert!(
            !Proxy::parse("http://u:secret@/x")
                .unwrap_err()
                .message
                .contains("secret")
        );
    }

    #[test]
    fn base64_pads() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn bypass_table() {
        let table: &[(&str, &str, bool)] = &[
            (DEFAULT_BYPASS, "http://localhost:8080/", true),
            (DEFAULT_BYPASS, "http://a.localhost/", true),
            (DEFAULT_BYPASS, "http://127.0.0.1:1/", true),
            (DEFAULT_BYPASS, "http://127.9.9.9/", true),
            (DEFAULT_BYPASS, "http://[::1]:9/", true),
            (DEFAULT_BYPASS, "http://[::ffff:127.0.0.1]/", true),
            (DEFAULT_BYPASS, "http://example.com/", false),
            (DEFAULT_BYPASS, "http://notlocalhost/", false),
            (DEFAULT_BYPASS, "http://128.0.0.1/", false),
            ("", "http://localhost/", false),
            ("*", "https://anything.example/", true),
            ("example.com", "http://example.com/", true),
            ("example.com", "http://www.Example.com/", true),
            ("example.com", "http://badexample.com/", false),
            (".example.com", "http://example.com/", true),
            ("*.example.com", "http://a.b.example.com/", true),
            ("example.com:8080", "http://example.com:8080/", true),
            ("example.com:8080", "http://example.com/", false),
            ("10.0.0.0/8", "http://10.2.3.4/", true),
            ("10.0.0.0/8", "http://11.2.3.4/", false),
            ("10.0.0.0/8", "http://10.example/", false),
            ("192.168.1.5", "https://192.168.1.5/", true),
            ("[fd00::]/8", "http://[fd12::1]/", true),
            ("[::1]:8080", "http://[::1]:8080/", true),
            ("[::1]:8080", "http://[::1]:8081/", false),
            ("<local>", "http://intranet/", true),
            ("<local>", "http://intranet.corp/", false),
            ("a.com; b.com c.com", "http://c.com/", true),
        ];
        for &(list, url, want) in table {
            let b = Bypass::parse(list).unwrap();
            assert_eq!(b.matches(&origin(url)), want, "{list:?} {url}");
        }
        assert_eq!(Bypass::parse("a.com;b.com").unwrap().text(), "a.com, b.com");
        for bad in ["10.0.0.0/33", "h:port", "[::1", "a/b", "x@y"] {
            assert!(Bypass::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn environment_table() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            EnvProxies::read(move |n| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            })
            .unwrap()
        };
        let host = |p: &Option<Arc<Proxy>>| p.as_ref().map(|p| p.origin.host.clone());
        let e = env(&[
            ("http_proxy", "h1:1"),
            ("HTTPS_PROXY", "h2:2"),
            ("NO_PROXY", "x.com"),
        ]);
        assert_eq!(host(&e.http).as_deref(), Some("h1"));
        assert_eq!(host(&e.https).as_deref(), Some("h2"));
        assert!(e.no_proxy.unwrap().matches(&origin("http://a.x.com/")));
        let e = env(&[("HTTP_PROXY", "up:1"), ("all_proxy", "all:3")]);
        assert_eq!(host(&e.http).as_deref(), Some("up"));
        assert_eq!(host(&e.https).as_deref(), Some("all"));
        let e = env(&[("HTTP_PROXY", "up:1"), ("GATEWAY_INTERFACE", "CGI/1.1")]);
        assert_eq!(e.http, None);
        let e = env(&[("http_proxy", "lower:1"), ("HTTP_PROXY", "upper:1")]);
        assert_eq!(host(&e.http).as_deref(), Some("lower"));
        assert_eq!(env(&[("http_proxy", "")]).http, None);
        assert!(EnvProxies::read(|n| (n == "https_proxy").then(|| "ftp://x".into())).is_err());
    }

    #[test]
    fn choice_table() {
        let p = Arc::new(Proxy::parse("p:1").unwrap());
        let q = Arc::new(Proxy::parse("q:2").unwrap());
        let manager = Settings {
            proxy: Some(Arc::clone(&p)),
            ..Settings::default()
        };
        let with_env = Settings {
            env: Some(EnvProxies {
                http: Some(Arc::clone(&q)),
                https: None,
                no_proxy: Some(Bypass::parse("skip.com").unwrap()),
            }),
            ..Settings::default()
        };
        let name = |c: Option<Arc<Proxy>>| c.map(|p| p.origin.host.clone());
        let o = origin("http://example.com/");
        let table: &[(&Settings, Override, &str, Option<&str>)] = &[
            (
                &Settings::default(),
                Override::Manager,
                "http://example.com/",
                None,
            ),
            (
                &manager,
                Override::Manager,
                "http://example.com/",
                Some("p"),
            ),
            (
                &manager,
                Override::Manager,
                "https://example.com/",
                Some("p"),
            ),
            (&manager, Override::Manager, "http://127.0.0.1:9/", None),
            (&manager, Override::Direct, "http://example.com/", None),
            (
                &manager,
                Override::Proxy(Arc::clone(&q)),
                "http://example.com/",
                Some("q"),
            ),
            (
                &manager,
                Override::Proxy(Arc::clone(&q)),
                "http://localhost/",
                None,
            ),
            (
                &with_env,
                Override::Manager,
                "http://example.com/",
                Some("q"),
            ),
            (&with_env, Override::Manager, "https://example.com/", None),
            (&with_env, Override::Manager, "http://a.skip.com/", None),
            (&with_env, Override::Manager, "http://localhost/", None),
        ];
        for (settings, choice, url, want) in table {
            let got = name(choose(settings, choice, &origin(url)));
            assert_eq!(got.as_deref(), *want, "{url} {choice:?}");
        }
        let (route, point_origin) = Route::to(&o, Some(Arc::clone(&p)));
        assert_eq!(route, Route::Forward(Arc::clone(&p)));
        assert_eq!(point_origin, p.origin);
        let s = origin("https://example.com/");
        let (route, point_origin) = Route::to(&s, Some(Arc::clone(&p)));
        assert_eq!(route, Route::Tunnel(p));
        assert_eq!(point_origin, s);
        assert_eq!(Route::to(&o, None), (Route::Direct, o.clone()));
    }
}
