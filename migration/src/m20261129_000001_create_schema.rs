//! The initial schema: users and profiles, rooms, memberships (with history),
//! messages, read receipts and tasks, with the indexes of the hot queries.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    Password,
    FirstName,
    LastName,
    Email,
    IsActive,
    IsStaff,
    IsSuperuser,
    LastLogin,
    DateJoined,
}

#[derive(DeriveIden)]
enum Profiles {
    Table,
    Id,
    UserId,
    Status,
    StatusMsg,
}

#[derive(DeriveIden)]
enum Rooms {
    Table,
    Id,
    Name,
    IsDirect,
    DirectKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    Id,
    RoomId,
    UserId,
    JoinedAt,
    LeftAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    RoomId,
    SenderId,
    Text,
    SentAt,
    TaskId,
}

#[derive(DeriveIden)]
enum MessageSeen {
    Table,
    Id,
    MessageId,
    UserId,
    SeenAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    Kind,
    Args,
    State,
    Result,
    Error,
    Attempts,
    DispatchedAt,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
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

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// All or nothing on both backends: SQLite supports transactional DDL too.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    .col(string_len_uniq(Users::Username, 150))
                    .col(string_len(Users::Password, 255))
                    .col(string_len(Users::FirstName, 150).default(""))
                    .col(string_len(Users::LastName, 150).default(""))
                    .col(string_len(Users::Email, 254).default(""))
                    .col(boolean(Users::IsActive).default(true))
                    .col(boolean(Users::IsStaff).default(false))
                    .col(boolean(Users::IsSuperuser).default(false))
                    .col(timestamp_with_time_zone_null(Users::LastLogin))
                    .col(timestamp_with_time_zone(Users::DateJoined))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Profiles::Table)
                    .col(big_pk_auto(Profiles::Id))
                    .col(big_integer_uniq(Profiles::UserId))
                    .col(string_len(Profiles::Status, 16).default("Offline"))
                    .col(string_len_null(Profiles::StatusMsg, 255))
                    .foreign_key(&mut foreign_key(
                        (Profiles::Table, Profiles::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_profiles_status")
                    .table(Profiles::Table)
                    .col(Profiles::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Rooms::Table)
                    .col(big_pk_auto(Rooms::Id))
                    .col(string_len_uniq(Rooms::Name, 255))
                    .col(boolean(Rooms::IsDirect).default(false))
                    .col(string_len_null(Rooms::DirectKey, 64).unique_key())
                    .col(timestamp_with_time_zone(Rooms::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Memberships::Table)
                    .col(big_pk_auto(Memberships::Id))
                    .col(big_integer(Memberships::RoomId))
                    .col(big_integer(Memberships::UserId))
                    .col(timestamp_with_time_zone(Memberships::JoinedAt))
                    .col(timestamp_with_time_zone_null(Memberships::LeftAt))
                    .foreign_key(&mut foreign_key(
                        (Memberships::Table, Memberships::RoomId),
                        (Rooms::Table, Rooms::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        (Memberships::Table, Memberships::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // Both backends support partial indexes; sea-query's index builder
        // cannot express one portably, hence the raw statements. The unique one
        // makes "one current membership per (room, user)" a database rule.
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE UNIQUE INDEX uniq_memberships_current ON memberships (room_id, user_id) \
             WHERE left_at IS NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX idx_memberships_user_current ON memberships (user_id, room_id) \
             WHERE left_at IS NULL",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_memberships_room_history")
                    .table(Memberships::Table)
                    .col(Memberships::RoomId)
                    .col(Memberships::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(big_pk_auto(Messages::Id))
                    .col(big_integer(Messages::RoomId))
                    .col(big_integer_null(Messages::SenderId))
                    .col(string_len(Messages::Text, 1024))
                    .col(timestamp_with_time_zone(Messages::SentAt))
                    .col(uuid_null(Messages::TaskId).unique_key())
                    .foreign_key(&mut foreign_key(
                        (Messages::Table, Messages::RoomId),
                        (Rooms::Table, Rooms::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        (Messages::Table, Messages::SenderId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::SetNull,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_room_id")
                    .table(Messages::Table)
                    .col(Messages::RoomId)
                    .col(Messages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_sender")
                    .table(Messages::Table)
                    .col(Messages::SenderId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MessageSeen::Table)
                    .col(big_pk_auto(MessageSeen::Id))
                    .col(big_integer(MessageSeen::MessageId))
                    .col(big_integer(MessageSeen::UserId))
                    .col(timestamp_with_time_zone(MessageSeen::SeenAt))
                    .foreign_key(&mut foreign_key(
                        (MessageSeen::Table, MessageSeen::MessageId),
                        (Messages::Table, Messages::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        (MessageSeen::Table, MessageSeen::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // (user, message) serves "has this user seen these messages" (unread)
        // and enforces one receipt per pair; (message) serves Message.seenBy.
        manager
            .create_index(
                Index::create()
                    .name("uniq_message_seen_user_message")
                    .table(MessageSeen::Table)
                    .col(MessageSeen::UserId)
                    .col(MessageSeen::MessageId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_message_seen_message")
                    .table(MessageSeen::Table)
                    .col(MessageSeen::MessageId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(uuid(Tasks::Id).primary_key())
                    .col(string_len(Tasks::Kind, 64))
                    .col(json(Tasks::Args))
                    .col(string_len(Tasks::State, 16))
                    .col(json_null(Tasks::Result))
                    .col(json_null(Tasks::Error))
                    .col(integer(Tasks::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(Tasks::DispatchedAt))
                    .col(timestamp_with_time_zone(Tasks::CreatedAt))
                    .col(timestamp_with_time_zone(Tasks::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Tasks::FinishedAt))
                    .to_owned(),
            )
            .await?;
        // The outbox dispatcher scans unfinished tasks; the purge scans
        // finished ones by age.
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_state_created")
                    .table(Tasks::Table)
                    .col(Tasks::State)
                    .col(Tasks::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_finished_at")
                    .table(Tasks::Table)
                    .col(Tasks::FinishedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Tasks::Table.into_iden(),
            MessageSeen::Table.into_iden(),
            Messages::Table.into_iden(),
            Memberships::Table.into_iden(),
            Rooms::Table.into_iden(),
            Profiles::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
