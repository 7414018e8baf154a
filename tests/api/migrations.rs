//! Migrations run up and down on both backends.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::helpers::TestApp;

async fn table_count(app: &TestApp) -> i64 {
    let sql = match app.db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name IN ('users','profiles','rooms','memberships','messages','message_seen','tasks','auth_tokens','cache_versions')"
        }
        _ => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' \
             AND name IN ('users','profiles','rooms','memberships','messages','message_seen','tasks','auth_tokens','cache_versions')"
        }
    };
    let row = app
        .db
        .query_one_raw(Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn migrations_go_down_and_up_again(app: TestApp) {
    assert_eq!(table_count(&app).await, 9);
    Migrator::down(&app.db, None).await.unwrap();
    assert_eq!(table_count(&app).await, 0);
    let pending = Migrator::get_pending_migrations(&app.db).await.unwrap();
    assert_eq!(pending.len(), Migrator::migrations().len());
    Migrator::up(&app.db, None).await.unwrap();
    assert_eq!(table_count(&app).await, 9);
    // Applying again is a no-op.
    Migrator::up(&app.db, None).await.unwrap();
}

async fn one_current_membership_per_room_and_user(app: TestApp) {
    let backend = app.db.get_database_backend();
    let exec = |sql: &str| {
        app.db
            .execute_raw(Statement::from_string(backend, sql.to_owned()))
    };
    exec("INSERT INTO rooms (name, is_direct, created_at) VALUES ('r', false, '2026-01-01T00:00:00Z')")
        .await
        .unwrap();
    let join = "INSERT INTO memberships (room_id, user_id, joined_at) \
                SELECT id, 1, '2026-01-01T00:00:00Z' FROM rooms WHERE name = 'r'";
    exec(join).await.unwrap();
    assert!(
        exec(join).await.is_err(),
        "a second current membership must be refused"
    );
    exec("UPDATE memberships SET left_at = '2026-01-02T00:00:00Z'")
        .await
        .unwrap();
    exec(join)
        .await
        .expect("re-joining after leaving starts a new membership");
}

crate::scenarios!(
    migrations_go_down_and_up_again,
    one_current_membership_per_room_and_user,
);
