//! # chat-gateway
//!
//! A chat backend: a GraphQL API (queries, mutations, subscriptions) and a
//! legacy REST compatibility layer over one set of domain services, with
//! background jobs for message delivery.
//!
//! A tour of the modules, from the outside in:
//! - [`config`]: every setting, from flags and environment (the only reader of the environment).
//! - [`app`]: start-up (connect, migrate, seed, bind), shared state, serving and shutdown.
//! - [`http`]: the router and middleware; health and readiness probes; GraphQL over HTTP.
//! - [`graphql`]: the schema, independent of HTTP; resolvers only translate.
//! - [`rest`]: the legacy REST API of the old service, a thin adapter.
//! - [`accounts`] and [`cache`]: user writes with their side effects, the user-list cache.
//! - [`readmodel`]: the hot-room read model; [`versions`]: the counters that
//!   tell every cache, on every instance, when its copy is stale.
//! - [`sends`]: message writes (sends, edits, deletes, reactions), checked
//!   and rate-limited, for every adapter.
//! - [`typing`] and [`presence`]: who is typing where, who is online; live
//!   state carried by the event bus, never stored (but last-seen times).
//! - [`identity`]: who the viewer of a request is; [`ratelimit`]: how often they may act.
//! - [`service`]: who may read what, checked before every delivery
//!   ([`service::permissions`]), and the live sessions that end with their
//!   token or account ([`service::sessions`]).
//! - [`input`]: the rules every client string must pass, on every API.
//! - [`jobs`]: the outbox, the job queues (in-process, Faktory) and the workers.
//! - [`supervisor`]: background loops restarted (and reported) when they die.
//! - [`events`]: domain events and the bus that carries them across instances.
//! - [`domain`]: every business rule, once, called by all adapters.
//! - [`db`]: the connection pool, SQLite pragmas, migrations, statement counting.
//! - [`error`]: the one error enum and its client-facing codes.
//!
//! Two ways to run share one code path: embedded (SQLite, in-process queue and
//! cache) and scaled out (PostgreSQL, Faktory, Redis), chosen by configuration.

pub mod accounts;
pub mod app;
pub mod cache;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod identity;
pub mod input;
pub mod jobs;
pub mod metrics;
pub mod presence;
pub mod ratelimit;
pub mod readmodel;
pub mod rest;
pub mod sends;
pub mod service;
pub mod shutdown;
pub mod supervisor;
pub mod telemetry;
pub mod typing;
pub mod versions;
