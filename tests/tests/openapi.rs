//! The OpenAPI document the node serves against the routes it really has.
//!
//! Generic on purpose: the routes are read from the node's source (every `.route("…", …)` in
//! `node/src`), so a route added later without documentation fails here, and every documented
//! operation is requested on a running node to prove it is routed and that the status it
//! answers with is one the document lists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hubcat_tests::TestHub;
use serde_json::Value;

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read node/src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a call's arguments: from just after `(` to its matching `)`.
fn call_args(text: &str) -> &str {
    let mut depth = 1usize;
    let mut in_string = false;
    let mut prev = '\0';
    for (i, c) in text.char_indices() {
        match c {
            '"' if prev != '\\' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
        prev = c;
    }
    text
}

/// Every (METHOD, path) the node's source routes with axum's `.route(…)`; other ways to add
/// routes (`route_service`, `nest`) are reported so this test learns about them.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for unsupported in [".route_service(", ".nest(", ".nest_service("] {
            assert!(
                !text.contains(unsupported),
                "{} adds routes with `{unsupported}`; teach tests/tests/openapi.rs to read them",
                file.display()
            );
        }
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            let args = call_args(&rest[at + ".route(".len()..]);
            rest = &rest[at + ".route(".len()..];
            let Some(path) = args.split('"').nth(1) else {
                panic!(
                    "{}: a route whose path is not a literal: {args}",
                    file.display()
                );
            };
            let handlers = &args[args.find(',').unwrap_or(0)..];
            let bytes = handlers.as_bytes();
            for method in METHODS {
                let mut from = 0;
                while let Some(i) = handlers[from..].find(&format!("{method}(")) {
                    let start = from + i;
                    let before = start.checked_sub(1).map(|j| bytes[j] as char);
                    if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                        routes.insert((method.to_uppercase(), path.to_owned()));
                    }
                    from = start + method.len();
                }
            }
        }
    }
    routes
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn openapi_documents_every_route_and_every_error_it_answers_with() {
    let hub = TestHub::start("HDS", "SE").expect("hub");
    let (status, doc) = hub.request(reqwest::Method::GET, "/openapi.json", None, None);
    assert_eq!(status, 200, "{doc}");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );

    let routed = routes_in_source();
    assert!(
        routed.len() >= 9,
        "found too few routes in the source: {routed:?}"
    );
    let documented = documented(&doc);
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from /openapi.json (add #[utoipa::path] and list them in openapi.rs): {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        unrouted.is_empty(),
        "documented operations with no route: {unrouted:?}"
    );

    let error_schema = &doc["components"]["schemas"]["ErrorBody"];
    assert!(
        error_schema["properties"]["error"].is_object()
            && error_schema["properties"]["detail"].is_object(),
        "the error body is documented: {error_schema}"
    );
    for (method, path) in &documented {
        let op = &doc["paths"][path][method.to_lowercase()];
        let responses = op["responses"].as_object().expect("responses");
        // Every error response carries the documented error body.
        for (code, response) in responses {
            if code.starts_with('4') || code.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{method} {path} {code} must document the error body"
                );
            }
        }
        // Requested without a token and with a made-up id and body: routed (not the
        // fallback), and answered with a status the document lists.
        let concrete = path.replace("{id}", "no-such-record");
        let body = (method == "POST").then(|| b"{}".to_vec());
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let (status, answer) = hub.request(m, &concrete, None, body);
        let fallback = answer["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("no such route"))
            || answer["error"] == "method_not_allowed";
        assert!(
            !fallback,
            "{method} {path} is documented but not routed: {answer}"
        );
        assert!(
            responses.contains_key(&status.to_string()),
            "{method} {path} answered {status}, which its documentation does not list: {answer}"
        );
    }
}
