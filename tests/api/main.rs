//! Integration tests: the real application over HTTP, on SQLite always and on
//! PostgreSQL (+ Redis) when `TEST_DATABASE_URL` (`TEST_REDIS_URL`) is set.

mod helpers;

mod abuse;
mod access;
mod auth;
mod chat_features;
mod cli;
mod deploy;
mod faktory;
mod graphql_http;
mod hostile;
mod http;
mod jobs;
mod legacy_off;
mod legacy_rest;
mod limits;
mod messages;
mod migrations;
mod openapi;
mod readmodel;
mod redis_server;
mod room_events;
mod rooms;
mod sdl;
mod search;
mod subscriptions;
mod tasks;
mod transport;
mod users;
mod ws;
mod ws_handshake;
