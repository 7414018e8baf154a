//! Command line entry point: parse configuration, set up logging, dispatch.

use std::process::ExitCode;

use chat_gateway::{
    app::{self, Application},
    config::{self, Command, Config, MigrateAction},
    db, graphql, telemetry,
};
use migration::{Migrator, MigratorTrait};

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
        Command::Worker => Err(
            "FAKTORY_URL: the `worker` command runs jobs fetched from a Faktory server, and \
             this build has no job kinds for it yet; in embedded mode `serve` runs jobs itself"
                .to_owned(),
        ),
        Command::Migrate { action } => migrate(action, &config).await,
        Command::Seed => {
            let (db, _) = db::connect(&config).await.map_err(|e| e.to_string())?;
            db::migrate(&db, &config).await.map_err(|e| e.to_string())?;
            let created = chat_gateway::domain::users::seed(&db, config.seed_users)
                .await
                .map_err(|e| format!("seeding failed: {e}"))?;
            println!("created {created} users");
            Ok(())
        }
        Command::Schema => Ok(()),
    }
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
