//! Integration tests: the real application over HTTP, on SQLite always and on
//! PostgreSQL (+ Redis) when `TEST_DATABASE_URL` (`TEST_REDIS_URL`) is set.

mod helpers;

mod cli;
mod http;
mod migrations;
mod users;
