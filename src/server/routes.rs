//! The route table: exact paths and `/prefix/*` patterns, a method or any.

use std::ffi::{c_int, c_void};

use crate::abi::httpsrv_session;
use crate::errors::{EEXIST, EINVAL};
use crate::http::is_token;

pub type HandlerFn = unsafe extern "C" fn(*mut httpsrv_session, *mut c_void) -> c_int;

#[derive(Clone)]
pub struct Route {
    method: Option<String>,
    /// The path, or for a prefix route the part before `*` (ending in `/`).
    pattern: String,
    prefix: bool,
    pub pool: bool,
    pub handler: HandlerFn,
    pub userdata: *mut c_void,
}

// SAFETY: the userdata belongs to the module and is never dereferenced here; the module
// promised its handlers may run, with it, on any library thread.
unsafe impl Send for Route {}
// SAFETY: as for `Send`; a shared Route only hands the same pointer to concurrent handler
// calls, which that promise covers.
unsafe impl Sync for Route {}

#[derive(Default, Clone)]
pub struct Routes {
    routes: Vec<Route>,
}

pub enum Match<'a> {
    Found(&'a Route),
    /// The path has routes, none for this method: the value of `Allow`.
    WrongMethod(String),
    NotFound,
}

impl Routes {
    pub fn add(
        &mut self,
        method: Option<&str>,
        path: &str,
        pool: bool,
        handler: HandlerFn,
        userdata: *mut c_void,
    ) -> Result<(), c_int> {
        if method.is_some_and(|m| !is_token(m.as_bytes())) || !path.starts_with('/') {
            return Err(EINVAL);
        }
        let (pattern, prefix) = match path.strip_suffix('*') {
            Some(p) if p.ends_with('/') => (p.to_string(), true),
            Some(_) => return Err(EINVAL),
            None => (path.to_string(), false),
        };
        if pattern
            .bytes()
            .any(|b| !(0x21..0x7f).contains(&b) || b == b'?' || b == b'*')
        {
            return Err(EINVAL);
        }
        let method = method.map(str::to_string);
        if self
            .routes
            .iter()
            .any(|r| r.pattern == pattern && r.prefix == prefix && r.method == method)
        {
            return Err(EEXIST);
        }
        self.routes.push(Route {
            method,
            pattern,
            prefix,
            pool,
            handler,
            userdata,
        });
        Ok(())
    }

    pub fn has_pool_routes(&self) -> bool {
        self.routes.iter().any(|r| r.pool)
    }

    /// How well a route's pattern covers `path`: exact beats any prefix, longer prefixes win.
    fn score(route: &Route, path: &str) -> Option<usize> {
        if route.prefix {
            path.starts_with(&route.pattern)
                .then_some(route.pattern.len())
        } else {
            (route.pattern == path).then_some(usize::MAX)
        }
    }

    pub fn find(&self, method: &str, path: &str) -> Match<'_> {
        // One pass finds the usual answer: the best-covering route for this method, or for any.
        let mut best_score = None;
        let (mut for_method, mut for_any) = (None, None);
        for r in &self.routes {
            let Some(score) = Self::score(r, path) else {
                continue;
            };
            if best_score.is_none_or(|b| score > b) {
                best_score = Some(score);
                (for_method, for_any) = (None, None);
            } else if best_score != Some(score) {
                continue;
            }
            match r.method.as_deref() {
                Some(m) if m == method => for_method = for_method.or(Some(r)),
                None => for_any = for_any.or(Some(r)),
                Some(_) => {}
            }
        }
        if let Some(r) = for_method.or(for_any) {
            return Match::Found(r);
        }
        self.find_fallback(method, path)
    }

    /// `find` when no route of the best pattern takes the method: HEAD served by GET, or the
    /// methods the path has.
    fn find_fallback(&self, method: &str, path: &str) -> Match<'_> {
        let Some(best) = self
            .routes
            .iter()
            .filter_map(|r| Self::score(r, path))
            .max()
        else {
            return Match::NotFound;
        };
        let candidates = || {
            self.routes
                .iter()
                .filter(move |r| Self::score(r, path) == Some(best))
        };
        // A GET route also answers HEAD; the library drops the body.
        if method == "HEAD" {
            if let Some(r) = candidates().find(|r| r.method.as_deref() == Some("GET")) {
                return Match::Found(r);
            }
        }
        let mut allow: Vec<&str> = candidates().filter_map(|r| r.method.as_deref()).collect();
        if allow.contains(&"GET") && !allow.contains(&"HEAD") {
            allow.push("HEAD");
        }
        allow.sort_unstable();
        allow.dedup();
        Match::WrongMethod(allow.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn h(_: *mut httpsrv_session, _: *mut c_void) -> c_int {
        0
    }

    fn routes() -> Routes {
        let mut r = Routes::default();
        let ud = std::ptr::null_mut();
        r.add(Some("GET"), "/a", false, h, ud).unwrap();
        r.add(Some("POST"), "/a", true, h, ud).unwrap();
        r.add(None, "/files/*", false, h, ud).unwrap();
        r.add(Some("GET"), "/files/deep/*", false, h, ud).unwrap();
        r
    }

    #[test]
    fn matching() {
        let r = routes();
        assert!(matches!(r.find("GET", "/a"), Match::Found(x) if !x.pool));
        assert!(matches!(r.find("POST", "/a"), Match::Found(x) if x.pool));
        assert!(matches!(r.find("HEAD", "/a"), Match::Found(x) if !x.pool));
        assert!(matches!(r.find("PUT", "/a"), Match::WrongMethod(a) if a == "GET, HEAD, POST"));
        assert!(matches!(r.find("DELETE", "/files/x"), Match::Found(_)));
        assert!(
            matches!(r.find("GET", "/files/deep/x"), Match::Found(x) if x.pattern == "/files/deep/")
        );
        assert!(
            matches!(r.find("PUT", "/files/deep/x"), Match::WrongMethod(a) if a == "GET, HEAD")
        );
        assert!(matches!(r.find("GET", "/b"), Match::NotFound));
        assert!(matches!(r.find("GET", "/files"), Match::NotFound));
    }

    #[test]
    fn a_method_route_beats_an_any_route_of_the_same_pattern_in_any_order() {
        let mut r = Routes::default();
        let ud = std::ptr::null_mut();
        r.add(None, "/p/long/*", true, h, ud).unwrap();
        r.add(None, "/p/*", false, h, ud).unwrap();
        r.add(Some("GET"), "/p/*", true, h, ud).unwrap();
        r.add(Some("GET"), "/q", false, h, ud).unwrap();
        r.add(None, "/q", true, h, ud).unwrap();
        // The longer prefix wins even though a method route of a shorter one comes later.
        assert!(matches!(r.find("GET", "/p/long/x"), Match::Found(x) if x.pattern == "/p/long/"));
        assert!(matches!(r.find("GET", "/p/x"), Match::Found(x) if x.pool));
        assert!(matches!(r.find("PUT", "/p/x"), Match::Found(x) if !x.pool));
        assert!(matches!(r.find("GET", "/q"), Match::Found(x) if !x.pool));
        assert!(matches!(r.find("HEAD", "/q"), Match::Found(x) if x.pool));
    }

    #[test]
    fn rejects() {
        let mut r = routes();
        let ud = std::ptr::null_mut();
        assert_eq!(r.add(Some("GET"), "/a", false, h, ud), Err(EEXIST));
        assert_eq!(r.add(Some("GET"), "a", false, h, ud), Err(EINVAL));
        assert_eq!(r.add(Some("G T"), "/x", false, h, ud), Err(EINVAL));
        assert_eq!(r.add(Some("GET"), "/x*", false, h, ud), Err(EINVAL));
        assert!(r.add(None, "/*", false, h, ud).is_ok());
    }
}
