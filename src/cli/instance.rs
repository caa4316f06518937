//! Which running instance an operator command talks to, as whom, and about which domain.
//!
//! Each value comes from the first place that has it: the flag, its environment variable, then
//! the instance's config file (`--config` or `XMPP_BROADCAST_CONFIG`), which gives
//! `http://<admin.listen>` (`https://` when the listener has a certificate), the global admin's
//! credentials and, when it serves one domain only, the domain. An `https://` instance's
//! certificate must come from an authority the system trusts, or from `--ca-file`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use crate::admin::client::{AdminClient, TrustedRoots};
use crate::config::Config;

use super::exit::CommandError;

/// The path of the GraphQL API on the admin listener.
const API_PATH: &str = "/api/graphql";

/// Where the instance is and how to log in; flattened into every operator command.
#[derive(Debug, Clone, clap::Args)]
pub struct InstanceArgs {
    /// Base URL of the instance's admin listener, e.g. http://127.0.0.1:5551 or
    /// https://broadcast.example.com:5551
    #[arg(long, env = "XMPP_BROADCAST_URL", value_name = "URL")]
    url: Option<String>,
    /// For an https:// URL, trust only the certificate authorities of this PEM file (a private
    /// CA, or the server's self-signed certificate) instead of the system's
    #[arg(long, env = "XMPP_BROADCAST_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Admin API user: the global admin, or admin@<domain> for one domain
    #[arg(long, env = "XMPP_BROADCAST_USER")]
    user: Option<String>,
    /// Its password (the environment variable keeps it out of `ps`)
    #[arg(long, env = "XMPP_BROADCAST_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// The instance's config file, for whatever the flags above leave out: the URL
    /// (http://<admin.listen>), [admin] username and password, and the domain if it serves one
    #[arg(long, short, env = "XMPP_BROADCAST_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON for scripts instead of text: the objects as the API returns them
    #[arg(long)]
    pub json: bool,
}

/// The domain a command acts on; flattened into the commands that take `--domain`.
#[derive(Debug, Clone, clap::Args)]
pub struct DomainArg {
    /// The XMPP domain whose jobs these are (default: the config file's domain, if it has only
    /// one)
    #[arg(long, short, env = "XMPP_BROADCAST_DOMAIN")]
    pub domain: Option<String>,
}

/// A resolved instance: the client, and the domains its config file serves (if one was read).
struct Instance {
    client: AdminClient,
    config_domains: Vec<String>,
}

/// What a command acts on: the instance's client and the domain.
pub struct Target {
    pub client: AdminClient,
    pub domain: String,
}

impl InstanceArgs {
    /// The client and the domain (`given`, else the config file's only domain).
    pub fn target(&self, given: Option<&str>) -> Result<Target, CommandError> {
        let instance = self.resolve()?;
        let domain = instance.domain(given)?;
        Ok(Target {
            client: instance.client,
            domain,
        })
    }

    /// Resolves flags, environment and config file into a client; exit 2 if no URL is known.
    fn resolve(&self) -> Result<Instance, CommandError> {
        let config = match &self.config {
            Some(path) => {
                Some(Config::load(path).map_err(|err| CommandError::usage(format!("{err:#}")))?)
            }
            None => None,
        };
        let url = match (&self.url, &config) {
            (Some(url), _) => url.clone(),
            (None, Some(config)) => {
                let scheme = if config.admin.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", connectable(config.admin.listen))
            }
            (None, None) => {
                return Err(CommandError::usage(
                    "which instance? give --url (or XMPP_BROADCAST_URL), or the instance's \
                     config file with --config (or XMPP_BROADCAST_CONFIG)",
                ));
            }
        };
        let user = self
            .user
            .clone()
            .or_else(|| config.as_ref().map(|c| c.admin.username.clone()));
        let password = self.password.clone().or_else(|| {
            config
                .as_ref()
                .and_then(|c| c.admin.password.plain().map(str::to_owned))
        });
        let credentials = user.map(|user| (user, password.unwrap_or_default()));
        let roots = match &self.ca_file {
            Some(path) => TrustedRoots::File(path.clone()),
            None => TrustedRoots::System,
        };
        let client =
            AdminClient::new(endpoint(&url)?, credentials, &roots).map_err(CommandError::from)?;
        Ok(Instance {
            client,
            config_domains: config.map(|c| c.domains).unwrap_or_default(),
        })
    }
}

impl Instance {
    /// The domain to act on: `given`, else the config file's only domain; exit 2 otherwise.
    fn domain(&self, given: Option<&str>) -> Result<String, CommandError> {
        if let Some(domain) = given {
            return Ok(domain.to_owned());
        }
        match self.config_domains.as_slice() {
            [domain] => Ok(domain.clone()),
            [] => Err(CommandError::usage(
                "which domain? give --domain (or XMPP_BROADCAST_DOMAIN)",
            )),
            several => Err(CommandError::usage(format!(
                "which domain? the config file serves {}: give --domain",
                several.join(", ")
            ))),
        }
    }
}

/// The GraphQL endpoint of a base URL: `http://` is added when no scheme is given, and
/// `/api/graphql` when no path is. Exit 2 for schemes other than `http` and `https`.
fn endpoint(url: &str) -> Result<String, CommandError> {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        None => ("http", url),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => ("http", rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => ("https", rest),
        Some((scheme, _)) => {
            return Err(CommandError::usage(format!(
                "{url}: {scheme} is not supported; give http:// or https://<admin.listen>"
            )));
        }
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(CommandError::usage(format!("{url}: no host in the URL")));
    }
    if rest.contains('/') {
        Ok(format!("{scheme}://{rest}"))
    } else {
        Ok(format!("{scheme}://{rest}{API_PATH}"))
    }
}

/// The address to connect to for a listen address: a wildcard (`0.0.0.0`, `[::]`) is reached
/// on loopback.
fn connectable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_completes_a_base_url() {
        let api = "http://127.0.0.1:5551/api/graphql";
        assert_eq!(endpoint("http://127.0.0.1:5551").unwrap(), api);
        assert_eq!(endpoint("http://127.0.0.1:5551/").unwrap(), api);
        assert_eq!(endpoint("127.0.0.1:5551").unwrap(), api);
        assert_eq!(endpoint(api).unwrap(), api);
        assert_eq!(
            endpoint("HTTP://[::1]:80/prefix/api/graphql").unwrap(),
            "http://[::1]:80/prefix/api/graphql"
        );
        assert_eq!(
            endpoint("https://broadcast.example.com:5551").unwrap(),
            "https://broadcast.example.com:5551/api/graphql"
        );
        assert_eq!(
            endpoint("HTTPS://broadcast.example.com/x/api/graphql/").unwrap(),
            "https://broadcast.example.com/x/api/graphql"
        );
    }

    #[test]
    fn endpoint_refuses_other_schemes() {
        for url in ["ftp://example.com", "http://", "https://"] {
            let err = endpoint(url).unwrap_err();
            assert_eq!(err.exit, super::super::exit::Exit::InvalidInput, "{url}");
        }
    }

    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        let wildcard: SocketAddr = "0.0.0.0:5551".parse().unwrap();
        assert_eq!(connectable(wildcard).to_string(), "127.0.0.1:5551");
        let wildcard6: SocketAddr = "[::]:5551".parse().unwrap();
        assert_eq!(connectable(wildcard6).to_string(), "[::1]:5551");
        let own: SocketAddr = "10.0.0.1:5551".parse().unwrap();
        assert_eq!(connectable(own), own);
    }
}
