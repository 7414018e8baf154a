//! Edits, deletes, replies, reactions, mentions, presence, search and the
//! room event log.
//!
//! Every room numbers what happens in it (`rooms.event_seq`): a stored
//! message takes the next number (`messages.seq`), and so does every other
//! stored room event (`room_events`: edits, deletes, reactions, joins and
//! leaves). Writers take the number under the room's row lock, in the
//! transaction that stores the event, so a reader never sees a number
//! before every lower one of that room is committed: a subscriber can
//! resume after any number and miss nothing.
//!
//! Search: a generated `tsvector` column with a GIN index on PostgreSQL,
//! an FTS5 table kept in step by triggers on SQLite.

use crate::run_all;
use sea_orm_migration::{prelude::*, schema::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rooms {
    Table,
    Id,
    EventSeq,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    RoomId,
    Seq,
    EditedAt,
    DeletedAt,
    ReplyToId,
}

#[derive(DeriveIden)]
enum RoomEvents {
    Table,
    RoomId,
    Seq,
    Kind,
    MessageId,
    UserId,
    Emoji,
    At,
}

#[derive(DeriveIden)]
enum Reactions {
    Table,
    MessageId,
    UserId,
    Emoji,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Mentions {
    Table,
    MessageId,
    UserId,
    RoomId,
}

#[derive(DeriveIden)]
enum UserPresence {
    Table,
    UserId,
    LastSeenAt,
}

fn foreign_key(
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .to_owned()
}

/// Number the messages already stored, room by room, and start each room's
/// counter after them. The same text runs on both backends.
const NUMBER_EXISTING: [&str; 2] = [
    "UPDATE messages SET seq = numbered.position FROM (\
       SELECT id, ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY id) AS position \
       FROM messages) AS numbered \
     WHERE messages.id = numbered.id",
    "UPDATE rooms SET event_seq = COALESCE(\
       (SELECT MAX(seq) FROM messages WHERE messages.room_id = rooms.id), 0)",
];

const SQLITE_SEARCH_UP: [&str; 5] = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5(\
       text, content='messages', content_rowid='id', tokenize='unicode61')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN \
       INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN \
       INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN \
       INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); \
       INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
];

const SQLITE_SEARCH_DOWN: [&str; 4] = [
    "DROP TRIGGER IF EXISTS messages_fts_update",
    "DROP TRIGGER IF EXISTS messages_fts_delete",
    "DROP TRIGGER IF EXISTS messages_fts_insert",
    "DROP TABLE IF EXISTS messages_fts",
];

/// The text's words, kept by PostgreSQL itself (ranking reads them without
/// parsing the text again), and their index. New entries wait in the
/// index's pending list until it is merged; every search scans that list,
/// so it is kept small (256 kB) to keep searches fast under heavy sending.
const POSTGRES_SEARCH_UP: [&str; 2] = [
    "ALTER TABLE messages ADD COLUMN search tsvector \
       GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED",
    "CREATE INDEX idx_messages_search ON messages USING GIN (search) \
       WITH (gin_pending_list_limit = 256)",
];
const POSTGRES_SEARCH_DOWN: [&str; 2] = [
    "DROP INDEX IF EXISTS idx_messages_search",
    "ALTER TABLE messages DROP COLUMN IF EXISTS search",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            big_integer(Messages::Seq).default(0).to_owned(),
            timestamp_with_time_zone_null(Messages::EditedAt),
            timestamp_with_time_zone_null(Messages::DeletedAt),
            big_integer_null(Messages::ReplyToId),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Rooms::Table)
                    .add_column(big_integer(Rooms::EventSeq).default(0))
                    .to_owned(),
            )
            .await?;
        run_all(manager, &NUMBER_EXISTING).await?;
        manager
            .create_index(
                Index::create()
                    .name("uniq_messages_room_seq")
                    .table(Messages::Table)
                    .col(Messages::RoomId)
                    .col(Messages::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // A thread: the replies to one message, oldest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_reply_to")
                    .table(Messages::Table)
                    .col(Messages::ReplyToId)
                    .col(Messages::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RoomEvents::Table)
                    .col(big_integer(RoomEvents::RoomId))
                    .col(big_integer(RoomEvents::Seq))
                    .col(string_len(RoomEvents::Kind, 32))
                    .col(big_integer_null(RoomEvents::MessageId))
                    .col(big_integer_null(RoomEvents::UserId))
                    .col(string_len_null(RoomEvents::Emoji, 64))
                    .col(timestamp_with_time_zone(RoomEvents::At))
                    .primary_key(Index::create().col(RoomEvents::RoomId).col(RoomEvents::Seq))
                    .foreign_key(&mut foreign_key(
                        (RoomEvents::Table, RoomEvents::RoomId),
                        (Rooms::Table, Rooms::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        (RoomEvents::Table, RoomEvents::MessageId),
                        (Messages::Table, Messages::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        (RoomEvents::Table, RoomEvents::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::SetNull,
                    ))
                    .to_owned(),
            )
            .await?;

        // The deletes that cascade here (a message's, a user's) find their
        // rows by index.
        for (name, column) in [
            ("idx_room_events_message", RoomEvents::MessageId),
            ("idx_room_events_user", RoomEvents::UserId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(RoomEvents::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Reactions::Table)
                    .col(big_integer(Reactions::MessageId))
                    .col(big_integer(Reactions::UserId))
                    .col(string_len(Reactions::Emoji, 64))
                    .col(timestamp_with_time_zone(Reactions::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(Reactions::MessageId)
                            .col(Reactions::UserId)
                            .col(Reactions::Emoji),
                    )
                    .foreign_key(&mut foreign_key(
                        (Reactions::Table, Reactions::MessageId),
                        (Messages::Table, Messages::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        (Reactions::Table, Reactions::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name("idx_reactions_user")
                    .table(Reactions::Table)
                    .col(Reactions::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Mentions::Table)
                    .col(big_integer(Mentions::MessageId))
                    .col(big_integer(Mentions::UserId))
                    .col(big_integer(Mentions::RoomId))
                    .primary_key(
                        Index::create()
                            .col(Mentions::MessageId)
                            .col(Mentions::UserId),
                    )
                    .foreign_key(&mut foreign_key(
                        (Mentions::Table, Mentions::MessageId),
                        (Messages::Table, Messages::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        (Mentions::Table, Mentions::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        (Mentions::Table, Mentions::RoomId),
                        (Rooms::Table, Rooms::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // A user's unread mentions per room; a room's, for its deletion.
        manager
            .create_index(
                Index::create()
                    .name("idx_mentions_user_room")
                    .table(Mentions::Table)
                    .col(Mentions::UserId)
                    .col(Mentions::RoomId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_mentions_room")
                    .table(Mentions::Table)
                    .col(Mentions::RoomId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserPresence::Table)
                    .col(big_integer(UserPresence::UserId).primary_key())
                    .col(timestamp_with_time_zone(UserPresence::LastSeenAt))
                    .foreign_key(&mut foreign_key(
                        (UserPresence::Table, UserPresence::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;

        match manager.get_database_backend() {
            DatabaseBackend::Postgres => run_all(manager, &POSTGRES_SEARCH_UP).await,
            _ => run_all(manager, &SQLITE_SEARCH_UP).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => run_all(manager, &POSTGRES_SEARCH_DOWN).await?,
            _ => run_all(manager, &SQLITE_SEARCH_DOWN).await?,
        }
        for table in [
            UserPresence::Table.into_iden(),
            Mentions::Table.into_iden(),
            Reactions::Table.into_iden(),
            RoomEvents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        for index in ["idx_messages_reply_to", "uniq_messages_room_seq"] {
            manager
                .drop_index(Index::drop().name(index).table(Messages::Table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Rooms::Table)
                    .drop_column(Rooms::EventSeq)
                    .to_owned(),
            )
            .await?;
        for column in [
            Messages::ReplyToId,
            Messages::DeletedAt,
            Messages::EditedAt,
            Messages::Seq,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
