//! The routes, in one table: a route is added in one place, and a path the table knows with
//! another method is answered 405 (method not allowed) from the same table.

use std::time::Instant;

use super::App;
use super::answer::{Answer, Handled, problem};
use super::http::{Reply, Request};

/// A path segment of a route: a fixed word, or the instance's name.
#[derive(Clone, Copy)]
enum Segment {
    Word(&'static str),
    Name,
}

use Segment::{Name, Word};

/// A handler: the app, the instance's name (routes with [`Segment::Name`]), the body.
type Handler = fn(&App, &str, &[u8]) -> Handled;

/// A read route answered from the adapter's cache ([`super::cache`]): the app and the whole
/// request (its query); the bytes were made once and are kept while their folders are
/// unchanged.
type Reader = fn(&App, &Request) -> Reply;

/// What a route does.
#[derive(Clone, Copy)]
enum Action {
    Handle(Handler),
    Read(Reader),
}

use Action::{Handle, Read};

struct Route {
    method: &'static str,
    path: &'static [Segment],
    action: Action,
}

/// Every route (docs/http.md).
const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: &[Word("v1"), Word("instances")],
        action: Read(|app, _| app.list()),
    },
    Route {
        method: "GET",
        path: &[Word("v1"), Word("status")],
        action: Read(App::status),
    },
    Route {
        method: "GET",
        path: &[Word("metrics")],
        action: Read(|app, _| app.metrics()),
    },
    Route {
        method: "POST",
        path: &[Word("v1"), Word("instances")],
        action: Handle(|app, _, body| app.create(body)),
    },
    Route {
        method: "GET",
        path: &[Word("v1"), Word("instances"), Name],
        action: Handle(|app, name, _| Ok(app.show(name))),
    },
    Route {
        method: "DELETE",
        path: &[Word("v1"), Word("instances"), Name],
        action: Handle(App::remove),
    },
    Route {
        method: "GET",
        path: &[Word("v1"), Word("instances"), Name, Word("backups")],
        action: Handle(|app, name, _| Ok(app.backups(name))),
    },
    Route {
        method: "POST",
        path: &[Word("v1"), Word("instances"), Name, Word("backup")],
        action: Handle(App::backup),
    },
    Route {
        method: "POST",
        path: &[Word("v1"), Word("instances"), Name, Word("restore")],
        action: Handle(App::restore),
    },
    Route {
        method: "POST",
        path: &[Word("v1"), Word("instances"), Name, Word("migrate")],
        action: Handle(App::migrate),
    },
    Route {
        method: "POST",
        path: &[Word("v1"), Word("packages"), Word("check")],
        action: Handle(|app, _, body| app.check(body)),
    },
    Route {
        method: "PATCH",
        path: &[Word("v1"), Word("instances"), Name, Word("settings")],
        action: Handle(App::configure),
    },
    Route {
        method: "POST",
        path: &[Word("v1"), Word("instances"), Name, Word("enable")],
        action: Handle(|app, name, body| app.set_enabled(name, body, true)),
    },
    Route {
        method: "POST",
        path: &[Word("v1"), Word("instances"), Name, Word("disable")],
        action: Handle(|app, name, body| app.set_enabled(name, body, false)),
    },
    Route {
        method: "POST",
        path: &[Word("v1"), Word("instances"), Name, Word("upgrade")],
        action: Handle(App::upgrade),
    },
];

/// The instance's name when `segments` is `path` ("" for a path without one).
fn matches<'a>(path: &[Segment], segments: &[&'a str]) -> Option<&'a str> {
    if segments.len() != path.len() {
        return None;
    }
    let mut name = "";
    for (given, segment) in segments.iter().zip(path) {
        match segment {
            Word(w) if given == w => {}
            Word(_) => return None,
            Name => name = given,
        }
    }
    Some(name)
}

impl App {
    pub(super) fn handle(&self, request: Request) {
        let started = Instant::now();
        let Reply { status, body } = self.answer(&request);
        // Logged without query string or headers: the token never reaches a log. The method
        // is the client's text: only its letters are shown.
        let method: String = request
            .method
            .chars()
            .filter(char::is_ascii_alphabetic)
            .take(16)
            .collect();
        crate::common::errln!(
            "{method} {} -> {status} ({} ms)",
            request.url.split('?').next().unwrap_or("").escape_debug(),
            started.elapsed().as_millis()
        );
        // A client that went away gets nothing; the operation itself is complete either way.
        request.respond(Reply { status, body });
    }

    fn answer(&self, request: &Request) -> Reply {
        // The controller's overrides named as the JSON fields that set them.
        aps_panel::service::worded(&super::answer::JsonFields, || {
            self.route(request).unwrap_or_else(|(status, v)| Reply {
                status,
                body: v.into(),
            })
        })
    }

    fn route(&self, request: &Request) -> Result<Reply, Answer> {
        if !self.authorized(request) {
            return Err(problem(
                401,
                "unauthorized",
                "missing or wrong bearer token: send `Authorization: Bearer <the token of --token-file>`",
            ));
        }
        let path = request.url.split('?').next().unwrap_or("").to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = request.method.as_str();
        let mut known_path = false;
        for route in ROUTES {
            if let Some(name) = matches(route.path, &segments) {
                if route.method != method {
                    known_path = true;
                    continue;
                }
                return Ok(match route.action {
                    Read(reader) => reader(self, request),
                    Handle(handler) => {
                        let (status, v) = handler(self, name, &request.body).unwrap_or_else(|a| a);
                        Reply {
                            status,
                            body: v.into(),
                        }
                    }
                });
            }
        }
        Err(if known_path {
            problem(
                405,
                "method-not-allowed",
                format!(
                    "{} is not allowed on {}; see docs/http.md",
                    method.escape_debug(),
                    path.escape_debug()
                ),
            )
        } else {
            problem(
                404,
                "no-such-route",
                format!(
                    "no route {} {}; see docs/http.md",
                    method.escape_debug(),
                    path.escape_debug()
                ),
            )
        })
    }
}
