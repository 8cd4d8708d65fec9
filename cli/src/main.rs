use std::io::IsTerminal;

#[tokio::main]
async fn main() {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let interactive = err.is_terminal();
    let code = videojobs_cli::run(std::env::args(), &env, &mut out, &mut err, interactive).await;
    std::process::exit(code);
}
