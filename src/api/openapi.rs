//! `GET /api/openapi.json`: the API described as an OpenAPI 3.1 document, written by hand.
//!
//! Every endpoint with its parameters, request body and answers; changes carry the bearer
//! scheme (`auth.rs`). The tests hold the document to the route table the router is built
//! from (`api::routes()`), both ways, and check that every documented path is one axum accepts
//! with the parameters it names.

use axum::Json;
use serde_json::{Value, json};

/// The states `GET /api/models?status=` filters on.
const STATUSES: [&str; 5] = [
    "not_installed",
    "downloading",
    "installed",
    "active",
    "error",
];

/// `GET /api/openapi.json`.
pub async fn document() -> Json<Value> {
    Json(spec())
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn id_param() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "description": "a model's id in models.yaml",
            "schema": { "type": "string" } })
}

fn object() -> Value {
    json!({ "type": "object" })
}

/// The answers every endpoint may give besides its own.
fn responses(mut own: Value, change: bool) -> Value {
    let Some(map) = own.as_object_mut() else {
        return own;
    };
    map.insert(
        "403".into(),
        error_response("the Host is not this machine or the Origin is another site"),
    );
    map.insert(
        "500".into(),
        error_response("the project could not be read or the change failed"),
    );
    if change {
        map.insert(
            "401".into(),
            error_response("no or a wrong `Authorization: Bearer` token"),
        );
        map.insert("413".into(), error_response("the body is over 1 MiB"));
        map.insert(
            "415".into(),
            error_response("a body or Content-Type that is not application/json"),
        );
    }
    own
}

/// A read: no token on loopback.
fn read(summary: &str, params: Value, own: Value) -> Value {
    json!({ "summary": summary, "parameters": params, "responses": responses(own, false) })
}

/// A change: the bearer token, JSON.
fn change(summary: &str, params: Value, body: Option<Value>, own: Value) -> Value {
    let mut op = json!({
        "summary": summary,
        "parameters": params,
        "security": [{ "bearer": [] }],
        "responses": responses(own, true),
    });
    if let Some(schema) = body {
        op["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": schema } }
        });
    }
    op
}

fn id_body() -> Value {
    json!({ "type": "object", "required": ["id"], "properties": { "id": { "type": "string" } } })
}

fn not_found() -> Value {
    error_response("no such model (the message names the closest id)")
}

/// The document.
pub fn spec() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "modelctl API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The models declared in models.yaml, their state in the store, and changes to them. Changes (POST, PUT, PATCH, DELETE) need `Authorization: Bearer <token>` with the token from `<store>/.modelctl/api-token` or MODELCTL_API_TOKEN, and a JSON body of at most 1 MiB; on a non-loopback address every request needs the token. Errors are `{\"error\": \"...\"}`."
        },
        "servers": [{ "url": "http://127.0.0.1:7420" }],
        "paths": {
            "/api/models": { "get": read(
                "the declared models and their state (`modelctl status --json`)",
                json!([
                    { "name": "type", "in": "query", "required": false, "schema": { "type": "string" },
                      "description": "only models of this type (llm, tts, ...)" },
                    { "name": "status", "in": "query", "required": false,
                      "schema": { "type": "string", "enum": STATUSES } }
                ]),
                json!({ "200": ok("the models", json!({ "type": "array", "items": { "$ref": "#/components/schemas/ModelRow" } })) }),
            ) },
            "/api/models/{id}": {
                "get": read(
                    "one model as `modelctl show ID --json` describes it",
                    json!([id_param()]),
                    json!({ "200": ok("the model", object()), "404": not_found() }),
                ),
                "delete": change(
                    "remove the model (and its `active` entry) from models.yaml",
                    json!([id_param()]),
                    None,
                    json!({ "200": ok("removed", object()), "404": not_found(), "409": error_response("another change is running") }),
                ),
            },
            "/api/models/download": { "post": change(
                "download (apply) one declared model in the background",
                json!([]),
                Some(id_body()),
                json!({
                    "202": ok("queued; progress and the end arrive on /api/events", json!({ "type": "object", "required": ["operation"],
                        "properties": { "operation": { "type": "string" }, "model": { "type": "string" },
                                        "state": { "type": "string" }, "href": { "type": "string" } } })),
                    "404": not_found(),
                    "409": ok("a download of this model is already queued or running: `error`, and `operation` (the one under way)",
                        json!({ "type": "object", "properties": { "error": { "type": "string" },
                                "operation": { "$ref": "#/components/schemas/Operation" } } })),
                }),
            ) },
            "/api/operations": { "get": read(
                "the background operations this server ran or runs (the last 256 finished ones kept)",
                json!([]),
                json!({ "200": ok("operations", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Operation" } })) }),
            ) },
            "/api/operations/{op}": { "get": read(
                "the state of a background operation",
                json!([{ "name": "op", "in": "path", "required": true, "schema": { "type": "string" } }]),
                json!({ "200": ok("the operation", json!({ "$ref": "#/components/schemas/Operation" })),
                        "404": error_response("no such operation") }),
            ) },
            "/api/models/activate": { "post": change(
                "make the model the active one of its type (edits models.yaml, reconciles the store)",
                json!([]),
                Some(id_body()),
                json!({ "200": ok("activated", object()), "404": not_found(), "422": error_response("the change is invalid") }),
            ) },
            "/api/models/deactivate/{id}": { "post": change(
                "remove the model's type from `active`",
                json!([id_param()]),
                None,
                json!({ "200": ok("deactivated", object()), "404": not_found() }),
            ) },
            "/api/models/storage/info": { "get": read(
                "the store's bytes per type and model, shared bytes, what could be reclaimed",
                json!([]),
                json!({ "200": ok("usage", object()) }),
            ) },
            "/api/models/add": { "post": change(
                "declare a new model in models.yaml",
                json!([]),
                Some(json!({
                    "type": "object",
                    "required": ["id", "type"],
                    "properties": {
                        "id": { "type": "string" },
                        "type": { "type": "string" },
                        "hf": { "type": "string", "description": "a HuggingFace repository (owner/name)" },
                        "url": { "type": "string", "format": "uri" },
                        "ollama": { "type": "string", "description": "an Ollama name:tag" },
                        "oci": { "type": "string", "description": "an OCI artifact, registry.example.com/ns/name:tag or …@sha256:<hex> (https only)" },
                        "description": { "type": "string" },
                        "revision": { "type": "string" },
                        "include": { "type": "array", "items": { "type": "string" } },
                        "sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
                        "activate": { "type": "boolean" }
                    },
                    "oneOf": [{ "required": ["hf"] }, { "required": ["url"] }, { "required": ["ollama"] }, { "required": ["oci"] }]
                })),
                json!({ "201": ok("declared; POST /api/models/download fetches it", object()),
                        "422": error_response("the entry is invalid, its id is already declared, or its source is refused (file://, a plain-http Ollama or OCI registry)") }),
            ) },
            "/api/models/active/{type}": { "get": read(
                "the active model of a type and its paths",
                json!([{ "name": "type", "in": "path", "required": true, "schema": { "type": "string" } }]),
                json!({
                    "200": ok("the active model", json!({ "type": "object", "properties": {
                        "type": { "type": "string" }, "id": { "type": "string" },
                        "path": { "type": "string" }, "stable_path": { "type": "string" } } })),
                    "404": error_response("no model is active for the type"),
                }),
            ) },
            "/api/models/{id}/config": { "put": change(
                "set the model's `config` (flat keys: strings, numbers, booleans; null unsets)",
                json!([id_param()]),
                Some(json!({ "type": "object", "additionalProperties": {
                    "type": ["string", "number", "boolean", "null"] } })),
                json!({ "200": ok("the new config", json!({ "type": "object", "properties": {
                    "id": { "type": "string" }, "config": object() } })),
                        "404": not_found(), "422": error_response("a value is not allowed") }),
            ) },
            "/api/models/{id}/switch": { "post": change(
                "activate the model (an Ollama model is loaded, the old one unloaded)",
                json!([id_param()]),
                None,
                json!({ "200": ok("switched", object()), "404": not_found() }),
            ) },
            "/api/models/{id}/reload": { "post": change(
                "reload the model in its runtime (Ollama)",
                json!([id_param()]),
                None,
                json!({ "200": ok("reloaded", object()), "404": not_found() }),
            ) },
            "/api/models/{id}/requirements": { "get": read(
                "what the model declares it needs (GPU memory, ...)",
                json!([id_param()]),
                json!({ "200": ok("the requirements", object()), "404": not_found() }),
            ) },
            "/api/models/{id}/compatibility": { "get": read(
                "whether this machine meets the model's requirements, and why not",
                json!([id_param()]),
                json!({ "200": ok("the verdict", object()), "404": not_found() }),
            ) },
            "/api/plan": { "get": read(
                "what `apply` would do (`modelctl plan --json`)",
                json!([]),
                json!({ "200": ok("the plan", object()) }),
            ) },
            "/api/events": { "get": {
                "summary": "a stream of server-sent events: plan, progress, swap, error, operation",
                "responses": responses(json!({ "200": {
                    "description": "an event stream; each event's `data` is JSON",
                    "content": { "text/event-stream": { "schema": {
                        "type": "string",
                        "description": "`event:` is one of plan, progress, swap, error, operation"
                    } } }
                } }), false),
            } },
            "/api/openapi.json": { "get": {
                "summary": "this document (public)",
                "security": [],
                "responses": { "200": ok("the OpenAPI document", object()) },
            } },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token in `<store>/.modelctl/api-token` (mode 0600, made by `modelctl serve`) or MODELCTL_API_TOKEN"
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "string", "description": "what went wrong and what to do" } }
                },
                "ModelRow": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "type": { "type": "string" },
                        "status": { "type": "string", "enum": STATUSES,
                                    "description": "the word services know" },
                        "state": { "type": "string",
                                   "enum": ["installed", "not_installed", "partial", "drifted", "unknown", "undeclared"],
                                   "description": "what `modelctl status` says of the store" },
                        "active": { "type": "boolean" }
                    }
                },
                "Operation": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string", "description": "`op-N`" },
                        "kind": { "type": "string", "enum": ["download"] },
                        "model": { "type": "string" },
                        "state": { "type": "string", "enum": ["queued", "running", "succeeded", "failed"] },
                        "message": { "type": "string", "description": "what happened, once it ended" },
                        "queued_at": { "type": "integer", "description": "seconds since the Unix epoch" },
                        "finished_at": { "type": "integer" }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    /// `(method, path shape)` for every route the router is built from.
    fn served() -> BTreeSet<(String, String)> {
        crate::api::routes()
            .iter()
            .map(|r| (r.method.as_str().to_ascii_lowercase(), shape(r.path)))
            .collect()
    }

    /// `(method, path shape)` for every operation in the document.
    fn documented() -> BTreeSet<(String, String)> {
        spec()["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().expect("a path item");
                item.keys()
                    .map(|m| (m.clone(), shape(path)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A path with its parameters' names left out: `/api/models/{}/config`.
    fn shape(path: &str) -> String {
        path.split('/')
            .map(|s| if s.starts_with('{') { "{}" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn every_route_is_documented_and_every_documented_operation_is_served() {
        let (served, documented) = (served(), documented());
        assert!(served.len() >= 19, "{served:?}");
        let undocumented: Vec<_> = served.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "served but not in the OpenAPI document: {undocumented:?}"
        );
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            unserved.is_empty(),
            "in the OpenAPI document but not served: {unserved:?}"
        );
    }

    #[test]
    fn every_documented_path_is_a_route_with_its_parameters() {
        let spec = spec();
        let mut router: axum::Router = axum::Router::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            assert!(path.starts_with("/api/"), "{path}");
            let segments: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in item.as_object().expect("a path item") {
                assert!(METHODS.contains(&method.as_str()), "{method} {path}");
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| p["name"].as_str().expect("a name"))
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(declared, segments, "{method} {path}: path parameters");
                if method != "get" && path != "/api/openapi.json" {
                    assert!(op["security"][0]["bearer"].is_array(), "{method} {path}");
                }
            }
            // axum panics on a path it cannot route (`:id`, a bad brace, a conflict).
            router = router.route(path, axum::routing::get(|| async {}));
        }
        drop(router);
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let spec = spec();
        assert_eq!(spec["openapi"], "3.1.0");
        assert_eq!(
            spec["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
