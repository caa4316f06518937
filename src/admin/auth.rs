//! HTTP Basic authentication of the global admin.
//!
//! Credentials are compared as SHA-1 digests, so the comparison takes the same time whatever
//! the supplied password shares with the real one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sha1::{Digest, Sha1};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// The admin's user name and a digest of `user:password`.
#[derive(Clone)]
pub struct Credentials {
    digest: [u8; 20],
}

/// Why a request was refused before it ran.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization` header: MongooseIM's `no_permissions`.
    Missing { operation: String },
    /// A header with the wrong credentials or in a wrong form: `wrong_credentials`.
    Wrong,
}

impl Credentials {
    pub fn new(username: &str, password: &str) -> Self {
        Credentials {
            digest: digest(format!("{username}:{password}").as_bytes()),
        }
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&str>, operation: &str) -> Result<(), Denied> {
        let Some(header) = header else {
            return Err(Denied::Missing {
                operation: operation.to_owned(),
            });
        };
        let supplied = header
            .strip_prefix("Basic ")
            .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
            .ok_or(Denied::Wrong)?;
        if digest(&supplied) == self.digest {
            Ok(())
        } else {
            Err(Denied::Wrong)
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

impl Reply for Denied {
    fn into_response(self) -> Response {
        let error = match self {
            Denied::Missing { operation } => json!({
                "message": format!("Cannot execute query {operation} without permissions"),
                "path": [operation],
                "extensions": { "code": "no_permissions" },
            }),
            Denied::Wrong => json!({
                "message": "The provided credentials are wrong",
                "extensions": { "code": "wrong_credentials" },
            }),
        };
        let reply = warp::reply::json(&json!({ "errors": [error] }));
        let reply = warp::reply::with_status(reply, StatusCode::UNAUTHORIZED);
        warp::reply::with_header(reply, "www-authenticate", "Basic realm=\"xmpp-broadcast\"")
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_password: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_password))
    }

    #[test]
    fn checks_basic_credentials() {
        let credentials = Credentials::new("admin", "secret");
        assert_eq!(
            credentials.check(Some(&basic("admin:secret")), "Op"),
            Ok(())
        );
        assert_eq!(
            credentials.check(Some(&basic("admin:wrong")), "Op"),
            Err(Denied::Wrong)
        );
        assert_eq!(
            credentials.check(Some("Bearer x"), "Op"),
            Err(Denied::Wrong)
        );
        assert_eq!(
            credentials.check(None, "Op"),
            Err(Denied::Missing {
                operation: "Op".into()
            })
        );
    }
}
