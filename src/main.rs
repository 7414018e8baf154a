//! Command line entry point: parse configuration, set up logging, dispatch.

use std::process::ExitCode;

use chat_gateway::{
    app::{self, Application},
    cache::UserListCache,
    config::{self, Command, Config, MigrateAction},
    db, graphql,
    jobs::{self, worker::JobContext},
    telemetry,
    versions::Key,
};
use migration::{Migrator, MigratorTrait};

/// Many small, short-lived allocations per request, from two or more
/// threads at once: mimalloc's thread-local heaps serve them with fewer
/// instructions than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = config::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Schema = command {
        print!("{}", graphql::sdl());
        return ExitCode::SUCCESS;
    }
    telemetry::init(&cli.config);
    match run(command, cli.config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), String> {
    match command {
        Command::Serve => {
            let application = Application::build(config)
                .await
                .map_err(|e| e.to_string())?;
            application.run_until(app::shutdown_signal()).await;
            Ok(())
        }
        Command::Worker => worker(config).await,
        Command::Migrate { action } => migrate(action, &config).await,
        Command::Seed => {
            let (db, _) = db::connect(&config).await.map_err(|e| e.to_string())?;
            db::migrate(&db, &config).await.map_err(|e| e.to_string())?;
            let created = chat_gateway::domain::users::seed(&db, config.seed_users)
                .await
                .map_err(|e| format!("seeding failed: {e}"))?;
            if created > 0 {
                // Running gateways must not keep serving lists without them.
                let redis = app::connect_redis(&config)
                    .await
                    .map_err(|e| e.to_string())?;
                let versions = app::versions(&config, redis.as_ref(), &db);
                UserListCache::new(versions).invalidate(&[Key::Names]).await;
            }
            println!("created {created} users");
            Ok(())
        }
        Command::Schema => Ok(()),
    }
}

/// Run job handlers fetching from Faktory until SIGTERM / Ctrl-C.
async fn worker(config: Config) -> Result<(), String> {
    let Some(faktory) = app::faktory_config(&config).map_err(|e| e.to_string())? else {
        return Err(
            "FAKTORY_URL: the `worker` command fetches jobs from a Faktory server; set \
             FAKTORY_URL (in embedded mode `serve` runs jobs itself)"
                .to_owned(),
        );
    };
    let (db, _) = db::connect(&config).await.map_err(|e| e.to_string())?;
    db::migrate(&db, &config).await.map_err(|e| e.to_string())?;
    let redis = app::connect_redis(&config)
        .await
        .map_err(|e| e.to_string())?;
    let ctx = JobContext {
        events: app::event_bus(&config, redis.as_ref(), &db),
        db,
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        app::shutdown_signal().await;
        tracing::info!("stopping: running jobs finish");
        let _ = stop.send(true);
    });
    jobs::faktory::run_worker(
        faktory,
        ctx,
        config.job_workers,
        stopping,
        config.shutdown_grace(),
    )
    .await
    .map_err(|e| e.to_string())
}

async fn migrate(action: MigrateAction, config: &Config) -> Result<(), String> {
    let (db, _) = db::connect(config).await.map_err(|e| e.to_string())?;
    let fail = |e: sea_orm::DbErr| format!("DATABASE_URL: migration failed: {e}");
    match action {
        MigrateAction::Up => db::migrate(&db, config).await.map_err(|e| e.to_string())?,
        MigrateAction::Down { steps } => Migrator::down(&db, Some(steps)).await.map_err(fail)?,
        // Revert every migration, then apply them all: the same end state as
        // dropping every table, but in an order that respects foreign keys.
        MigrateAction::Fresh => Migrator::refresh(&db).await.map_err(fail)?,
        MigrateAction::Status => {
            for migration in Migrator::get_migration_with_status(&db)
                .await
                .map_err(fail)?
            {
                println!("{}\t{}", migration.name(), migration.status());
            }
        }
    }
    Ok(())
}
