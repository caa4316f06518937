//! What this instance serves — its domains and the users database it reads — and so which
//! jobs it may run (design invariant 7a).
//!
//! A job is run, resumed or taken over only by an instance that serves its domain and reads
//! the users database the job was created against: another instance would send through a
//! component connection that does not serve the domain, or page a users database that does
//! not hold the job's recipients and finish the job for recipients it never reached. Jobs
//! stored before the users database was recorded are judged by their domain alone.
//!
//! A running job that no instance may run waits, RUNNING, with its lease expired: the
//! admin API says why ([`Scope::waiting_reason`]), the manager counts it and warns, and `serve`
//! and `check-config` report the jobs that conflict with this instance's view
//! ([`Scope::conflicts`]).

use std::collections::BTreeSet;
use std::fmt;

use crate::job::{ExecutionState, Hold, Job, JobId, UsersDatabase};
use crate::store::RunningJob;

/// The domains this instance serves and the users database it reads.
#[derive(Debug, Clone)]
pub struct Scope {
    domains: BTreeSet<String>,
    users_database: UsersDatabase,
}

/// Why this instance may not run a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotServed {
    /// The job's domain is not one of this instance's.
    Domain { domain: String },
    /// This instance serves the domain, but reads another users database than the job was
    /// created against.
    UsersDatabase {
        domain: String,
        job: UsersDatabase,
        ours: UsersDatabase,
    },
}

impl fmt::Display for NotServed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotServed::Domain { domain } => write!(f, "this instance does not serve {domain}"),
            NotServed::UsersDatabase { domain, job, ours } => write!(
                f,
                "this instance serves {domain} but reads the users database {ours}, and the \
                 job was created against {job}"
            ),
        }
    }
}

/// A running job that conflicts with this instance's view: reported by `serve` at start and
/// by `check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub job_id: JobId,
    pub kind: ConflictKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictKind {
    /// This instance owns the job but may not run it (its domain was removed from the config,
    /// or its users database changed): it is not resumed here and is handed over.
    OwnJobNotServed(NotServed),
    /// The job is of a domain this instance serves, but was created against another users
    /// database: this instance never runs it.
    OtherUsersDatabase(NotServed),
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.job_id;
        match &self.kind {
            ConflictKind::OwnJobNotServed(why) => write!(
                f,
                "running job {id} is this instance's, but {why}: it is not resumed here; an \
                 instance that serves it takes it over, or the global admin aborts it \
                 (abortBroadcast, `xmpp-broadcast abort`)"
            ),
            ConflictKind::OtherUsersDatabase(why) => write!(
                f,
                "running job {id}: {why}, so this instance never runs it; instances that share \
                 a job database must read the same users database for a domain they both serve \
                 (name it with users.database_id where they reach it under different names)"
            ),
        }
    }
}

impl Scope {
    pub fn new(domains: &[String], users_database: UsersDatabase) -> Self {
        Scope {
            domains: domains.iter().cloned().collect(),
            users_database,
        }
    }

    /// Whether `domain` is configured here.
    pub fn serves_domain(&self, domain: &str) -> bool {
        self.domains.contains(domain)
    }

    /// The domains configured here, in order.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.iter().map(String::as_str)
    }

    /// The users database this instance reads, recorded with the jobs it creates.
    pub fn users_database(&self) -> &UsersDatabase {
        &self.users_database
    }

    /// Whether this instance may run a job of `domain` created against `users_database`
    /// (`None`: a job stored before it was recorded, judged by its domain alone).
    pub fn may_run(
        &self,
        domain: &str,
        users_database: Option<&UsersDatabase>,
    ) -> Result<(), NotServed> {
        if !self.serves_domain(domain) {
            return Err(NotServed::Domain {
                domain: domain.to_owned(),
            });
        }
        match users_database {
            Some(job) if *job != self.users_database => Err(NotServed::UsersDatabase {
                domain: domain.to_owned(),
                job: job.clone(),
                ours: self.users_database.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The running jobs that conflict with this instance's view, `node` being its name.
    pub fn conflicts(&self, node: &str, jobs: &[RunningJob]) -> Vec<Conflict> {
        jobs.iter()
            .filter_map(|job| {
                let why = self
                    .may_run(&job.domain, job.users_database.as_ref())
                    .err()?;
                let kind = if job.owner.as_deref() == Some(node) {
                    ConflictKind::OwnJobNotServed(why)
                } else if matches!(why, NotServed::UsersDatabase { .. }) {
                    ConflictKind::OtherUsersDatabase(why)
                } else {
                    return None;
                };
                Some(Conflict {
                    job_id: job.id,
                    kind,
                })
            })
            .collect()
    }

    /// Why no instance is running `job` now, if it is running and nobody holds its lease, or
    /// if its start time has come and it has not started. A paused job, and a scheduled one
    /// before its time, wait for nothing but an administrator or the clock.
    pub fn waiting_reason(&self, job: &Job) -> Option<String> {
        match job.hold {
            Some(Hold::Paused) => return None,
            Some(Hold::Scheduled) if !job.due => return None,
            Some(Hold::Scheduled) => {
                let here = match self.may_run(&job.domain, job.users_database.as_ref()) {
                    Ok(()) => "this instance may start it".to_owned(),
                    Err(why) => why.to_string(),
                };
                return Some(format!(
                    "Its start time has come: it starts as soon as no other job of {domain} \
                     runs, on an instance that serves {domain} (each checks every second); {here}",
                    domain = job.domain
                ));
            }
            None => {}
        }
        if job.state != ExecutionState::Running || !job.lease_expired {
            return None;
        }
        let since = job
            .lease_expires_at
            .map(|at| format!(" since {}", at.format("%Y-%m-%dT%H:%M:%SZ")))
            .unwrap_or_default();
        let created_against = job
            .users_database
            .as_ref()
            .map(|db| format!(" with the users database it was created against ({db})"))
            .unwrap_or_default();
        let here = match self.may_run(&job.domain, job.users_database.as_ref()) {
            Ok(()) => {
                "this instance may run it and takes it over at its next lease renewal".to_owned()
            }
            Err(why) => why.to_string(),
        };
        Some(format!(
            "No instance has held the job's lease{since}: it waits for an instance that serves \
             {domain}{created_against}; {here}",
            domain = job.domain
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str) -> UsersDatabase {
        UsersDatabase::new(name)
    }

    fn scope() -> Scope {
        Scope::new(&["example.com".to_owned()], db("prosody@a"))
    }

    fn running(id: JobId, domain: &str, users: Option<&str>, owner: &str) -> RunningJob {
        RunningJob {
            id,
            domain: domain.into(),
            users_database: users.map(db),
            owner: Some(owner.into()),
        }
    }

    #[test]
    fn a_job_runs_only_where_its_domain_and_users_database_are_served() {
        let scope = scope();
        assert_eq!(scope.may_run("example.com", Some(&db("prosody@a"))), Ok(()));
        assert_eq!(scope.may_run("example.com", None), Ok(()), "an older job");
        assert!(matches!(
            scope.may_run("example.org", Some(&db("prosody@a"))),
            Err(NotServed::Domain { .. })
        ));
        let other = scope.may_run("example.com", Some(&db("prosody@b")));
        let Err(why) = other else { panic!("{other:?}") };
        let text = why.to_string();
        assert!(
            text.contains("prosody@a") && text.contains("prosody@b"),
            "{text}"
        );
    }

    #[test]
    fn conflicts_name_own_jobs_not_served_and_other_users_databases() {
        let jobs = [
            running(1, "example.com", Some("prosody@a"), "node1"),
            running(2, "example.org", Some("prosody@a"), "node1"),
            running(3, "example.org", Some("prosody@a"), "node2"),
            running(4, "example.com", Some("prosody@b"), "node2"),
            running(5, "example.com", Some("prosody@b"), "node1"),
        ];
        let conflicts = scope().conflicts("node1", &jobs);
        let kinds: Vec<_> = conflicts
            .iter()
            .map(|conflict| {
                let own = matches!(conflict.kind, ConflictKind::OwnJobNotServed(_));
                (conflict.job_id, own)
            })
            .collect();
        assert_eq!(kinds, vec![(2, true), (4, false), (5, true)]);
        let text = conflicts[0].to_string();
        assert!(
            text.contains("job 2") && text.contains("does not serve example.org"),
            "{text}"
        );
        assert!(conflicts[1].to_string().contains("users.database_id"));
    }
}
