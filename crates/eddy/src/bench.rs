//! `eddy bench`: a load generator for any Kinesis-compatible endpoint.

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Endpoint to measure.
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("eddy bench is not implemented yet")
}
