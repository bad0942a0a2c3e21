//! `switchyard`: runs services (`run`) and holds the client commands.

use clap::{Parser, Subcommand};

/// mimalloc: the command path allocates many small short-lived buffers (messages, JSON), which
/// glibc's allocator served at about 6 % of the CPU under load (`BENCHMARKS.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Event-sourced control plane on NATS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run services (all when none are named): shop dispatch engine cluster dfs gateway.
    Run { services: Vec<String> },
    /// Print the deployment's health (`sys.query.health`).
    Status,
    /// Projection maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Simulators that act as outside clients: `sim carts [--speed N]`, `sim pipeline`.
    #[command(disable_help_flag = true)]
    Sim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// File storage client: `dfs put|get|ls|rm ...`.
    #[command(disable_help_flag = true)]
    Dfs {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print an HS256 token for `engine.exec`: `token --sub NAME --roles support`.
    #[command(disable_help_flag = true)]
    Token {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Empty a projection's read model and replay it from the first event.
    Rebuild { name: String },
    /// List the projections and their checkpoints.
    List,
}

fn main() -> std::process::ExitCode {
    runtime::allocator::keep_freed_memory();
    run()
}

#[tokio::main]
async fn run() -> std::process::ExitCode {
    runtime::telemetry::init();
    match real_main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { services } => {
            let config = switchyard::Configuration::from_env()?;
            let selected = switchyard::select(&services)?;
            let nats_url = config.runtime.nats_url.clone();
            let running = switchyard::start(config, &selected).await?;
            println!(
                "switchyard ready: services {} on {}",
                selected.join(", "),
                nats_url
            );
            if let Some(addr) = running.http_addr {
                println!("gateway: http://{addr}");
            }
            tokio::signal::ctrl_c().await?;
            println!("switchyard: shutting down");
            running.ctx.client.drain().await.ok();
            Ok(())
        }
        Command::Status => {
            let config = runtime::Config::from_env()?;
            let client = runtime::ctx::connect_nats(&config.nats_url, "switchyard-cli").await?;
            let r =
                runtime::client::request_json(&client, "sys.query.health", &serde_json::json!({}))
                    .await;
            println!("{}", serde_json::to_string_pretty(&r.body)?);
            Ok(())
        }
        Command::Projections { command } => switchyard::projections(command_words(command)).await,
        Command::Sim { args } => match args.first().map(String::as_str) {
            Some("carts") => tools::dispatch_sim::cli(args).await,
            Some("pipeline") => tools::cluster_sim::main(&args[1..]).await,
            _ => anyhow::bail!("usage: switchyard sim carts [--speed N] | switchyard sim pipeline"),
        },
        Command::Dfs { args } => dfs::cli(args).await,
        Command::Token { args } => engine::cli(args).await,
    }
}

fn command_words(c: ProjectionsCommand) -> Vec<String> {
    match c {
        ProjectionsCommand::Rebuild { name } => vec!["rebuild".into(), name],
        ProjectionsCommand::List => vec!["list".into()],
    }
}
