//! Sending messages, for every adapter: the text is checked and the rate
//! limits of the sender and of their address are taken before the send's
//! task is written, so a send that can never be stored gets no task, and a
//! flood is refused with `RATE_LIMITED` before it reaches the outbox.

use std::{net::IpAddr, sync::Arc};

use entity::task;

use crate::{
    domain::messages,
    error::AppResult,
    jobs::{Job, Jobs},
    ratelimit::Throttle,
};

#[derive(Clone)]
pub struct Sends {
    jobs: Jobs,
    throttle: Arc<Throttle>,
}

impl Sends {
    pub fn new(jobs: Jobs, throttle: Arc<Throttle>) -> Self {
        Sends { jobs, throttle }
    }

    async fn submit(&self, from: i64, job: Job, client: Option<IpAddr>) -> AppResult<task::Model> {
        self.throttle.send(from, client).await?;
        self.jobs.submit(job).await
    }

    /// A direct message from `from` to `to`; answers with its task.
    pub async fn direct(
        &self,
        from: i64,
        to: i64,
        text: String,
        client: Option<IpAddr>,
    ) -> AppResult<task::Model> {
        messages::validate_text(&text)?;
        self.submit(from, Job::SendDirectMessage { from, to, text }, client)
            .await
    }

    /// A message from `from` to a room; answers with its task (which fails
    /// if `from` is not a member when it runs).
    pub async fn group(
        &self,
        from: i64,
        room_id: i64,
        text: String,
        client: Option<IpAddr>,
    ) -> AppResult<task::Model> {
        messages::validate_text(&text)?;
        self.submit(
            from,
            Job::SendGroupMessage {
                from,
                room_id,
                text,
            },
            client,
        )
        .await
    }
}
