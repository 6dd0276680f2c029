//! Creating droplets so that none is ever created twice: one `POST /v2/droplets` per call,
//! re-sent only after a 429 (which proves nothing was created). Any ambiguous outcome — a
//! 5xx or 52x, a timeout or reset, a redirect, an unexpected 2xx, a body that cannot be
//! read or decoded or that does not match the request — leaves the names *unknown*: the
//! POST is never re-sent for them and nothing in the answer is adopted. The caller
//! reconciles unknown names by name and tag ([`Client::find_by_names`]) once lists have
//! caught up, or reports them.

use super::droplet::CreateResponse;
use super::{ActionLookup, Client, Droplet, Error, MAX_NAMES_PER_CREATE};
use reqwest::StatusCode;
use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

/// A droplet just accepted by the API, with the create actions of its request.
#[derive(Debug, Clone)]
pub struct Created {
    /// The droplet as the 202 described it (status `new`, no addresses yet).
    pub droplet: Droplet,
    /// The action IDs the answer's `links.actions` listed for the whole request: one for a
    /// single create; for a multi-create one per droplet, in no documented order. Which is
    /// this droplet's is told by the action's `resource_id`
    /// ([`Client::find_create_action`]).
    pub actions: Vec<u64>,
}

/// What one [`Client::create`] call achieved, name by name. Every requested name is in
/// exactly one of `created` (by its droplet's name), `not_created` and `unknown`.
#[derive(Debug, Default)]
pub struct CreateOutcome {
    /// Droplets the API accepted, from an answer that matched the request.
    pub created: Vec<Created>,
    /// Names the API refused in a way that proves nothing was created (a 4xx such as 422,
    /// a 429 not waited out, a connection never made).
    pub not_created: Vec<String>,
    /// Names whose request may or may not have been carried out. They were not sent again;
    /// droplets made for them, if any, carry the tag and can be found by name.
    pub unknown: Vec<String>,
    /// Why `not_created` or `unknown` is not empty.
    pub error: Option<Error>,
}

impl CreateOutcome {
    /// The droplets created, and the failure (naming the names it concerns) if any name was
    /// not created.
    pub fn split(self) -> (Vec<Created>, Option<CreateFailure>) {
        let failure = self.error.map(|error| CreateFailure {
            not_created: self.not_created,
            unknown: self.unknown,
            error,
        });
        (self.created, failure)
    }

    fn failed(names: &[String], error: Error) -> CreateOutcome {
        let (not_created, unknown) = if error.is_ambiguous() {
            (Vec::new(), names.to_vec())
        } else {
            (names.to_vec(), Vec::new())
        };
        CreateOutcome {
            created: Vec::new(),
            not_created,
            unknown,
            error: Some(error),
        }
    }
}

/// A create that did not create every name (see [`CreateOutcome`]).
#[derive(Debug)]
pub struct CreateFailure {
    /// Names certainly not created.
    pub not_created: Vec<String>,
    /// Names whose outcome is unknown.
    pub unknown: Vec<String>,
    /// What the API (or the connection) did.
    pub error: Error,
}

impl fmt::Display for CreateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if !self.not_created.is_empty() {
            write!(f, "; not created: {}", self.not_created.join(", "))?;
        }
        if !self.unknown.is_empty() {
            write!(
                f,
                "; whether {} {} created is unknown, so the request was not sent again: if {}, `doproxy print` shows {} as orphans (tagged droplets missing from the inventory)",
                self.unknown.join(", "),
                if self.unknown.len() == 1 { "was" } else { "were" },
                if self.unknown.len() == 1 { "it was" } else { "they were" },
                if self.unknown.len() == 1 { "it" } else { "them" },
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for CreateFailure {}

/// The create answer's droplets, when they are exactly the droplets `requested` asked for:
/// one body shape, as many droplets as names, each valid ([`Droplet::check`]) and named
/// after a requested name (as the API compares names, ignoring ASCII case), no name or ID
/// twice, no action ID of 0 or twice. Anything else is a complaint naming what is wrong,
/// and the answer must not be adopted.
pub(crate) fn match_answer(
    requested: &[String],
    answer: CreateResponse,
) -> Result<Vec<Created>, String> {
    let droplets = match (answer.droplet, answer.droplets) {
        (Some(d), None) => vec![d],
        (None, Some(ds)) => ds,
        (Some(_), Some(_)) => return Err("both `droplet` and `droplets`".into()),
        (None, None) => return Err("neither `droplet` nor `droplets`".into()),
    };
    if droplets.len() != requested.len() {
        return Err(format!(
            "{} droplet(s) in the answer for {} name(s) requested",
            droplets.len(),
            requested.len()
        ));
    }
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    for d in &droplets {
        d.check()?;
        if !requested.iter().any(|n| n.eq_ignore_ascii_case(&d.name)) {
            return Err(format!(
                "droplet {}: `name` {:?} is not one of the names requested",
                d.id, d.name
            ));
        }
        if !names.insert(d.name.to_ascii_lowercase()) {
            return Err(format!("`name` {:?} appears twice", d.name));
        }
        if !ids.insert(d.id) {
            return Err(format!("droplet `id` {} appears twice", d.id));
        }
    }
    let mut actions = Vec::new();
    for link in &answer.links.actions {
        if link.id == 0 {
            return Err("`links.actions[].id` is 0".into());
        }
        if actions.contains(&link.id) {
            return Err(format!("action `id` {} appears twice", link.id));
        }
        actions.push(link.id);
    }
    Ok(droplets
        .into_iter()
        .map(|droplet| Created {
            droplet,
            actions: actions.clone(),
        })
        .collect())
}

impl Client {
    /// One `POST /v2/droplets` for up to ten names. Not retried: see [`Client::create`].
    async fn post_create(
        &self,
        names: &[String],
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<Created>, Error> {
        let mut body = fields.clone();
        if let [name] = names {
            body.insert("name".into(), name.clone().into());
        } else {
            body.insert("names".into(), names.to_vec().into());
        }
        let path = "/v2/droplets";
        let a = self
            .send_once("POST", path, Some(&serde_json::Value::Object(body)))
            .await?;
        let answer: CreateResponse = self.decode("POST", path, &a, StatusCode::ACCEPTED)?;
        let created = match_answer(names, answer);
        self.valid("POST", path, &a, created)
    }

    /// Creates droplets named `names` (unique names, one to ten) with one POST, never
    /// creating one twice. A 429 is waited out (under the retry policy) and the POST sent
    /// again; any other failure ends the call: a 4xx puts every name in
    /// [`CreateOutcome::not_created`], an ambiguous one ([`Error::is_ambiguous`]) in
    /// [`CreateOutcome::unknown`], and the POST is not re-sent.
    pub async fn create(
        &self,
        names: &[String],
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> CreateOutcome {
        assert!(
            !names.is_empty() && names.len() <= MAX_NAMES_PER_CREATE,
            "one to {MAX_NAMES_PER_CREATE} names per create"
        );
        let mut waited = Duration::ZERO;
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let err = match self.post_create(names, fields).await {
                Ok(created) => {
                    return CreateOutcome {
                        created,
                        ..CreateOutcome::default()
                    }
                }
                Err(e) => e,
            };
            if err.status() != Some(429) {
                log::debug!("POST /v2/droplets for {}: {err}", names.join(", "));
                return CreateOutcome::failed(names, err);
            }
            // Rate limited: nothing was created, so sending again is safe.
            let delay = self.backoff.delay(attempt, err.retry_after());
            if !self.backoff.allows(attempt, waited, delay) {
                return CreateOutcome::failed(names, err);
            }
            self.retrying("POST", "/v2/droplets", attempt, delay, &err);
            waited = waited.saturating_add(delay);
            tokio::time::sleep(delay).await;
        }
    }

    /// Droplets carrying `tag` whose name is one of `names` (ignoring ASCII case): how a
    /// caller reconciles the names of a create whose outcome is unknown. Lists lag behind
    /// creates by seconds, so a name not found right after the create may still appear.
    pub async fn find_by_names(&self, names: &[String], tag: &str) -> Result<Vec<Droplet>, Error> {
        Ok(self
            .list_by_tag(tag)
            .await?
            .into_iter()
            .filter(|d| names.iter().any(|n| d.name.eq_ignore_ascii_case(n)))
            .collect())
    }

    /// The create action of droplet `droplet_id` among `candidates` (its
    /// [`Created::actions`]): the one whose `resource_id` is the droplet, asked for one by
    /// one; with a single candidate, one without a `resource_id` counts too. Stops at the
    /// first 403 ([`ActionLookup::Forbidden`]); [`ActionLookup::NotFound`] when no candidate
    /// matches.
    pub async fn find_create_action(
        &self,
        droplet_id: u64,
        candidates: &[u64],
    ) -> Result<ActionLookup, Error> {
        for &id in candidates {
            match self.get_action(id).await? {
                ActionLookup::Found(a) if a.resource_id == Some(droplet_id) => {
                    return Ok(ActionLookup::Found(a))
                }
                ActionLookup::Found(a) if a.resource_id.is_none() && candidates.len() == 1 => {
                    return Ok(ActionLookup::Found(a))
                }
                ActionLookup::Forbidden => return Ok(ActionLookup::Forbidden),
                ActionLookup::Found(_) | ActionLookup::NotFound => {}
            }
        }
        Ok(ActionLookup::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn answer(json: &str) -> CreateResponse {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn d(id: u64, name: &str) -> String {
        format!(r#"{{"id":{id},"name":"{name}","status":"new"}}"#)
    }

    #[test]
    fn a_matching_answer_is_adopted() {
        let one = answer(&format!(
            r#"{{"droplet":{},"links":{{"actions":[{{"id":7}}]}}}}"#,
            d(1, "web-a")
        ));
        let c = match_answer(&names(&["web-a"]), one).unwrap();
        assert_eq!((c[0].droplet.id, c[0].actions.clone()), (1, vec![7]));
        let two = answer(&format!(
            r#"{{"droplets":[{},{}],"links":{{"actions":[{{"id":8}},{{"id":7}}]}}}}"#,
            d(2, "web-b"),
            d(1, "WEB-A")
        ));
        let c = match_answer(&names(&["web-a", "web-b"]), two).unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.actions == vec![8, 7]));
        // No links at all: adopted, without actions.
        let c = match_answer(
            &names(&["web-a"]),
            answer(&format!(r#"{{"droplet":{},"links":null}}"#, d(1, "web-a"))),
        )
        .unwrap();
        assert!(c[0].actions.is_empty());
    }

    #[test]
    fn a_mismatched_answer_is_refused() {
        let req = names(&["web-a", "web-b"]);
        let cases: Vec<(String, &str)> = vec![
            (r#"{}"#.into(), "neither"),
            (r#"{"droplet":null,"droplets":null}"#.into(), "neither"),
            (
                format!(
                    r#"{{"droplet":{},"droplets":[{}]}}"#,
                    d(1, "web-a"),
                    d(2, "web-b")
                ),
                "both",
            ),
            (
                format!(r#"{{"droplets":[{}]}}"#, d(1, "web-a")),
                "1 droplet(s)",
            ),
            (
                format!(
                    r#"{{"droplets":[{},{},{}]}}"#,
                    d(1, "web-a"),
                    d(2, "web-b"),
                    d(3, "web-c")
                ),
                "3 droplet(s)",
            ),
            (
                format!(r#"{{"droplets":[{},{}]}}"#, d(1, "web-a"), d(2, "other")),
                "not one of the names",
            ),
            (
                format!(r#"{{"droplets":[{},{}]}}"#, d(1, "web-a"), d(2, "web-a")),
                "appears twice",
            ),
            (
                format!(r#"{{"droplets":[{},{}]}}"#, d(1, "web-a"), d(1, "web-b")),
                "`id` 1 appears twice",
            ),
            (
                format!(r#"{{"droplets":[{},{}]}}"#, d(0, "web-a"), d(2, "web-b")),
                "`id` is 0",
            ),
            (
                format!(
                    r#"{{"droplets":[{},{{"id":2,"name":null,"status":"new"}}]}}"#,
                    d(1, "web-a")
                ),
                "`name`",
            ),
            (
                format!(
                    r#"{{"droplets":[{},{}],"links":{{"actions":[{{"id":0}}]}}}}"#,
                    d(1, "web-a"),
                    d(2, "web-b")
                ),
                "`links.actions[].id` is 0",
            ),
            (
                format!(
                    r#"{{"droplets":[{},{}],"links":{{"actions":[{{"id":5}},{{"id":5}}]}}}}"#,
                    d(1, "web-a"),
                    d(2, "web-b")
                ),
                "action `id` 5 appears twice",
            ),
        ];
        for (json, want) in cases {
            let e = match_answer(&req, answer(&json)).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
        }
        // A single create answered with the shape of another request.
        let e = match_answer(
            &names(&["web-a"]),
            answer(&format!(r#"{{"droplet":{}}}"#, d(1, "web-z"))),
        )
        .unwrap_err();
        assert!(e.contains("not one of the names"), "{e}");
    }

    #[test]
    fn failure_messages_name_the_names() {
        let err = |ambiguous| Error::Transport {
            method: "POST",
            path: "/v2/droplets".into(),
            detail: "connection reset".into(),
            ambiguous,
        };
        let (created, f) = CreateOutcome::failed(&names(&["web-a", "web-b"]), err(true)).split();
        assert!(created.is_empty());
        let f = f.unwrap();
        assert_eq!(f.unknown, names(&["web-a", "web-b"]));
        let text = f.to_string();
        assert!(
            text.contains("web-a, web-b were created is unknown"),
            "{text}"
        );
        assert!(
            text.contains("`doproxy print` shows them as orphans"),
            "{text}"
        );
        let f = CreateOutcome::failed(&names(&["web-a"]), err(false))
            .split()
            .1
            .unwrap();
        assert!(f.unknown.is_empty() && f.not_created == names(&["web-a"]));
        assert!(f.to_string().contains("not created: web-a"));
        let (created, f) = CreateOutcome::default().split();
        assert!(created.is_empty() && f.is_none());
    }
}
