//! Database entities of the chat service, one module per table.
//!
//! These are plain sea-orm models: they describe rows and relations and carry
//! no business rules. The rules (who may join a room, what a valid username
//! is, ...) live in the gateway's `domain` module.

pub mod auth_token;
pub mod cache_version;
pub mod membership;
pub mod mention;
pub mod message;
pub mod message_seen;
pub mod profile;
pub mod reaction;
pub mod room;
pub mod room_event;
pub mod task;
pub mod user;
pub mod user_presence;

pub mod prelude {
    pub use super::auth_token::Entity as AuthToken;
    pub use super::cache_version::Entity as CacheVersion;
    pub use super::membership::Entity as Membership;
    pub use super::mention::Entity as Mention;
    pub use super::message::Entity as Message;
    pub use super::message_seen::Entity as MessageSeen;
    pub use super::profile::Entity as Profile;
    pub use super::reaction::Entity as Reaction;
    pub use super::room::Entity as Room;
    pub use super::room_event::Entity as RoomEvent;
    pub use super::task::Entity as Task;
    pub use super::user::Entity as User;
    pub use super::user_presence::Entity as UserPresence;
}
